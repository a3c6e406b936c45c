"""The pure decision core: what to do with one failed task.

No I/O here. The handler feeds it what it has learnt so far and does what the returned `Action`
asks, then calls it again with the new facts:

    screen(failure)                        → SKIPPED_NOT_ALLOWED / SKIPPED_STALE_SIGNAL /
                                             INVALID_SIGNAL (a time in the future), or go on
    decide(failure, state, evidence=None)  → NOT_FOUND / SKIPPED_* / DEFERRED or Action.CHECK_FIX
    decide(failure, state, evidence)       → SKIPPED_FIX_NOT_DEPLOYED / DRY_RUN or Action.RUN
    after_run(run)                         → DISPATCHED / NOT_FOUND
    for_error(err)                         → PERMISSION_DENIED / FAILED / INVALID_SIGNAL / NOT_FOUND

Splitting the fix check out keeps the core pure and means Cloud Run is only asked when every
cheaper guard has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redrive.core import errors
from redrive.core.config import QueueAllowlist, Settings
from redrive.core.gone import Gone, classify_not_found, not_found_reason
from redrive.core.names import QueueName, TaskName
from redrive.core.outcomes import Outcome
from redrive.core.state import TaskState


class Action(StrEnum):
    """What the caller must do next."""

    NONE = "NONE"
    """Final: log the outcome."""
    CHECK_FIX = "CHECK_FIX"
    """Gather fix evidence, then call `decide` again with it."""
    RUN = "RUN"
    """Call RunTask (under the throttle), then `after_run`."""


@dataclass(frozen=True)
class SignalRef:
    """Where a failure report came from (logged with every outcome)."""

    kind: str
    source: str
    message_id: str | None = None
    publish_time: datetime | None = None
    details: tuple[tuple[str, str], ...] = ()
    """Format metadata worth keeping (a dead-lettered message's CloudPubSubDeadLetterSource*
    attributes), as sorted pairs."""


@dataclass(frozen=True)
class Failure:
    """One reported task failure: the input of every decision."""

    task: TaskName
    seen_at: datetime
    signal: SignalRef
    dispatch_count: int | None = None
    """The failed attempt's dispatch count, when the signal knows it (task logs, redrive jobs)."""
    status: str | None = None


@dataclass(frozen=True)
class Policy:
    """The settings the core reads."""

    allowlist: QueueAllowlist
    max_signal_age_s: float
    dry_run: bool
    own_queues: frozenset[QueueName] = frozenset()
    """redrive's own queues (jobs, claims): never a target."""
    retry_due_margin_s: float = 60.0
    clock_skew_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.allowed_queues,
            settings.max_signal_age_s,
            settings.dry_run,
            settings.own_queues,
            settings.retry_due_margin_s,
            settings.clock_skew_s,
        )

    def queue_refusal(self, queue: QueueName) -> str | None:
        """Why a queue may not be acted on, or None when it may."""
        if queue in self.own_queues:
            return f"queue {queue} is one of redrive's own queues: never re-driven"
        if not self.allowlist.allows(queue):
            if self.allowlist.empty:
                return "REDRIVE_ALLOWED_QUEUES is empty"
            return f"queue {queue} is not in REDRIVE_ALLOWED_QUEUES"
        return None


@dataclass(frozen=True)
class FixEvidence:
    """Whether (and since when) a fix is live, as found by one fix-check strategy."""

    strategy: str
    live_since: datetime | None = None
    service: str | None = None
    revision: str | None = None
    note: str | None = None

    def covers(self, failed_at: datetime | None) -> bool:
        """True when the fix went live after the failed attempt ran."""
        if self.strategy == "none":
            return True
        if self.live_since is None:
            return False
        if failed_at is None:
            # A failed task with no attempt time cannot be placed before the fix: do not guess.
            return False
        return self.live_since > failed_at


