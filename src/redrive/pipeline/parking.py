"""Park a task before its last attempt; restore a parked task once a fix is live.

Both move one piece of work between two queues, and both hold the same two promises under
redelivery and faults: never two copies that could both run, never no copy while the work is
unfinished. A parked copy can never run by itself (redrive.core.parking), which is what makes the
order of each move safe:

- **park**: FULL read of the original, the park rule checked again on it, the failure claimed,
  the parked copy created, the original deleted (retried only while its next attempt is far
  enough away). Until that delete, only the original can run; a park that cannot finish
  withdraws its copy (or leaves it for the next delivery, which finds it through the claim and
  finishes);
- **restore**: FULL read of the parked copy, a look at the origin (an original still there means
  its park has not finished; a sweep's listing of the origin queue answers it for a whole page of
  parked copies at once), the parked copy claimed, the task created again in its origin queue
  due now, the parked copy deleted. A restore that made its task and could not delete the parked
  copy is finished by the next delivery (the claim's rung finds the restored task); one whose
  result can no longer be told (its rung is over an hour old and the restored task's name is
  forgotten) keeps the parked copy and says so, rather than guess.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from redrive.adapters.claims import Grant, Refusal
from redrive.adapters.cloudtasks import Deleted, QueueInfo, Seen
from redrive.core import errors
from redrive.core.claims import FailureKey
from redrive.core.decide import FixEvidence, already_retried
from redrive.core.gone import Gone
from redrive.core.names import TaskName
from redrive.core.outcomes import Outcome
from redrive.core.parking import (
    PARKED_SCHEDULE_AHEAD,
    ParkCheck,
    Parked,
    Verdict,
    park_check,
    parked_name,
    restored_name,
)
from redrive.core.records import Result, iso
from redrive.core.state import TaskState
from redrive.pipeline.base import WITHDRAW_S, Pending, Request, refused, withdraw
from redrive.runtime import Runtime

PARK_FIX = "park"
RESTORE_FIX = "restore"
"""The `fix` a park's or a restore's claim is recorded under (no forced run, no fix marker)."""
TOMBSTONE_SAFE_S = 3000.0
"""Cloud Tasks remembers the name of a deleted or completed task for about an hour (its
de-duplication window): within 50 minutes of a restore's claim, a restored task's name that is
"never seen" was never created."""


class _Unclear(Exception):  # noqa: N818 - an answer inside a claim, never raised out
    """An earlier restore's rung whose restored task may or may not have been created."""

    def __init__(self, rung: int, taken_at: datetime | None) -> None:
        super().__init__(rung)
        self.rung = rung
        self.taken_at = taken_at


def park_or_leave(request: Request, planned: Result | Pending, rt: Runtime) -> Result:
    """The patrol's act: park a task whose next attempt would be its last, unless a fix is
    live (then that attempt runs on the fixed code, which is the re-drive)."""
    if isinstance(planned, Pending) or planned.outcome is Outcome.DRY_RUN:
        fix = planned.fix
        if fix is not None and fix.strategy != "none":
            return Result(
                Outcome.IGNORED,
                f"a fix is live since {iso(fix.live_since)} ({fix.strategy}), after its last "
                "failed attempt: its next attempt runs on the fixed code; not parked",
                state=planned.state,
                fix=fix,
            )
        planned = Result(
            Outcome.SKIPPED_FIX_NOT_DEPLOYED,
            "no fix check (REDRIVE_FIX_CHECK=none) says a fix is live",
            state=planned.state,
            fix=fix,
        )
    if planned.outcome is not Outcome.SKIPPED_FIX_NOT_DEPLOYED:
        return planned
    return park(request, planned, rt)


