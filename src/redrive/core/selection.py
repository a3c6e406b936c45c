"""Which tasks a sweep re-drives, and which queues a deploy or queue alert means: pure, no I/O.

- `select(state, deployed_at, statuses)`: the verdict for one listed task (table-tested);
- `plan_for(signal, ref, settings)`: the queues a Deploy or QueueAlert asks to sweep, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redrive.core.config import Settings
from redrive.core.decide import SignalRef
from redrive.core.names import QueueName
from redrive.core.parking import RestoreScope
from redrive.core.signals import Deploy, Patrol, QueueAlert
from redrive.core.state import TaskState
from redrive.core.statuses import StatusFilter


class Pick(StrEnum):
    """The verdict of `select` for one listed task."""

    SELECTED = "SELECTED"
    """Last attempt failed before the deploy (or, for a queue alert, failed) and is over."""
    IN_FLIGHT = "IN_FLIGHT"
    """Last attempt dispatched and not yet answered."""
    NEVER_ATTEMPTED = "NEVER_ATTEMPTED"
    """No attempt answered yet (never dispatched)."""
    LAST_OK = "LAST_OK"
    """Last attempt succeeded."""
    AFTER_DEPLOY = "AFTER_DEPLOY"
    """Dispatched again at or after the deploy: the fixed code already had its chance."""
    NO_ATTEMPT_TIME = "NO_ATTEMPT_TIME"
    """Failed, but with no attempt time to place it before the deploy: not guessed."""
    OTHER_STATUS = "OTHER_STATUS"
    """Would be selected, but its last attempt failed with a status the re-drive does not take
    (a 404 when the fix was for the 500s): left to its own retries."""


def select(
    state: TaskState, deployed_at: datetime | None, statuses: StatusFilter | None = None
) -> Pick:
    """Should this listed task be re-driven? Tasks that succeeded are gone and never listed.

    `deployed_at` None (a queue alert) selects every failed, finished task; the fix check then
    decides for each one. `statuses` (None: every failure) is asked last, so OTHER_STATUS counts
    exactly the tasks the filter left alone.
    """
    if state.in_flight:
        return Pick.IN_FLIGHT
    if state.last_status_code is None:
        return Pick.NEVER_ATTEMPTED
    if not state.last_failed:
        return Pick.LAST_OK
    if deployed_at is None:
        return _by_status(state, statuses)
    failed_at = state.failed_at
    if failed_at is None:
        return Pick.NO_ATTEMPT_TIME
    if failed_at >= deployed_at:
        return Pick.AFTER_DEPLOY
    return _by_status(state, statuses)


def _by_status(state: TaskState, statuses: StatusFilter | None) -> Pick:
    if statuses is None or statuses.matches(state):
        return Pick.SELECTED
    return Pick.OTHER_STATUS


# ---------------------------------------------------------------------------------------------
# Pure planning: which queues a signal means


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep: the queues, the deploy time (None for a queue alert), and why."""

    queues: tuple[QueueName, ...]
    deployed_at: datetime | None
    signal: SignalRef
    basis: str
    """How the queues were found: `signal`, `service map`, `signal and service map`, `alert`,
    `allowlist, revision check`, `command line`, or `none`."""
    services: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    """Services of the deploy signal that REDRIVE_SERVICE_MAP does not know."""
    note: str = ""
    """Why the plan is what it is, when that needs saying (always, for an empty plan)."""
    purpose: str = "redrive"
    """`redrive` (re-drive the selected tasks; with parking, restore the parked ones a deploy
    fixes), `patrol` (park the tasks about to use their last attempt) or `restore` (restore the
    parked tasks of `restore`)."""
    locations: tuple[str, ...] = ()
    """`projects/P/locations/L` whose every queue is swept too (an allowlist pattern)."""
    restore: RestoreScope | None = None
    """Purpose `restore` (an operator's): the parked tasks to restore."""
    statuses: StatusFilter | None = None
    """The last-attempt statuses re-driven (the signal's, else REDRIVE_SWEEP_STATUSES); None:
    every failure."""