@dataclass(frozen=True)
class RunResult:
    """What the act did: RunTask, or a re-create (a copy due soon, the original deleted)."""

    dispatched: bool
    state: TaskState | None = None
    """The task as RunTask (or the confirming GetTask) returned it; for a re-create, the
    original as it was read before the copy was made."""
    confirmed_by: str = "RunTask"
    """"RunTask", or "GetTask" when a timed-out RunTask was confirmed by a higher dispatch count."""
    attempts: int = 1
    method: str = "run"
    """"run" (RunTask) or "recreate"."""
    copy: TaskName | None = None
    """A re-create's copy: the task that now carries the work."""
    copy_due: datetime | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    outcome: Outcome | None
    reason: str
    http_status: int = 200
    """For run_job: 200 for terminal outcomes, 429/503 so the redrive queue retries."""
    gone: Gone | None = None
    """For NOT_FOUND: what Cloud Tasks' answer said of the name (None when not known)."""

    @property
    def final(self) -> bool:
        return self.action is Action.NONE


def _final(
    outcome: Outcome, reason: str, http_status: int = 200, gone: Gone | None = None
) -> Decision:
    return Decision(Action.NONE, outcome, reason, http_status, gone)


def screen(failure: Failure, policy: Policy, now: datetime) -> Decision | None:
    """Guards that need no I/O. None means: go on and read the task."""
    refusal = policy.queue_refusal(failure.task.queue_name)
    if refusal is not None:
        return _final(Outcome.SKIPPED_NOT_ALLOWED, refusal)
    ahead_s = (failure.seen_at - now).total_seconds()
    if ahead_s > policy.clock_skew_s:
        # A failure seen in the future would defeat "dispatched again since": refuse it.
        return _final(
            Outcome.INVALID_SIGNAL,
            f"the failure time {_iso(failure.seen_at)} is {ahead_s:.0f}s in the future (more "
            f"than REDRIVE_CLOCK_SKEW_S={policy.clock_skew_s:g}s)",
        )
    age_s = (now - failure.seen_at).total_seconds()
    if age_s > policy.max_signal_age_s:
        return _final(
            Outcome.SKIPPED_STALE_SIGNAL,
            f"signal is {age_s:.0f}s old, more than REDRIVE_MAX_SIGNAL_AGE "
            f"({policy.max_signal_age_s:.0f}s)",
        )
    return None


def decide(
    failure: Failure,
    state: TaskState | Gone | None,
    evidence: FixEvidence | None,
    policy: Policy,
    now: datetime,
    *,
    check_in_flight: bool = True,
) -> Decision:
    """The design's decision list for one task. `state` a `Gone` (or None, its kind unknown)
    means GetTask answered NOT_FOUND."""
    early = screen(failure, policy, now)
    if early is not None:
        return early
    if state is None or isinstance(state, Gone):
        return _final(Outcome.NOT_FOUND, not_found_reason(state), gone=state)
    retried = already_retried(failure, state, policy.clock_skew_s)
    if retried is not None:
        return _final(Outcome.SKIPPED_ALREADY_RETRIED, retried)
    if check_in_flight and state.in_flight:
        # Not dispatched again since the failure, and an attempt is running: the failure may be
        # that very attempt's. Look again once it has been answered.
        return _final(
            Outcome.DEFERRED,
            f"attempt {state.dispatch_count} was dispatched at {_iso(state.last_dispatch_time)} "
            "and has not been answered yet: looking again after it ends",
            503,
        )
    if not state.last_failed:
        why = (
            "task has no answered attempt"
            if state.last_status_code is None
            else "last attempt succeeded"
        )
        return _final(Outcome.SKIPPED_NOT_FAILING, why)
    due = retry_due(state, now, policy.retry_due_margin_s)
    if due is not None:
        return _final(Outcome.SKIPPED_RETRY_DUE, due)
    if evidence is None:
        return Decision(Action.CHECK_FIX, None, "guards passed; fix evidence needed")
    if not evidence.covers(state.failed_at):
        live = evidence.live_since.isoformat() if evidence.live_since else "unknown"
        note = f" ({evidence.note})" if evidence.note else ""
        return _final(
            Outcome.SKIPPED_FIX_NOT_DEPLOYED,
            f"no fix live after the last failed attempt at {_iso(state.failed_at)} "
            f"({evidence.strategy}: live since {live}){note}",
        )
    if policy.dry_run:
        return _final(Outcome.DRY_RUN, "every guard passed; REDRIVE_DRY_RUN is on")
    return Decision(Action.RUN, None, "every guard passed")