def park(request: Request, base: Result, rt: Runtime) -> Result:
    """Park the task of `base` (a SKIPPED_FIX_NOT_DEPLOYED result) when its next attempt would
    be its last; otherwise `base`, its reason saying why it was not parked."""
    settings, claims, state = rt.settings, rt.claims, base.state
    parking_queue = settings.parking_queue
    if claims is None or parking_queue is None or state is None:
        return base
    failure = request.failure
    try:
        info = rt.tasks.queue_info(failure.task.queue_name)
    except errors.RedriveError as err:
        result = Result.of(rt.for_error(err), state=state, fix=base.fix)
        result.reason = (
            f"{base.reason}; parking reads the queue's RetryConfig, which failed: {result.reason}"
        )
        return result
    check = _check(state, info, rt)
    if check.verdict is not Verdict.PARK:
        return _not_parked(base, check)
    if settings.dry_run:
        return Result(
            Outcome.DRY_RUN,
            f"{check.reason}: it would be parked in {parking_queue}; REDRIVE_DRY_RUN is on",
            state=state,
            fix=base.fix,
        )
    try:
        original = rt.tasks.read_original(failure.task)
        if isinstance(original, Gone):
            return Result(
                Outcome.NOT_FOUND,
                "task no longer exists (it ran its attempt or was deleted) before it was parked",
                fix=base.fix,
                gone=original,
            )
        fresh = TaskState.from_task(original)
        retried = already_retried(failure, fresh, rt.settings.clock_skew_s)
        if retried is not None:
            return Result(Outcome.SKIPPED_ALREADY_RETRIED, retried, state=fresh, fix=base.fix)
        check = _check(fresh, info, rt)
        if check.verdict is not Verdict.PARK:
            return _not_parked(Result(base.outcome, base.reason, state=fresh, fix=base.fix), check)
        assert check.why is not None
        key = FailureKey(failure.task, fresh.dispatch_count)

        def half_done(rung: int, ended: bool) -> bool:
            """An unended rung whose parked copy is there: finish it (delete the original)."""
            if ended:
                return False
            name = parked_name(parking_queue, failure.task, key.dispatch_count, rung)
            return rt.tasks.seen(str(name)) is Seen.LIVE

        claimed = claims.claim(
            key,
            fix=PARK_FIX,
            owner=request.owner,
            reread=lambda: rt.tasks.get(failure.task),
            resume=half_done,
            marked=False,
        )
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), state=state, fix=base.fix)
    if isinstance(claimed, Refusal):
        return refused(claimed, fresh, base.fix)
    copy = parked_name(parking_queue, failure.task, fresh.dispatch_count, claimed.rung)
    parked = Parked.of(
        fresh, why=check.why, api=settings.tasks_api, at=rt.clock(), owner=request.owner
    )
    fields: dict[str, object] = {
        "copy": str(copy),
        "parking_queue": str(parking_queue),
        "why": check.why.value,
        "origin": str(failure.task),
        "failed_dispatch_count": fresh.dispatch_count,
    }
    done: dict[str, Any] = {
        "state": fresh,
        "fix": base.fix,
        "claim": claimed.fields(),
        "parked": fields,
    }

    def give_up(why: str) -> bool:
        """Withdraw the parked copy, then end the rung: the task stays in its queue."""
        if not withdraw(copy, rt):
            return False
        claims.end(claimed, f"parked copy {copy.task} withdrawn: {why}")
        return True

    if not claimed.resumed:
        try:
            rt.tasks.create_parked(original, copy, parked.url(), rt.clock() + PARKED_SCHEDULE_AHEAD)
        except errors.RedriveError as err:
            withdrawn = give_up(f"its creation failed: {err}")
            result = Result.of(rt.for_error(err), **done)
            result.reason = f"not parked ({result.reason}): the task stays in its queue" + (
                ""
                if withdrawn
                else f"; a parked copy {copy} may exist (it never runs by itself): the next "
                "delivery finishes or withdraws it"
            )
            return result
    assert fresh.schedule_time is not None  # the park rule needs a next attempt
    ahead_s = (fresh.schedule_time - rt.clock()).total_seconds()
    try:
        # Retried within the usual bound, and only while the next attempt is comfortably ahead.
        bound_s = min(settings.retry_deadline_s, ahead_s - WITHDRAW_S)
        deleted = rt.tasks.delete(failure.task, deadline_s=max(0.0, bound_s))
    except errors.RedriveError as err:
        if give_up(f"the original could not be deleted: {err}"):
            result = Result.of(rt.for_error(err), **done)
            result.reason = (
                f"not parked: the original could not be deleted ({result.reason}); its parked "
                "copy was withdrawn and the task stays in its queue"
            )
            return result
        return Result(
            Outcome.FAILED,
            f"the original could not be deleted ({err}) and its parked copy {copy.task} could "
            "not be withdrawn: both exist, only the original can run; delivered again to finish "
            "parking",
            503,
            **done,
        )
    if deleted is Deleted.WAS_GONE:
        if give_up("the original disappeared meanwhile"):
            return Result(
                Outcome.NOT_FOUND,
                "the original disappeared while it was being parked (it ran its attempt, or it "
                "was deleted); its parked copy was withdrawn",
                gone=Gone.EXISTED_RECENTLY,
                **done,
            )
        return Result(
            Outcome.FAILED,
            f"the original disappeared while it was being parked and its parked copy {copy} "
            f"could not be withdrawn: it must not be restored; delete it (redrive parked purge "
            f"--task {copy})",
            503,
            **done,
        )
    how = "finished parking it" if claimed.resumed else "parked"
    return Result(
        Outcome.PARKED,
        f"{check.reason}: {how} as {copy.task} in {parking_queue.queue}, the original deleted; a "
        "deploy that fixes it (or redrive parked restore) restores it",
        **done,
    )