def plan_for(signal: Deploy | QueueAlert, ref: SignalRef, settings: Settings) -> SweepPlan:
    """The sweep a Deploy or QueueAlert signal asks for.

    Deploy: the queues it names, plus the queues REDRIVE_SERVICE_MAP maps its services to, with
    the deploy's time as the fix evidence. A deploy that maps to no queue is never evidence for
    queues it does not name (any service's build would otherwise force-run every failing task):
    with the revision fix check the exact queues of REDRIVE_ALLOWED_QUEUES are swept and each
    task's own service revision decides; otherwise nothing is swept (`note` says why).
    QueueAlert: its one queue, the configured fix check deciding per task.
    The statuses re-driven are the deploy's own, else REDRIVE_SWEEP_STATUSES.
    """
    default = settings.sweep_statuses
    if isinstance(signal, QueueAlert):
        return SweepPlan((signal.queue,), None, ref, "alert", statuses=default)
    if not isinstance(signal, Deploy):
        raise TypeError(f"not a sweep signal: {type(signal).__name__}")
    found: list[QueueName] = list(signal.queues)
    unmapped: list[str] = []
    for service in signal.services:
        mapped = settings.queues_for_service(service)
        if not mapped:
            unmapped.append(service)
        found.extend(mapped)
    queues = tuple(dict.fromkeys(found))
    services = tuple(signal.services)
    statuses = signal.statuses if signal.statuses is not None else default
    if queues:
        from_map = len(queues) > len(set(signal.queues))
        basis = {
            (True, False): "signal",
            (False, True): "service map",
            (True, True): "signal and service map",
        }[(bool(signal.queues), from_map)]
        return SweepPlan(
            queues, signal.deployed_at, ref, basis, services, tuple(unmapped), statuses=statuses
        )
    named = ", ".join(services) or "no service"
    allowed = tuple(
        queue
        for queue in sorted(QueueName.parse(q) for q in settings.allowed_queues.exact)
        if queue not in settings.own_queues
    )
    if settings.fix_check == "revision" and allowed:
        note = (
            f"the deploy of {named} maps to no queue: the allowed queues are swept and each "
            "task's Cloud Run revision decides (the deploy is not taken as evidence)"
        )
        return SweepPlan(
            allowed,
            None,
            ref,
            "allowlist, revision check",
            services,
            tuple(unmapped),
            note,
            statuses=statuses,
        )
    note = (
        f"the deploy of {named} maps to no queue: name its queues in the message or map its "
        "service in REDRIVE_SERVICE_MAP (a deploy is never taken as fix evidence for queues it "
        "does not concern"
        + (
            "; with REDRIVE_FIX_CHECK=revision the allowed queues would be swept with each "
            "task's own revision deciding)"
            if settings.fix_check != "revision"
            else "; REDRIVE_ALLOWED_QUEUES lists no exact queue to sweep)"
        )
    )
    return SweepPlan(
        (), signal.deployed_at, ref, "none", services, tuple(unmapped), note, statuses=statuses
    )


def patrol_plan(signal: Patrol, ref: SignalRef, settings: Settings) -> SweepPlan:
    """The queues a patrol looks at: the ones it names, else every allowed queue (the exact ones,
    and every queue of an allowed location); never redrive's own."""
    if signal.queues:
        return SweepPlan(signal.queues, None, ref, "signal", purpose="patrol")
    exact = tuple(
        queue
        for queue in sorted(QueueName.parse(q) for q in settings.allowed_queues.exact)
        if queue not in settings.own_queues
    )
    locations = tuple(sorted(settings.allowed_queues.locations))
    note = "" if exact or locations else "REDRIVE_ALLOWED_QUEUES is empty: nothing to patrol"
    return SweepPlan(
        exact, None, ref, "allowlist", note=note, purpose="patrol", locations=locations
    )
