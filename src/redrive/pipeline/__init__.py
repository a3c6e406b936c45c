"""One failed task, start to finish: screen → read → decide → claim → act → record.

Every path that acts on a task goes through here: handle_signal (direct and queued mode), run_job,
the sweep (both modes) and the operator's command line. The steps exist once:

- screen: the guards that need no I/O (allowlist, signal age);
- read: GetTask, or the state a sweep has just listed;
- decide: the pure core (redrive.core.decide), with fix evidence from the job or the deploy that
  carries it, else from the configured fix check (asked only when every cheaper guard passed);
- claim: before a RunTask, the failure is claimed in the claims register (redrive.core.claims,
  when REDRIVE_CLAIMS_QUEUE is set): at most one forced run per failure and per task and fix,
  across instances and duplicate deliveries; the delivery that holds the claim (`owner`) may come
  back after a fault, anybody else stands aside;
- act: the `Act` the caller asks for, RunTask (`RUN`) or one redrive job (`ENQUEUE`, whose
  deterministic name is its own claim); a RunTask waits for the direct-mode throttle first and
  reads the task again when its facts may be old;
- record: one outcome line per decision (`record`).

`process` runs the steps for one task. A sweep that creates many jobs at once calls `prepare`
(everything up to the act), creates the jobs concurrently, and `finish`es each one with its answer,
so the batched path shares every step with the single one.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from redrive.adapters.claims import Grant, Refusal
from redrive.adapters.cloudtasks import Deleted, Seen
from redrive.core import errors
from redrive.core.claims import FailureKey, fix_identity, needs_fix_marker
from redrive.core.decide import (
    Action,
    Failure,
    FixEvidence,
    RunResult,
    SignalRef,
    after_run,
    decide,
    screen,
)
from redrive.core.gone import Gone
from redrive.core.jobs import Job, JobTask, job_task
from redrive.core.outcomes import Outcome
from redrive.core.records import Result, result_record
from redrive.core.recreate import copy_name
from redrive.core.state import TaskState
from redrive.pipeline import parking
from redrive.pipeline.base import (
    NO_RUN_SLOT,
    STALE_AFTER_S,
    TASK_LOCKS,
    WITHDRAW_S,
    Act,
    EvidenceSource,
    Pending,
    Request,
    TaskLocks,
    evidence_for,
    refused,
    withdraw,
)
from redrive.runtime import Runtime

__all__ = [
    "NO_RUN_SLOT",
    "TASK_LOCKS",
    "Act",
    "EvidenceSource",
    "Pending",
    "Request",
    "TaskLocks",
    "finish",
    "prepare",
    "process",
    "record",
]


def process(request: Request, rt: Runtime) -> Result:
    """Every step for one task; the Result is returned, not logged (see `record`)."""
    early = screen(request.failure, rt.policy, rt.clock())
    if early is not None:
        return Result.of(early)
    if request.act is not Act.ENQUEUE:
        with TASK_LOCKS.hold(str(request.failure.task)):
            return _process(request, rt)
    return _process(request, rt)


def _process(request: Request, rt: Runtime) -> Result:
    if request.act is Act.RESTORE:
        return parking.restore(request, rt)
    planned = prepare(request, rt)
    if request.act is Act.PARK:
        return parking.park_or_leave(request, planned, rt)
    if isinstance(planned, Result):
        if planned.outcome is Outcome.SKIPPED_FIX_NOT_DEPLOYED and rt.settings.parking:
            # No fix for it yet: a task about to use its last attempt is parked, not lost.
            return parking.park(request, planned, rt)
        return planned
    if request.act is Act.ENQUEUE:
        assert planned.job is not None and rt.settings.redrive_queue is not None
        try:
            created = rt.tasks.create(rt.settings.redrive_queue, planned.job)
        except errors.RedriveError as err:
            return finish(planned, err, rt)
        return finish(planned, created, rt)
    if request.act is Act.RECREATE:
        return _recreate(planned, rt)
    return _run(planned, rt)


def prepare(request: Request, rt: Runtime) -> Result | Pending:
    """Screen, read and decide: the final Result, or what to act on."""
    failure = request.failure
    now = rt.clock()
    early = screen(failure, rt.policy, now)
    if early is not None:
        return Result.of(early)
    # In-flight is a RunTask's (and a re-create's) guard: an attempt running when a job is
    # enqueued is over by the time run_job (which checks it again) acts.
    check_in_flight = request.act is not Act.ENQUEUE
    state: TaskState | None = request.listed
    evidence: FixEvidence | None = None
    try:
        if state is None:
            looked = rt.tasks.lookup(failure.task)
            if isinstance(looked, Gone):
                return Result.of(decide(failure, looked, None, rt.policy, now))
            state = looked
        decision = decide(failure, state, None, rt.policy, now, check_in_flight=check_in_flight)
        if decision.action is Action.CHECK_FIX:
            assert state is not None
            evidence = evidence_for(request.evidence, state, rt)
            decision = decide(
                failure, state, evidence, rt.policy, now, check_in_flight=check_in_flight
            )
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), state=state, fix=evidence)
    if request.act is Act.ENQUEUE and decision.outcome is Outcome.DRY_RUN:
        assert state is not None
        return Result(
            Outcome.DRY_RUN,
            "every guard passed; REDRIVE_DRY_RUN is on, no job enqueued",
            state=state,
            fix=evidence,
            job=_job(failure, state, evidence, rt, request.redrive_id).name,
        )
    if decision.action is not Action.RUN:
        return Result.of(decision, state=state, fix=evidence)
    assert state is not None
    job = (
        _job(failure, state, evidence, rt, request.redrive_id)
        if request.act is Act.ENQUEUE
        else None
    )
    return Pending(request, state, evidence, job)


def finish(pending: Pending, answer: bool | errors.RedriveError, rt: Runtime) -> Result:
    """The outcome of an `Act.ENQUEUE`: created (True), the name was taken (False), or an error."""
    assert pending.job is not None
    if isinstance(answer, errors.RedriveError):
        return Result.of(rt.for_error(answer), state=pending.state, fix=pending.fix)
    if answer:
        return Result(
            Outcome.QUEUED,
            "redrive job enqueued",
            state=pending.state,
            fix=pending.fix,
            job=pending.job.name,
        )
    return Result(
        Outcome.SKIPPED_DUPLICATE,
        "a redrive job for this failure exists or existed within the de-duplication window",
        state=pending.state,
        fix=pending.fix,
        job=pending.job.name,
    )


def _run(pending: Pending, rt: Runtime) -> Result:
    """Throttle, read again when the facts may be old, decide again, RunTask."""
    request, failure = pending.request, pending.request.failure
    state, evidence = pending.state, pending.fix
    read_at = time.monotonic() if request.listed is None else float("-inf")
    try:
        if request.throttle and not rt.limiter.acquire(timeout_s=_throttle_wait_s(request, rt)):
            return Result(
                Outcome.FAILED,
                "direct-mode rate limit: no RunTask slot free within the time allowed",
                429,
                state=state,
                fix=evidence,
                extra={NO_RUN_SLOT: True},
            )
        if time.monotonic() - read_at > STALE_AFTER_S:
            # The task may have moved meanwhile (a throttle wait, a listing): decide again on a
            # fresh read.
            fresh = rt.tasks.lookup(failure.task)
            decision = decide(failure, fresh, evidence, rt.policy, rt.clock())
            if decision.action is not Action.RUN:
                shown = None if isinstance(fresh, Gone) else fresh
                return Result.of(decision, state=shown, fix=evidence)
            assert isinstance(fresh, TaskState)
            state = fresh
        claimed = _claim(request, state, evidence, rt)
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), state=state, fix=evidence)
    if isinstance(claimed, Refusal):
        return refused(claimed, state, evidence)
    claim = claimed.fields() if claimed is not None else None
    try:
        run = rt.tasks.run(failure.task, state)
    except errors.RedriveError as err:
        claims = rt.claims
        if claimed is not None and claims is not None and _never_dispatched(err):
            claims.end(claimed, f"RunTask refused: {err}")
        result = Result.of(rt.for_error(err), state=state, fix=evidence, claim=claim)
        if isinstance(err, errors.OutcomeUnknownError):
            result.reason += (
                f"; the failure stays claimed by {request.owner}, which looks again after "
                f"{2 * rt.settings.rpc_timeout_s:g}s"
                if claimed is not None
                else "; without a claims queue the next delivery decides from the task's state"
            )
        return result
    return Result.of(after_run(run), state=state, fix=evidence, run=run, claim=claim)


def _recreate(pending: Pending, rt: Runtime) -> Result:
    """Read the original with the FULL view, decide again on it, claim, create the copy due
    REDRIVE_RECREATE_DELAY_S from now, delete the original; never leave both able to run.

    The copy is named after the failure and the claim's rung: a half-done re-create (the copy
    made, the original not yet deleted) is found by the next delivery through its rung and
    finished; a withdrawn copy ends its rung, and the next rung makes a copy of another name.
    """
    request, failure = pending.request, pending.request.failure
    state, evidence = pending.state, pending.fix
    claims = rt.claims
    if claims is None:
        return Result(
            Outcome.INVALID_SIGNAL,
            "re-create needs REDRIVE_CLAIMS_QUEUE: without claims two instances could both copy "
            "and delete the task",
            state=state,
            fix=evidence,
        )
    try:
        original = rt.tasks.read_original(failure.task)
        fresh = original if isinstance(original, Gone) else TaskState.from_task(original)
        decision = decide(failure, fresh, evidence, rt.policy, rt.clock())
        if decision.action is not Action.RUN:
            shown = None if isinstance(fresh, Gone) else fresh
            return Result.of(decision, state=shown, fix=evidence)
        assert isinstance(fresh, TaskState) and not isinstance(original, Gone)
        state = fresh
        too_soon = _too_soon_to_recreate(state, rt)
        if too_soon is not None:
            return Result(Outcome.SKIPPED_RETRY_DUE, too_soon, state=state, fix=evidence)
        count = state.dispatch_count
        key = FailureKey(failure.task, count)

        def half_done(rung: int, ended: bool) -> bool:
            """A rung whose copy is there, or existed recently without the rung being ended (the
            copy ran), must be finished: the original deleted, not copied again. An ended rung's
            copy was withdrawn, unless it is still there or was recorded as staying."""
            seen = rt.tasks.seen(str(copy_name(failure.task, count, rung)))
            if ended:
                return seen is Seen.LIVE or claims.copy_stayed(key, rung)
            return seen is not Seen.NEVER

        claimed = claims.claim(
            key,
            fix=fix_identity(evidence),
            owner=request.owner,
            reread=lambda: rt.tasks.get(failure.task),
            resume=half_done,
            marked=needs_fix_marker(evidence),
        )
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), state=state, fix=evidence)
    if isinstance(claimed, Refusal):
        return refused(claimed, state, evidence)
    copy = copy_name(failure.task, count, claimed.rung)
    due = rt.clock() + timedelta(seconds=rt.settings.recreate_delay_s)
    done: dict[str, Any] = {"state": state, "fix": evidence, "claim": claimed.fields()}

    def time_left_s() -> float:
        return (due - rt.clock()).total_seconds()

    def withdraw_copy(why: str, *, original_gone: bool = False) -> bool:
        """Withdraw the copy (it must not run), ending its rung first: a later delivery then
        knows the copy was withdrawn, not run. Only before the copy is due (once due it may be
        running), and only with that record made (the next delivery then finishes the
        re-create instead), unless the original is gone anyway."""
        if time_left_s() < WITHDRAW_S and not original_gone:
            return False
        if not claims.end(claimed, f"copy {copy.task} withdrawn: {why}") and not original_gone:
            return False
        if withdraw(copy, rt):
            return True
        claims.copy_stays(claimed, f"the withdrawal of copy {copy.task} failed")
        return False

    if not claimed.resumed:
        try:
            rt.tasks.create_copy(original, copy, due)  # taken: a retry met its own copy
        except errors.RedriveError as err:
            # A copy whose creation is unknown may exist and come due: withdraw it, so that only
            # the original (whose own retry is far off) can run.
            withdrawn = withdraw_copy(f"its creation failed: {err}")
            result = Result.of(rt.for_error(err), **done)
            result.reason += f"; {failure.task} was not re-created" + (
                "" if withdrawn else f" (its copy {copy} could not be withdrawn: check it)"
            )
            return result
    try:
        # Retried only while the copy could still be withdrawn in time.
        deleted = rt.tasks.delete(failure.task, deadline_s=max(0.0, time_left_s() - WITHDRAW_S))
    except errors.RedriveError as err:
        if withdraw_copy(f"the original could not be deleted: {err}"):
            result = Result.of(rt.for_error(err), **done)
            result.reason += "; the original could not be deleted, so its copy was withdrawn"
            return result
        # The copy is due (or its withdrawal could not be recorded): it carries the work now,
        # and the next delivery finds it through the claim and deletes the original.
        return Result(
            Outcome.FAILED,
            f"the original could not be deleted ({err}) and its copy {copy.task} stays (due "
            f"{due.isoformat()}): the work is delivered again to delete the original",
            503,
            **done,
        )
    if deleted is Deleted.WAS_GONE:
        # The original ran or was deleted while its copy was made: the copy must not run too.
        if withdraw_copy("the original disappeared meanwhile", original_gone=True):
            return Result(
                Outcome.NOT_FOUND,
                "the original disappeared while its copy was made (it ran or was deleted); the "
                f"copy {copy.task} was withdrawn before it was due",
                **done,
            )
        return Result(
            Outcome.FAILED,
            f"the original disappeared while its copy {copy} was made, and the copy could not "
            "be withdrawn: it may run a second time; delete it",
            503,
            **done,
        )
    made = None if claimed.resumed else due
    run = RunResult(
        True, state, confirmed_by="CreateTask", method="recreate", copy=copy, copy_due=made
    )
    how = "finished re-creating" if claimed.resumed else "re-created"
    when = f"due {due.isoformat()}" if made else "made by an earlier delivery"
    return Result(
        Outcome.RECREATED,
        f"{how} as {copy.task} ({when}), the original deleted",
        run=run,
        **done,
    )


def _too_soon_to_recreate(state: TaskState, rt: Runtime) -> str | None:
    """Why the original's own next attempt is too close for a re-create, or None."""
    margin_s = rt.settings.recreate_margin_s
    if state.schedule_time is None:
        return None
    ahead_s = (state.schedule_time - rt.clock()).total_seconds()
    if ahead_s >= margin_s:
        return None
    return (
        f"its own next attempt is due in {ahead_s:.0f}s, within REDRIVE_RECREATE_MARGIN_S "
        f"({margin_s:g}s): Cloud Tasks could dispatch the original while its copy is made"
    )