def already_retried(failure: Failure, state: TaskState, skew_s: float = 0.0) -> str | None:
    """Why the task counts as dispatched again since the failure was signalled, or None.

    With the failed attempt's dispatch count the test is exact; without it the last dispatch time
    is compared with when the failure was seen, allowing `skew_s` of clock difference between
    the sender of the signal and Cloud Tasks (a failure reported a second before its own
    attempt's dispatch is that attempt's, not an earlier one's).
    """
    if failure.dispatch_count is not None:
        if state.dispatch_count > failure.dispatch_count:
            return (
                f"dispatch count is {state.dispatch_count}, the failure was attempt "
                f"{failure.dispatch_count}"
            )
        return None
    if (
        state.last_dispatch_time is not None
        and (state.last_dispatch_time - failure.seen_at).total_seconds() > skew_s
    ):
        return (
            f"last dispatched at {_iso(state.last_dispatch_time)}, after the failure was seen "
            f"at {_iso(failure.seen_at)}"
        )
    return None


def retry_due(state: TaskState, now: datetime, margin_s: float) -> str | None:
    """Why the task's own next attempt makes a forced run pointless (and a double run likely),
    or None. Due within the margin: Cloud Tasks is about to run it. Overdue: its queue is
    dispatching a backlog (or is paused), and forcing it would jump the queue's rate limit."""
    if state.schedule_time is None:
        return None
    ahead_s = (state.schedule_time - now).total_seconds()
    if ahead_s > margin_s:
        return None
    when = _iso(state.schedule_time)
    if ahead_s >= 0:
        return (
            f"its next attempt is due at {when}, within REDRIVE_RETRY_DUE_MARGIN_S "
            f"({margin_s:g}s): Cloud Tasks runs it"
        )
    return (
        f"its next attempt was due at {when} ({-ahead_s:.0f}s ago): the queue dispatches it "
        "itself (a backlog or a paused queue); forcing it would bypass the queue's rate limit"
    )


def after_run(run: RunResult) -> Decision:
    if run.dispatched:
        how = "" if run.confirmed_by == "RunTask" else f" (confirmed by {run.confirmed_by})"
        return _final(Outcome.DISPATCHED, f"RunTask dispatched the task{how}")
    return _final(Outcome.NOT_FOUND, "task disappeared before RunTask (completed meanwhile)")


def for_error(err: errors.RedriveError, *, permission_grace: bool = False) -> Decision:
    """The outcome of an error met while deciding or running (already translated).

    `permission_grace`: the instance has just started, when a missing permission is more likely
    a grant still propagating (a first deploy) than a grant that will never come: FAILED, so the
    platform delivers the work again, instead of an acknowledged PERMISSION_DENIED.
    """
    if isinstance(err, errors.PermissionDeniedError) and permission_grace:
        return _final(
            Outcome.FAILED,
            f"{err} (within REDRIVE_PERMISSION_GRACE_S of the instance's start: new grants may "
            "still be propagating, so the work is delivered again)",
            503,
        )
    if isinstance(err, errors.QuotaExceededError):
        return _final(Outcome.FAILED, f"quota exhausted: {err}", 429)
    if isinstance(err, errors.TransientError):
        return _final(Outcome.FAILED, f"transient fault: {err}", 503)
    if isinstance(err, errors.PermissionDeniedError):
        # Not retried by the platform: retrying a missing grant only burns quota. The ERROR line
        # (and the alert on it) is how an operator learns about it.
        return _final(Outcome.PERMISSION_DENIED, str(err))
    if isinstance(err, errors.NotFoundError):
        gone = classify_not_found(str(err))
        return _final(Outcome.NOT_FOUND, f"{not_found_reason(gone)} ({err})", gone=gone)
    return _final(Outcome.INVALID_SIGNAL, f"Cloud Tasks refused the request: {err}")


def _iso(value: datetime | None) -> str:
    return "unknown" if value is None else value.isoformat()
