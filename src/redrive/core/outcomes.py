"""The closed set of outcomes redrive reports, one per decision.

Each outcome carries its log severity and whether the platform should deliver the work again.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What redrive decided (and did) for one task, one signal or one sweep."""

    DISPATCHED = "DISPATCHED"
    """RunTask was called and Cloud Tasks dispatched the task."""
    RECREATED = "RECREATED"
    """The failed task was re-created as a new task due now and the original deleted (the
    target sees a new task name and fresh retry counters)."""
    PARKED = "PARKED"
    """The task's next attempt would have been its last: it was moved to the parking queue (a
    copy that never runs by itself; the original deleted) until a fix restores it."""
    RESTORED = "RESTORED"
    """A parked task was re-created in its origin queue, due now, and its parked copy deleted."""
    DRY_RUN = "DRY_RUN"
    """Every guard passed; RunTask was not called because dry run is on."""
    QUEUED = "QUEUED"
    """A redrive job was enqueued in the redrive queue (queued mode)."""
    NOT_FOUND = "NOT_FOUND"
    """The task does not exist: it existed recently (it succeeded, permanently failed or was
    deleted), or no task of that name did (a wrong name, or gone long ago); see core.gone."""
    DEFERRED = "DEFERRED"
    """Not now, later: an attempt is in flight, or an earlier forced run's outcome is not known
    yet. The platform delivers the work again."""
    SKIPPED_ALREADY_RETRIED = "SKIPPED_ALREADY_RETRIED"
    """The task was dispatched again after the signalled failure: someone already retried it."""
    SKIPPED_NOT_FAILING = "SKIPPED_NOT_FAILING"
    """The task has no failed attempt to re-drive."""
    SKIPPED_RETRY_DUE = "SKIPPED_RETRY_DUE"
    """The task's own next attempt is due (within the margin, or overdue): Cloud Tasks runs it."""
    SKIPPED_FIX_NOT_DEPLOYED = "SKIPPED_FIX_NOT_DEPLOYED"
    """No fix was deployed after the last failed attempt; a later deploy sweep picks it up."""
    SKIPPED_FIX_INEFFECTIVE = "SKIPPED_FIX_INEFFECTIVE"
    """The task was force-run once under this fix and failed again: the fix did not help."""
    SKIPPED_NOT_ALLOWED = "SKIPPED_NOT_ALLOWED"
    """The task's queue is not in REDRIVE_ALLOWED_QUEUES."""
    SKIPPED_STALE_SIGNAL = "SKIPPED_STALE_SIGNAL"
    """The signal is older than REDRIVE_MAX_SIGNAL_AGE."""
    SKIPPED_DUPLICATE = "SKIPPED_DUPLICATE"
    """Another delivery holds this failure: its redrive job exists (or existed within the dedup
    window), or it claimed the forced run."""
    IGNORED = "IGNORED"
    """The signal was understood and needs no action (closed incident, successful attempt)."""
    INVALID_SIGNAL = "INVALID_SIGNAL"
    """The payload could not be understood; acknowledged, never retried."""
    PERMISSION_DENIED = "PERMISSION_DENIED"
    """Cloud Tasks or Cloud Run refused a call for lack of permission: a configuration error."""
    FAILED = "FAILED"
    """A transient fault or quota outlasted the bounded retries; the platform delivers again."""
    SWEEP = "SWEEP"
    """Summary of one sweep (counts by decision, pages, duration, completeness)."""
    HALTED = "HALTED"
    """A bulk re-drive stopped in a queue because its canaries failed again (or none answered):
    the queue's other tasks were left to Cloud Tasks' own retries (or stay parked)."""
    GATED = "GATED"
    """Queued mode: a queue's canary jobs were queued, and a gate job releases or halts the rest
    once they are answered."""
    CANCELLED = "CANCELLED"
    """An operator cancelled a bulk re-drive (`redrive cancel`): its waiting jobs were deleted;
    their tasks keep their own Cloud Tasks retries."""

    @property
    def severity(self) -> str:
        if self in _ERRORS:
            return "ERROR"
        if self in _WARNINGS:
            return "WARNING"
        return "INFO"

    @property
    def redeliver(self) -> bool:
        """True when the platform (Pub/Sub or the redrive queue) should deliver the work again."""
        return self in _REDELIVER


_ERRORS = frozenset({Outcome.FAILED, Outcome.PERMISSION_DENIED, Outcome.HALTED})
_WARNINGS = frozenset(
    {Outcome.INVALID_SIGNAL, Outcome.SKIPPED_FIX_INEFFECTIVE, Outcome.PARKED, Outcome.CANCELLED}
)
"""A parked task is work that failed for good unless somebody fixes it: worth a look. A
cancelled re-drive leaves its tasks to Cloud Tasks' own retries: worth knowing."""
_REDELIVER = frozenset({Outcome.FAILED, Outcome.DEFERRED})