def restore(request: Request, rt: Runtime) -> Result:
    """Restore the parked copy `request.parked` (whose origin is the failure's task)."""
    claims, parked_task, origin = rt.claims, request.parked, request.failure.task
    fix = request.evidence if isinstance(request.evidence, FixEvidence) else None
    if claims is None or parked_task is None:
        return Result(
            Outcome.INVALID_SIGNAL,
            "restoring needs REDRIVE_CLAIMS_QUEUE and a parked copy to restore",
            fix=fix,
        )
    fields: dict[str, object] = {"copy": str(parked_task)}
    try:
        read = rt.tasks.read_parked(parked_task)
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), fix=fix, parked=fields)
    if read is None:
        return Result(
            Outcome.NOT_FOUND,
            f"the parked copy {parked_task.task} no longer exists: restored or purged already",
            fix=fix,
            parked=fields,
        )
    _, parked, original = read
    fields.update(
        {
            "parking_queue": str(parked_task.queue_name),
            "why": parked.why.value,
            "origin": str(parked.origin),
            "failed_dispatch_count": parked.dispatch_count,
            "parked_at": iso(parked.parked_at),
        }
    )
    if parked.origin != origin:
        return Result(
            Outcome.INVALID_SIGNAL,
            f"the parked copy {parked_task} stands for {parked.origin}, not {origin}",
            fix=fix,
            parked=fields,
        )
    try:
        still = None if request.origin_gone else _original_still_there(parked, rt)
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), fix=fix, parked=fields)
    if still is not None:
        return _unfinished_park(still, parked, parked_task, fields, rt)
    if rt.settings.dry_run:
        return Result(
            Outcome.DRY_RUN,
            f"it would be restored into {origin.queue_name}; REDRIVE_DRY_RUN is on",
            fix=fix,
            parked=fields,
        )
    key = FailureKey(parked_task, parked.dispatch_count)

    def half_done(rung: int, ended: bool) -> bool:
        """An unended rung whose restored task exists or existed recently: finish it (delete
        the parked copy). Never seen, the rung is passed while the name is remembered; past
        that, nobody can tell, and the restore stops (_Unclear)."""
        if ended:
            return False
        if rt.tasks.seen(str(restored_name(origin, parked_task, rung))) is not Seen.NEVER:
            return True
        taken = claims.rung_taken_at(key, rung)
        if taken is None or (rt.clock() - taken).total_seconds() >= TOMBSTONE_SAFE_S:
            raise _Unclear(rung, taken)
        return False

    def take() -> Grant | Refusal:
        return claims.claim(
            key, fix=RESTORE_FIX, owner=request.owner, reread=None, resume=half_done, marked=False
        )

    try:
        try:
            claimed = take()
        except _Unclear as unclear:
            if not request.again:
                return Result(
                    Outcome.SKIPPED_DUPLICATE,
                    f"an earlier restore (attempt {unclear.rung}, taken at "
                    f"{iso(unclear.taken_at) or 'an unknown time'}) may have created it again, and "
                    "that task may have run since: the parked copy is kept and not restored "
                    "again by itself; check the target, then redrive parked restore --again or "
                    "redrive parked purge",
                    fix=fix,
                    parked=fields,
                )
            claims.abandon(key, unclear.rung, request.owner, "restored again by an operator")
            claimed = take()
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), fix=fix, parked=fields)
    except _Unclear:
        return Result(
            Outcome.FAILED,
            "an earlier restore's result could not be told, even after --again: try again",
            503,
            fix=fix,
            parked=fields,
        )
    if isinstance(claimed, Refusal):
        result = refused(claimed, TaskState(origin), fix)
        result.state = None
        result.parked = fields
        return result
    grant = claimed
    copy = restored_name(origin, parked_task, grant.rung)
    fields["restored_as"] = str(copy)
    done: dict[str, Any] = {"fix": fix, "claim": grant.fields(), "parked": fields}
    if not grant.resumed:
        try:
            # Due when Cloud Tasks makes it, by its own clock (redrive's may differ).
            rt.tasks.create_copy(original, copy, None)
        except errors.RedriveError as err:
            if _not_created(err):
                claims.end(grant, f"CreateTask refused: {err}")
            result = Result.of(rt.for_error(err), **done)
            result.reason = f"not restored ({result.reason}); the parked copy is kept"
            return result
    try:
        rt.tasks.delete(parked_task)
    except errors.RedriveError as err:
        # The restored task carries the work; the parked copy can never run by itself. A later
        # restore of it finds the restored task through the claim and only deletes the copy.
        result = Result.of(rt.for_error(err), **done)
        then = (
            "delivered again to delete it"
            if result.outcome.redeliver
            else f"delete it (redrive parked purge --task {parked_task}), or restore it again "
            "within the hour: that only deletes it"
        )
        result.reason = (
            f"restored as {copy.task}, but the parked copy could not be deleted "
            f"({result.reason}): {then}"
        )
        return result
    how = "made by an earlier delivery" if grant.resumed else "due now"
    return Result(
        Outcome.RESTORED,
        f"restored as {copy.task} in {origin.queue} ({how}), the parked copy deleted",
        **done,
    )


