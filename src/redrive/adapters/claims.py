"""The claims register over Cloud Tasks: take the right to force-run a failure once, globally.

The markers, their names and the verdict on a taken rung are redrive.core.claims; this adapter
makes the calls (CreateTask to take, GetTask with the FULL view to read who holds) in this order:

1. the fix marker is read: a task already force-run under this fix for an earlier failure is
   not forced again (SKIPPED_FIX_INEFFECTIVE);
2. rung 1, 2, ... is taken with CreateTask; a taken rung is judged (core.claims.judge_rung): an
   ended rung passes to the next, a young one makes us wait (ours: DEFERRED) or stand aside
   (theirs: SKIPPED_DUPLICATE), an old one is passed only after the task's state shows that its
   attempt did not dispatch;
3. with a rung in hand the fix marker is written, so the next failure of the task under the same
   fix finds it.

Happy path: one GetTask (fix marker, NOT_FOUND) and two CreateTask calls before the RunTask.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from redrive.adapters.cloudtasks import CloudTasks
from redrive.core import errors
from redrive.core.canary import verdict_id
from redrive.core.claims import (
    MARKER_URL,
    MAX_RUNGS,
    Checkpoint,
    FailureKey,
    Kind,
    Marker,
    Step,
    checkpoint_name,
    end_name,
    fix_name,
    judge_rung,
    rung_name,
    stays_name,
)
from redrive.core.jobs import JobTask
from redrive.core.names import QueueName
from redrive.core.outcomes import Outcome
from redrive.core.state import TaskState

SCHEDULE_AHEAD = timedelta(days=29)
"""Markers are due this far ahead (Cloud Tasks accepts at most 30 days): in a paused queue they
never run, and Cloud Tasks' 31-day retention removes them after the failure they guard is moot."""


@dataclass(frozen=True)
class Grant:
    """A rung in hand: the right to call RunTask once for the failure."""

    failure: FailureKey
    rung: int
    marker: str
    owner: str
    fix: str
    resumed: bool = False
    """The rung was taken earlier and its act is half done (a re-create's copy exists): finish
    it rather than start another."""

    def fields(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "rung": self.rung,
            "marker": self.marker,
            "owner": self.owner,
            "fix": self.fix,
        }
        if self.resumed:
            fields["resumed"] = True
        return fields


@dataclass(frozen=True)
class Refusal:
    """No rung: the outcome to report instead of acting."""

    outcome: Outcome
    reason: str
    http_status: int = 200
    holder: str | None = None
    rung: int | None = None
    retry_after_s: float | None = None

    def fields(self) -> dict[str, object]:
        return {"rung": self.rung, "holder": self.holder, "refused": self.outcome.value}