def _claim(
    request: Request, state: TaskState, evidence: FixEvidence | None, rt: Runtime
) -> Grant | Refusal | None:
    """The claim step: a Grant, a Refusal, or None when no claims queue is configured."""
    claims = rt.claims
    if claims is None:
        return None
    task = request.failure.task
    return claims.claim(
        FailureKey(task, state.dispatch_count),
        fix=fix_identity(evidence),
        owner=request.owner,
        reread=lambda: rt.tasks.get(task),
        marked=needs_fix_marker(evidence),
    )


def _never_dispatched(err: errors.RedriveError) -> bool:
    """True when RunTask's error proves it did not dispatch (the next attempt may go at once)."""
    return isinstance(
        err, errors.QuotaExceededError | errors.PermissionDeniedError | errors.InvalidRequestError
    )


def _throttle_wait_s(request: Request, rt: Runtime) -> float:
    if request.throttle_timeout_s is not None:
        return request.throttle_timeout_s
    return max(rt.settings.retry_deadline_s, 1.0)


def _job(
    failure: Failure,
    state: TaskState,
    evidence: FixEvidence | None,
    rt: Runtime,
    redrive_id: str | None = None,
) -> JobTask:
    """The redrive job for a failure: named after the task and its failed attempt's dispatch
    count, so a second producer of the same failure meets ALREADY_EXISTS; it carries the fix
    evidence found here, for run_job, and the bulk re-drive it belongs to (not in its name: a
    per-task signal and a sweep must meet on the same name)."""
    settings = rt.settings
    assert settings.redrive_queue is not None and settings.job_url is not None
    job = Job.for_failure(failure, state.dispatch_count, evidence, redrive_id)
    return job_task(
        job,
        settings.redrive_queue,
        settings.job_url,
        settings.job_service_account,
        settings.job_deadline_s,
    )


def record(
    rt: Runtime,
    result: Result,
    *,
    failure: Failure | None,
    signal: SignalRef | None,
    entry_point: str,
    started: float | None = None,
    extra: dict[str, object] | None = None,
    redrive_id: str | None = None,
) -> None:
    """Log one outcome line for `result` (duration from `started`, a time.monotonic() value)."""
    line = result_record(
        result,
        failure=failure,
        signal=signal,
        settings=rt.settings,
        duration_ms=0.0 if started is None else (time.monotonic() - started) * 1000,
        entry_point=entry_point,
        redrive_id=redrive_id,
    )
    if extra:
        line.update(extra)
    rt.log.emit(line)