# ---------------------------------------------------------------------------------------------


def _check(state: TaskState, info: QueueInfo, rt: Runtime) -> ParkCheck:
    return park_check(
        state,
        info.rule.merged(state),
        now=rt.clock(),
        margin_s=rt.settings.park_margin_s,
        retention=info.retention,
        expiry_margin_s=rt.settings.park_before_expiry_s,
    )


def _not_parked(base: Result, check: ParkCheck) -> Result:
    base.reason = f"{base.reason}; not parked: {check.reason}"
    return base


def _original_still_there(parked: Parked, rt: Runtime) -> TaskState | None:
    """The original, when it is still in its queue (a task of the same name created after the
    park is somebody's new task, not the original)."""
    live = rt.tasks.get(parked.origin)
    if live is None:
        return None
    if live.create_time is not None and live.create_time > parked.parked_at + timedelta(seconds=1):
        return None
    return live


def _unfinished_park(
    live: TaskState, parked: Parked, parked_task: TaskName, fields: dict[str, object], rt: Runtime
) -> Result:
    if live.dispatch_count > parked.dispatch_count:
        # The original carried on: its park never finished, and this copy is stale.
        if withdraw(parked_task, rt):
            return Result(
                Outcome.SKIPPED_ALREADY_RETRIED,
                f"the original still exists and was dispatched again (attempt "
                f"{live.dispatch_count}) after it was parked at attempt {parked.dispatch_count}: "
                "its park never finished, so the parked copy was withdrawn",
                state=live,
                parked=fields,
            )
        return Result(
            Outcome.FAILED,
            "the original carried on after it was parked and its stale parked copy could not be "
            "withdrawn: delivered again",
            503,
            state=live,
            parked=fields,
        )
    window_s = 2 * rt.settings.rpc_timeout_s
    return Result(
        Outcome.DEFERRED,
        "the original is still in its queue: its park has not finished (the original is deleted "
        "last); restored once it has",
        503,
        state=live,
        parked=fields,
        retry_after_s=window_s,
    )


def _not_created(err: errors.RedriveError) -> bool:
    """True when CreateTask's error proves that nothing was created."""
    return isinstance(
        err,
        errors.InvalidRequestError
        | errors.PermissionDeniedError
        | errors.NotFoundError
        | errors.QuotaExceededError,
    )