class Claims:
    """Claim markers in the (paused) claims queue."""

    def __init__(
        self,
        tasks: CloudTasks,
        queue: QueueName,
        *,
        window_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.tasks = tasks
        self.queue = queue
        self.window_s = window_s
        self._clock = clock

    def claim(
        self,
        failure: FailureKey,
        *,
        fix: str,
        owner: str,
        reread: Callable[[], TaskState | None] | None,
        resume: Callable[[int, bool], bool] | None = None,
        marked: bool = True,
    ) -> Grant | Refusal:
        """Take the next free rung for `failure`, or say why not. `reread` reads the task again
        (used before passing a rung whose attempt is old enough to judge). `resume(k, ended)`
        says whether rung k's act is half done and must be finished instead (a re-create whose
        copy is there, or ran), `ended` telling whether the rung was ended: then that rung is
        granted again, `resumed`. `marked`: read and write the fix marker (only evidence without
        a time needs it: core.claims.needs_fix_marker). `reread` None: the claimed act leaves no
        trace in a task's dispatch count (parking, restoring), so `resume` alone judges an old
        rung."""
        refusal = self._fix_refusal(failure, fix) if marked else None
        if refusal is not None:
            return refusal
        for rung in range(1, MAX_RUNGS + 1):
            name = rung_name(self.queue, failure, rung)
            marker = Marker(
                Kind.RUNG, failure.task, failure.dispatch_count, owner, fix, self._clock(), rung
            )
            if self._create(name, marker):
                grant = Grant(failure, rung, name, owner, fix)
                return self._mark_fix(grant) if marked else grant
            step, holder = self._judge(failure, rung, name, owner)
            if step is Step.NEXT:
                if resume is not None and resume(rung, True):
                    return Grant(failure, rung, name, owner, fix, resumed=True)
                continue
            if step is Step.WAIT:
                until = self._clock() + timedelta(seconds=self.window_s)
                return Refusal(
                    Outcome.DEFERRED,
                    f"forced-run attempt {rung} of this failure (by this same delivery) may still "
                    f"be dispatching; its outcome is known after {until.isoformat()}",
                    503,
                    holder,
                    rung,
                    retry_after_s=self.window_s,
                )
            if step is Step.YIELD:
                return Refusal(
                    Outcome.SKIPPED_DUPLICATE,
                    f"another delivery ({holder}) holds forced-run attempt {rung} of this failure",
                    holder=holder,
                    rung=rung,
                )
            moved = self._moved(failure, rung, holder, reread) if reread is not None else None
            if moved is not None:
                return moved
            if resume is not None and resume(rung, False):
                return Grant(failure, rung, name, owner, fix, resumed=True)
            # Old enough to judge and the task has not moved: that attempt never dispatched.
        return Refusal(
            Outcome.FAILED,
            f"all {MAX_RUNGS} forced-run attempts of this failure are used up without a dispatch",
            503,
        )

    @staticmethod
    def _moved(
        failure: FailureKey, rung: int, holder: str | None, reread: Callable[[], TaskState | None]
    ) -> Refusal | None:
        """An old rung's verdict from the task's state: gone or dispatched since, or None."""
        state = reread()
        if state is None:
            return Refusal(
                Outcome.NOT_FOUND,
                f"task no longer exists (forced-run attempt {rung} may have completed it)",
                holder=holder,
                rung=rung,
            )
        if state.dispatch_count > failure.dispatch_count or state.in_flight:
            return Refusal(
                Outcome.SKIPPED_ALREADY_RETRIED,
                f"forced-run attempt {rung} (by {holder}) dispatched it: dispatch count is "
                f"{state.dispatch_count}, the failure was attempt {failure.dispatch_count}",
                holder=holder,
                rung=rung,
            )
        return None

    def abandon(self, failure: FailureKey, rung: int, owner: str, why: str) -> bool:
        """End a rung somebody else took (an operator's word that its act did not happen)."""
        return self.end(Grant(failure, rung, rung_name(self.queue, failure, rung), owner, ""), why)

    def copy_stays(self, grant: Grant, why: str) -> None:
        """Record that the granted re-create's copy could not be withdrawn after its rung was
        ended (best effort): the next delivery then finishes the re-create."""
        marker = Marker(
            Kind.STAYS,
            grant.failure.task,
            grant.failure.dispatch_count,
            grant.owner,
            grant.fix,
            self._clock(),
            grant.rung,
            why[:300],
        )
        with contextlib.suppress(errors.RedriveError):
            self._create(stays_name(self.queue, grant.failure, grant.rung), marker)

    def rung_taken_at(self, failure: FailureKey, rung: int) -> datetime | None:
        """When a rung was taken (its marker's creation, the service's clock), None if unknown."""
        found = self.tasks.get_full(rung_name(self.queue, failure, rung))
        if found is None:
            return None
        if found[0].create_time is not None:
            return found[0].create_time
        marker = Marker.parse(found[1])
        return marker.at if marker is not None else None

    def copy_stayed(self, failure: FailureKey, rung: int) -> bool:
        """True when rung's copy was recorded as staying (see `copy_stays`)."""
        return self.tasks.get_full(stays_name(self.queue, failure, rung)) is not None

    def checkpoint(self, mark: Checkpoint) -> None:
        """Record a queued sweep's progress in one queue (best effort: without it a redelivery
        only re-creates jobs that exist, each met as SKIPPED_DUPLICATE)."""
        name = checkpoint_name(self.queue, mark.sweep, mark.queue, mark.page)
        spec = JobTask(
            name=name, url=MARKER_URL, body=mark.to_json(), schedule_time=self._schedule()
        )
        with contextlib.suppress(errors.RedriveError):
            self.tasks.create(self.queue, spec)

    def canary_verdict(self, redrive: str, key: str, verdict: str, reason: str) -> None:
        """Record a bulk re-drive's verdict on a queue's canaries (`key`: the queue, or
        `restore:<queue>`), so that a redelivered sweep neither picks new canaries after a
        release nor goes on after a halt. Best effort: without it a redelivery judges new
        canaries."""
        spec = JobTask(
            name=self._verdict_name(redrive, key),
            url=MARKER_URL,
            body=json.dumps({"verdict": verdict, "reason": reason[:1000]}).encode(),
            schedule_time=self._schedule(),
        )
        with contextlib.suppress(errors.RedriveError):
            self.tasks.create(self.queue, spec)

    def canary_verdict_of(self, redrive: str, key: str) -> tuple[str, str] | None:
        """The verdict recorded for the re-drive's `key`, or None (none yet, or unreadable for
        now)."""
        try:
            found = self.tasks.get_full(self._verdict_name(redrive, key))
        except errors.RedriveError:
            return None
        if found is None:
            return None
        try:
            data = json.loads(found[1])
            return str(data["verdict"]), str(data["reason"])
        except (ValueError, KeyError, TypeError):
            return None

    def _verdict_name(self, redrive: str, key: str) -> str:
        return f"{self.queue}/tasks/{verdict_id(f'{redrive}|{key}')}"

    def resume_point(self, sweep: str, queue: QueueName) -> Checkpoint | None:
        """The last checkpoint of a sweep in a queue (pages are checkpointed in order, so the
        last one is found by doubling, then halving: a few GetTask calls for thousands of
        pages)."""

        def read(page: int) -> Checkpoint | None:
            found = self.tasks.get_full(checkpoint_name(self.queue, sweep, queue, page))
            return Checkpoint.parse(found[1]) if found is not None else None

        best = read(1)
        if best is None:
            return None
        low, high = 1, 2
        while (found := read(high)) is not None:
            best, low, high = found, high, high * 2
        while high - low > 1:  # best is at `low`; `high` has none
            middle = (low + high) // 2
            found = read(middle)
            if found is not None:
                best, low = found, middle
            else:
                high = middle
        return best

    def end(self, grant: Grant, why: str) -> bool:
        """Record that the granted attempt ended without dispatching, so the next rung is free at
        once; True when recorded. Best effort: without the marker the rung frees itself when its
        window passes (for a re-create: its copy is then looked at)."""
        marker = Marker(
            Kind.END,
            grant.failure.task,
            grant.failure.dispatch_count,
            grant.owner,
            grant.fix,
            self._clock(),
            grant.rung,
            why[:300],
        )
        try:
            self._create(end_name(self.queue, grant.failure, grant.rung), marker)
        except errors.RedriveError:
            return False
        return True

    # -- helpers ---------------------------------------------------------------------------

    def _fix_refusal(self, failure: FailureKey, fix: str) -> Refusal | None:
        found = self.tasks.get_full(fix_name(self.queue, failure.task, fix))
        if found is None:
            return None
        marked = Marker.parse(found[1])
        if marked is None or marked.dispatch_count == failure.dispatch_count:
            return None
        return _fix_marked(marked, failure)

    def _mark_fix(self, grant: Grant) -> Grant | Refusal:
        failure = grant.failure
        marker = Marker(
            Kind.FIX, failure.task, failure.dispatch_count, grant.owner, grant.fix, self._clock()
        )
        name = fix_name(self.queue, failure.task, grant.fix)
        try:
            created = self._create(name, marker)
        except errors.RedriveError:
            # Nothing was run: free the rung at once (best effort), then fail as the call did.
            self.end(grant, "the fix marker could not be written; RunTask was not called")
            raise
        if created:
            return grant
        found = self.tasks.get_full(name)
        marked = Marker.parse(found[1]) if found is not None else None
        if marked is None or marked.dispatch_count == failure.dispatch_count:
            return grant  # ours from an earlier rung, or unreadable: the rung is what counts
        self.end(grant, "another failure of the task was force-run under this fix meanwhile")
        return _fix_marked(marked, failure)

    def _judge(
        self, failure: FailureKey, rung: int, name: str, owner: str
    ) -> tuple[Step, str | None]:
        if self.tasks.get_full(end_name(self.queue, failure, rung)) is not None:
            return Step.NEXT, None
        found = self.tasks.get_full(name)
        marker = Marker.parse(found[1]) if found is not None else None
        taken_at: datetime | None = None
        if found is not None:
            # The service's clock in whole seconds, rounded down: the rung may be a second younger.
            created = found[0].create_time
            if created is not None:
                taken_at = created + timedelta(seconds=1)
            elif marker is not None:
                taken_at = marker.at
        step = judge_rung(
            marker,
            ended=False,
            owner=owner,
            taken_at=taken_at,
            now=self._clock(),
            window_s=self.window_s,
        )
        return step, marker.owner if marker else None

    def _create(self, name: str, marker: Marker) -> bool:
        spec = JobTask(
            name=name, url=MARKER_URL, body=marker.to_json(), schedule_time=self._schedule()
        )
        return self.tasks.create(self.queue, spec)

    def _schedule(self) -> datetime:
        return self._clock() + SCHEDULE_AHEAD


def _fix_marked(marked: Marker, failure: FailureKey) -> Refusal:
    if marked.dispatch_count < failure.dispatch_count:
        return Refusal(
            Outcome.SKIPPED_FIX_INEFFECTIVE,
            f"force-run once under this fix ({marked.fix}) at attempt {marked.dispatch_count} "
            "and it failed again: the fix did not help; Cloud Tasks' own retries go on",
            holder=marked.owner,
        )
    return Refusal(
        Outcome.SKIPPED_ALREADY_RETRIED,
        f"a later failure (attempt {marked.dispatch_count}) was force-run under this fix",
        holder=marked.owner,
    )
