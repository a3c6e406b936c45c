"""Re-drive after a deploy (or a queue alert): list the queues page by page, select the tasks whose
last attempt failed before the fix went live (redrive.core.selection), and hand each one to the
per-task pipeline.

In direct mode each selected task goes through `pipeline.process` (RunTask under the in-process
rate limit, read again first); in queued mode each page's tasks are `pipeline.prepare`d, their
jobs created concurrently (redrive.adapters.jobqueue) and `pipeline.finish`ed. One outcome line
per selected task, one SWEEP line per sweep. ListTasks uses page_size 1000 and keeps one page in
memory at a time.

A sweep has a time budget (REDRIVE_SWEEP_BUDGET_S, below the function timeout). When it runs out
the sweep stops between two tasks, logs where it stopped (queue, page, page token, counts) and
reports itself incomplete; handle_signal then raises so the platform delivers the signal again.
The next delivery starts over from the first page: tasks already handled are either gone
(succeeded), dispatched after the deploy (not selected again), claimed (direct mode) or hold a job
name that Cloud Tasks refuses a second time (queued mode: every selected task's job is created
again and met as SKIPPED_DUPLICATE), so nothing runs twice and nothing is skipped on a guess.
"""

from __future__ import annotations

import heapq
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from redrive import pipeline
from redrive.adapters.cloudtasks import CloudTasks, QueueRates
from redrive.adapters.jobqueue import CONCURRENCY, JobQueue
from redrive.core import errors
from redrive.core.canary import Canary, Fate, Gate, Judgement, fate_of, gate_id, judge
from redrive.core.canary import Verdict as CanaryVerdict
from redrive.core.claims import Checkpoint
from redrive.core.decide import Failure, FixEvidence, SignalRef
from redrive.core.jobs import JobTask
from redrive.core.names import InvalidName, QueueName, TaskName
from redrive.core.outcomes import Outcome
from redrive.core.parking import Parked, RestoreScope, Verdict, park_check
from redrive.core.plan import QueuePlan, pace_for, plan_record
from redrive.core.records import COMPONENT, Result, build_record, iso, signal_fields
from redrive.core.recreate import Method, MethodChoice, choose_method
from redrive.core.redrives import owner_for, redrive_id
from redrive.core.selection import Pick, SweepPlan, patrol_plan, plan_for, select
from redrive.core.signals import Deploy, Patrol, QueueAlert
from redrive.core.state import TaskState
from redrive.core.statuses import status_label
from redrive.runtime import Runtime


@dataclass(frozen=True)
class Page:
    """One ListTasks page: its number, the token that fetched it, its tasks, the next token."""

    number: int
    token: str
    tasks: list[Any]
    next_token: str


RECREATE_WORKERS = 32
"""Re-creates in flight at once (each is a few Cloud Tasks calls, one after another)."""
PAGE_SIZE = 1000
"""ListTasks' maximum page size: fewest round trips, one page (≈1 MB of BASIC tasks) in memory."""
GETS_PER_LISTED_PAGE = 200
"""A restore lists its origin queue (BASIC, PAGE_SIZE a page) only while each page listed saves
at least this many GetTask calls: on the emulator a page of 1,000 takes about as long as 250-300
GetTasks (P2 lists about 9,700 tasks/s, P5 reads 2,400-3,000 tasks/s), and on Cloud Tasks it is
one round trip where the GetTasks go 32 at a time."""
SWEEP_EVENT = "redrive.sweep"
FIX_LIVE = "FIX_LIVE"
"""A patrol's skip: the task's next attempt would be its last, and runs on a live fix."""
DEPLOY_STRATEGY = "deploy-signal"
PLAN_SHARE = 0.25
"""The plan's count may use this share of the sweep's budget at most: beyond it the plan says
"at least" and the sweep itself goes on (so a queue too long to count still makes progress)."""


@dataclass
class Progress:
    """Live counters, passed to `on_progress` after every page and every handled task."""

    queue: str = ""
    pages: int = 0
    tasks_seen: int = 0
    selected: int = 0
    handled: int = 0
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class SweepReport:
    """The result of one sweep; `record()` is its SWEEP line."""

    plan: SweepPlan
    mode: str
    dry_run: bool
    api_version: str
    redrive_id: str | None = None
    """The bulk re-drive's id (core.redrives), the same on every delivery of its signal."""
    counts: Counter[str] = field(default_factory=Counter)
    """Outcome → number of tasks (only selected tasks get a decision)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Pick → number of listed tasks not selected."""
    queue_outcomes: dict[str, str] = field(default_factory=dict)
    """Queue → outcome for queues not listed (not allowed, not found, permission denied)."""
    methods: dict[str, dict[str, str]] = field(default_factory=dict)
    """Queue → the method its selected tasks were re-driven with, and why."""
    pages: int = 0
    tasks_seen: int = 0
    selected: int = 0
    complete: bool = True
    stopped_at: dict[str, Any] | None = None
    resumed_from_page: int | None = None
    """Queued mode: the page a redelivered sweep resumed at (its last checkpoint's next page)."""
    parking: dict[str, Any] = field(default_factory=dict)
    """The parking queue as this sweep saw it: parked tasks looked at and restored (a deploy),
    or counted, expiring and the queue's state (a patrol)."""
    canaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Queue (or `restore:<queue>`) → its canaries and their verdict (released, halted, gated:
    left to a gate job)."""
    duration_ms: float = 0.0

    @property
    def halted(self) -> list[str]:
        return sorted(k for k, v in self.canaries.items() if v.get("verdict") == "halt")

    @property
    def redeliver(self) -> bool:
        """True when the signal should be delivered again (cut short, or a transient fault)."""
        return not self.complete or any(
            count and Outcome(outcome).redeliver for outcome, count in self.counts.items()
        )

    def base_fields(self) -> dict[str, Any]:
        """What the plan and the SWEEP line share: the signal, the queues and how they were
        found, the deploy, the statuses taken, the mode."""
        plan = self.plan
        return {
            "redrive_id": self.redrive_id,
            "queues": [str(q) for q in plan.queues],
            "basis": plan.basis,
            "deployed_at": iso(plan.deployed_at),
            "statuses": str(plan.statuses) if plan.statuses is not None else None,
            "signal": signal_fields(plan.signal),
            "dry_run": self.dry_run,
            "mode": self.mode,
            "api_version": self.api_version,
            "labels": {"component": COMPONENT},
        }

    def record(self) -> dict[str, Any]:
        plan = self.plan
        # A queue whose listing FAILED (or was refused) was not swept: the sweep is not complete,
        # and a sweep with FAILED tasks or queues says so in its severity and message.
        unlisted = sorted(q for q, o in self.queue_outcomes.items() if o in _FAILURES)
        failed = bool(unlisted) or any(self.counts.get(o) for o in _FAILURES)
        failed = failed or self.parking.get("state") not in (None, "PAUSED")
        failed = failed or bool(self.halted)
        complete = self.complete and not unlisted
        if not self.complete:
            done = "INCOMPLETE (budget spent; will be delivered again)"
        elif unlisted:
            done = f"INCOMPLETE ({len(unlisted)} queue(s) not listed: FAILED)"
        else:
            done = "complete, with FAILED tasks" if failed else "complete"
        counts = (
            ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing re-driven"
        )
        name = {"patrol": "PATROL", "restore": "RESTORE"}.get(plan.purpose, "SWEEP")
        queues = len(plan.queues) + self.parking.get("location_queues", 0)
        message = (
            f"{name} {queues} queue(s), {self.tasks_seen} task(s) seen in {self.pages} "
            f"page(s), {self.selected} selected: {counts}; {done}"
        )
        if plan.purpose == "restore":
            message = (
                f"RESTORE {self.parking.get('seen', 0)} parked task(s) looked at, "
                f"{self.parking.get('restore_selected', 0)} selected: {counts}; {done}"
            )
        else:
            message += _parking_note(self.parking)
        if self.halted:
            message += f"; HALTED in {', '.join(self.halted)} (canaries failed again)"
        gated = sorted(k for k, v in self.canaries.items() if v.get("verdict") == "gated")
        if gated:
            message += f"; {len(gated)} queue(s) wait for their canaries (gate job)"
        if self.resumed_from_page:
            message += f"; resumed at page {self.resumed_from_page} (checkpoint)"
        if self.stopped_at:
            message += f"; stopped in {self.stopped_at['queue']} at page {self.stopped_at['page']}"
        warn = not complete or bool(self.parking.get("expiring"))
        return {
            "event": SWEEP_EVENT,
            "severity": "ERROR" if failed else "WARNING" if warn else "INFO",
            "message": message[:1000],
            "outcome": Outcome.SWEEP.value,
            "redrive_id": self.redrive_id,
            "queues": [str(q) for q in plan.queues],
            "basis": plan.basis,
            "note": plan.note or None,
            "services": list(plan.services),
            "unmapped_services": list(plan.unmapped),
            "deployed_at": iso(plan.deployed_at),
            "statuses": str(plan.statuses) if plan.statuses is not None else None,
            "signal": signal_fields(plan.signal),
            "counts": dict(self.counts),
            "skipped": dict(self.skipped),
            "queue_outcomes": dict(self.queue_outcomes),
            "methods": dict(self.methods),
            "pages": self.pages,
            "tasks_seen": self.tasks_seen,
            "selected": self.selected,
            "complete": complete,
            "stopped_at": self.stopped_at,
            "resumed_from_page": self.resumed_from_page,
            "purpose": plan.purpose,
            "parking": dict(self.parking) or None,
            "canaries": dict(self.canaries) or None,
            "duration_ms": round(self.duration_ms, 1),
            "dry_run": self.dry_run,
            "mode": self.mode,
            "api_version": self.api_version,
            "labels": {"outcome": Outcome.SWEEP.value, "component": COMPONENT},
        }


_FAILURES = frozenset({Outcome.FAILED.value, Outcome.PERMISSION_DENIED.value})
"""Outcomes that make a SWEEP line an ERROR: a task or a queue's listing failed."""


def _parking_note(parking: dict[str, Any]) -> str:
    """The parking queue's part of a SWEEP or PATROL message."""
    if not parking.get("queue"):
        return ""
    if "parked" not in parking:
        return f"; {parking.get('restore_selected', 0)} parked task(s) to restore"
    note = f"; {parking['parked']} task(s) parked"
    if parking.get("expiring"):
        note += (
            f", {parking['expiring']} within REDRIVE_PARKED_WARN_S of the parking queue's "
            "retention limit (restore or purge them)"
        )
    if parking.get("state") not in (None, "PAUSED"):
        note += (
            f"; the parking queue is {parking['state']}, not PAUSED: pause it (its copies cannot "
            "reach a target, but they are deleted once their retries run out)"
        )
    return note


CANARY_POLL_S = 1.0
"""How often a sweep looks at its canaries while it waits for them."""
GATE_FIRST_CHECK_S = 5.0
"""A gate job is due this long after its canary jobs: they go first (the redrive queue dispatches
in schedule order), and an early gate only answers 503 and comes back."""


@dataclass
class _Canaries:
    """One queue's canaries while a bulk re-drive collects and judges them."""

    key: str
    queue: QueueName
    wanted: int
    found: list[Canary] = field(default_factory=list)
    verdict: CanaryVerdict | None = None
    """None while collecting and waiting; RELEASE or HALT once judged."""
    acted: int = 0
    """Tasks of the queue acted on so far, canaries included."""

    @property
    def collecting(self) -> bool:
        return self.verdict is None and len(self.found) < self.wanted


class _QueueStop(Exception):  # noqa: N818 - a signal inside the driver, never raised out
    """The queue's re-drive stops here: halted by its canaries, or left to its gate job."""


class BudgetSpent(Exception):  # noqa: N818 - a signal inside the driver, never raised out
    """The sweep's time budget ran out."""


class Sweeper:
    """Runs one sweep plan against Cloud Tasks through a Runtime; logs every line itself."""

    def __init__(
        self,
        rt: Runtime,
        *,
        budget_s: float | None = None,
        entry_point: str = "handle_signal",
        concurrency: int = CONCURRENCY,
        page_size: int = PAGE_SIZE,
        on_result: Callable[[Failure, Result], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        owner: str | None = None,
        release: bool = False,
    ) -> None:
        self.rt = rt
        self.owner = owner
        """Who holds the claims of a direct-mode sweep: by default the signal's delivery."""
        self.release = release
        """A gate job's release of one queue (its canaries passed): no plan line, no canaries,
        no parking pass."""
        self.settings = rt.settings
        self.budget_s = rt.settings.sweep_budget_s if budget_s is None else budget_s
        self.entry_point = entry_point
        self.concurrency = max(1, concurrency)
        """Queued mode: CreateTask calls in flight at once (one event loop, see jobqueue)."""
        self.page_size = page_size
        self.on_result = on_result
        self.on_progress = on_progress
        self._monotonic = monotonic
        self._evidence_cache: dict[tuple[str, str | None], FixEvidence] = {}
        self._evidence_lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------

    def run(self, plan: SweepPlan) -> SweepReport:
        settings = self.settings
        started = self._monotonic()
        self._deadline = started + self.budget_s
        self._seen_at = self.rt.clock()
        self._plan = plan
        self._rid = redrive_id(plan.signal)
        self._owner = owner_for(self.owner or f"msg:{plan.signal.message_id}", self._rid)
        self._progress = Progress()
        report = SweepReport(
            plan,
            mode="queued" if settings.queued else "direct",
            dry_run=settings.dry_run,
            api_version=settings.tasks_api,
            redrive_id=self._rid,
        )
        self._report = report
        self._jobs: JobQueue | None = None
        self._workers: ThreadPoolExecutor | None = None
        self._clean = True
        self._page_faults = 0
        self._methods: dict[str, Method] = {}
        self._gates: dict[str, _Canaries | None] = {}
        self._planned: dict[str, int | None] = {}
        try:
            if plan.purpose == "redrive" and not self.release:
                self._plan_line(plan)
            for queue in self._queues(plan):
                if not self._queue_allowed(queue):
                    continue
                try:
                    self._sweep_queue(queue)
                except BudgetSpent:
                    report.complete = False
                    break
            else:
                try:
                    if not self.release:
                        self._parking_pass()
                except BudgetSpent:
                    report.complete = False
        finally:
            if self._jobs is not None:
                self._jobs.close()
            if self._workers is not None:
                self._workers.shutdown(wait=True)
            report.duration_ms = (self._monotonic() - started) * 1000
            line = report.record()
            line["time"] = iso(self.rt.clock())
            self.rt.log.emit(line)
        return report

    def plan_only(self, plan: SweepPlan) -> dict[str, Any]:
        """The plan line alone (`redrive sweep --plan`): list and count, read the rates, log
        the plan; nothing is claimed, run, created or deleted. Returns the plan record."""
        settings = self.settings
        self._deadline = self._monotonic() + self.budget_s
        self._plan = plan
        self._rid = redrive_id(plan.signal)
        self._report = SweepReport(
            plan,
            mode="queued" if settings.queued else "direct",
            dry_run=settings.dry_run,
            api_version=settings.tasks_api,
            redrive_id=self._rid,
        )
        self._methods = {}
        self._planned = {}
        return self._plan_line(plan)

    # -- the plan ----------------------------------------------------------------------------

    def _plan_line(self, plan: SweepPlan) -> dict[str, Any]:
        """Count every allowed queue (one listing pass, BASIC view, a page in memory at a time),
        choose each queue's method on the whole count, read the rates that bound the re-drive,
        and log the plan line before anything is done."""
        started = self._monotonic()
        stop_at = started + self.budget_s * PLAN_SHARE
        allowed = [q for q in plan.queues if self.rt.policy.queue_refusal(q) is None]
        counts = [self._count(queue, stop_at) for queue in allowed]
        for queue, qp in zip(allowed, counts, strict=True):
            if qp.error is not None and not qp.tasks_seen:
                continue  # not listed at all: the sweep meets (and reports) the same fault
            self._choose_method(queue, qp.selected, complete=qp.counted)
            self._planned[str(queue)] = qp.selected if qp.counted else None
            qp.method = self._methods[str(queue)]
            qp.why = self._report.methods[str(queue)]["why"]
        self._paces(allowed, counts)
        record = plan_record(
            counts,
            queued=self.settings.queued,
            now=self.rt.clock(),
            base=self._report.base_fields(),
            duration_ms=(self._monotonic() - started) * 1000,
        )
        record["not_allowed"] = [str(q) for q in plan.queues if q not in allowed]
        settings = self.settings
        # What the ETA leaves out: each gated queue first waits for its canaries' answers.
        record["canaries"] = (
            {
                "tasks": settings.canaries,
                "failures_to_halt": settings.canary_failures,
                "timeout_s": settings.canary_timeout_s,
                "queues": [
                    str(q)
                    for q, qp in zip(allowed, counts, strict=True)
                    if not qp.counted or qp.selected > settings.canaries
                ],
            }
            if settings.canaries and not settings.dry_run
            else None
        )
        record["time"] = iso(self.rt.clock())
        self.rt.log.emit(record)
        return record

    def _count(self, queue: QueueName, stop_at: float) -> QueuePlan:
        """One queue's tasks, counted as the sweep will select them."""
        qp = QueuePlan(str(queue))
        plan = self._plan
        try:
            for page in self._pages(queue, check_budget=False):
                qp.pages += 1
                for task in page.tasks:
                    state = TaskState.from_task(task)
                    pick = select(state, plan.deployed_at, plan.statuses)
                    qp.tasks_seen += 1
                    if pick is Pick.SELECTED:
                        qp.selected += 1
                        qp.by_status[status_label(state)] += 1
                    else:
                        qp.skipped[pick.value] += 1
                if page.next_token and self._monotonic() >= stop_at:
                    qp.error = (
                        f"counted {qp.pages} page(s) within {PLAN_SHARE:.0%} of the sweep's "
                        "budget: the queue holds more"
                    )
                    return qp
        except errors.RedriveError as err:
            qp.error = f"listing tasks failed: {err}"[:300]
            return qp
        qp.counted = True
        return qp

    def _paces(self, queues: list[QueueName], counts: list[QueuePlan]) -> None:
        """Each queue's pace: the rates Cloud Tasks reports (GetQueue), asked only where they
        bound the re-drive (a re-create queue's own; the redrive queue's, for queued RunTask)."""
        settings = self.settings
        redrive: QueueRates | None = None
        if settings.queued and any(q.method is Method.RUN and q.selected for q in counts):
            assert settings.redrive_queue is not None
            redrive = self.rt.tasks.queue_rates(settings.redrive_queue)
        for queue, qp in zip(queues, counts, strict=True):
            if qp.method is None:
                continue
            own = self.rt.tasks.queue_rates(queue) if qp.method is Method.RECREATE else None
            qp.pace = pace_for(
                qp.method,
                queued=settings.queued,
                run_quota_per_min=settings.run_quota_per_min,
                direct_rate_per_s=settings.direct_rate_per_s,
                redrive_rate_per_s=redrive.rate_per_s if redrive else None,
                queue_rate_per_s=own.rate_per_s if own else None,
                recreate_delay_s=settings.recreate_delay_s,
                ahead=(redrive.tasks or 0) if redrive else 0,
            )

    # -- queues and pages ------------------------------------------------------------------

    def _queues(self, plan: SweepPlan) -> list[QueueName]:
        """The plan's queues, then every queue of its locations (ListQueues) but redrive's own."""
        queues = list(plan.queues)
        own = self.settings.own_queues
        for location in plan.locations:
            try:
                found = self.rt.tasks.list_queues(location)
            except errors.RedriveError as err:
                decision = self.rt.for_error(err)
                assert decision.outcome is not None
                self._location_line(location, decision.outcome, decision.reason)
                continue
            extra = [q for q in found if q not in own and q not in queues]
            listed = self._report.parking.get("location_queues", 0) + len(extra)
            self._report.parking["location_queues"] = listed
            queues.extend(extra)
        if plan.purpose == "patrol" and queues and plan.signal.message_id:
            # Each patrol starts at another queue (by its message id): when the budget cannot
            # cover every queue, the ones at the end of the list are not always the ones left.
            start = zlib.crc32(plan.signal.message_id.encode()) % len(queues)
            queues = queues[start:] + queues[:start]
        return queues

    def _location_line(self, location: str, outcome: Outcome, reason: str) -> None:
        self._report.queue_outcomes[location] = outcome.value
        if outcome is Outcome.FAILED:
            self._report.counts[Outcome.FAILED.value] += 1
        pipeline.record(
            self.rt,
            Result(outcome, f"listing the queues of {location} failed: {reason}"),
            failure=None,
            signal=self._plan.signal,
            entry_point=self.entry_point,
            extra={"sweep": True, "queue": location},
        )

    def _queue_allowed(self, queue: QueueName) -> bool:
        refusal = self.rt.policy.queue_refusal(queue)
        if refusal is None:
            return True
        self._queue_line(queue, Result(Outcome.SKIPPED_NOT_ALLOWED, refusal))
        return False

    def _queue_line(self, queue: QueueName, result: Result) -> None:
        self._report.queue_outcomes[str(queue)] = result.outcome.value
        if result.outcome is Outcome.FAILED:
            self._report.counts[Outcome.FAILED.value] += 1
        pipeline.record(
            self.rt,
            result,
            failure=None,
            signal=self._plan.signal,
            entry_point=self.entry_point,
            redrive_id=self._rid,
            extra={
                "sweep": True,
                "queue": str(queue),
                "message": f"{result.outcome.value} {queue}: {result.reason}"[:1000],
            },
        )

    def _pages(
        self, queue: QueueName, *, check_budget: bool = True, start: Checkpoint | None = None
    ) -> Iterator[Page]:
        """One ListTasks call per page, from the first page or from a checkpoint's token."""
        token = start.next_token if start else ""
        number = start.page if start else 0
        while True:
            if check_budget:
                self._check_budget(queue, number + 1, token, 0)
            deadline_s = min(self.settings.retry_deadline_s, self._remaining())
            try:
                tasks, next_token = self.rt.tasks.list_page(
                    queue, token, page_size=self.page_size, deadline_s=deadline_s
                )
            except errors.InvalidRequestError:
                if not (start and token == start.next_token):
                    raise
                # A page token lives two hours: past that, sweep from the first page again
                # (every job that exists is met as SKIPPED_DUPLICATE).
                self._report.resumed_from_page = None
                token, number, start = "", 0, None
                continue
            number += 1
            yield Page(number, token, tasks, next_token)
            if not next_token:
                return
            token = next_token

    def _sweep_queue(self, queue: QueueName) -> None:
        report = self._report
        progress = self._progress
        progress.queue = str(queue)
        if self._plan.purpose == "patrol":
            self._patrol_queue(queue)
            return
        try:
            pages = self._prefetched(queue) if self.settings.queued else self._pages(queue)
            method: Method | None = None
            for page in pages:
                number, token, tasks = page.number, page.token, page.tasks
                report.pages += 1
                progress.pages += 1
                chosen: list[tuple[int, TaskState]] = []
                for index, task in enumerate(tasks):
                    state = TaskState.from_task(task)
                    pick = select(state, self._plan.deployed_at, self._plan.statuses)
                    report.tasks_seen += 1
                    if pick is Pick.SELECTED:
                        chosen.append((index, state))
                    else:
                        report.skipped[pick.value] += 1
                del tasks  # one page of protos at a time; only the chosen states stay
                report.selected += len(chosen)
                progress.tasks_seen = report.tasks_seen
                progress.selected = report.selected
                self._notify()
                if method is None:
                    method = self._methods.get(str(queue)) or self._choose_method(
                        queue, len(chosen), complete=not page.next_token
                    )
                if method is Method.RECREATE:
                    self._recreate_page(queue, chosen)
                    continue
                self._handle_page(queue, number=number, token=token, chosen=chosen)
                self._checkpoint(queue, page)
        except _QueueStop:
            return
        except errors.RedriveError as err:
            decision = self.rt.for_error(err)
            assert decision.outcome is not None
            if isinstance(err, errors.NotFoundError):
                reason = f"queue not found: {err}"
            else:
                reason = f"listing tasks failed: {decision.reason}"
            self._queue_line(queue, Result(decision.outcome, reason, decision.http_status))

    # -- parking: the patrol, restores after a deploy, the parking queue's census ------------

    def _patrol_queue(self, queue: QueueName) -> None:
        """Park every task of the queue whose next attempt would be its last and whose fix is
        not live; count the others by the park rule's verdict."""
        report, settings = self._report, self.settings
        try:
            info = self.rt.tasks.queue_info(queue)
            for page in self._pages(queue):
                report.pages += 1
                self._progress.pages += 1
                now = self.rt.clock()
                chosen: list[TaskState] = []
                for task in page.tasks:
                    state = TaskState.from_task(task)
                    report.tasks_seen += 1
                    check = park_check(
                        state,
                        info.rule.merged(state),
                        now=now,
                        margin_s=settings.park_margin_s,
                        retention=info.retention,
                        expiry_margin_s=settings.park_before_expiry_s,
                    )
                    if check.verdict is Verdict.PARK:
                        chosen.append(state)
                    else:
                        report.skipped[check.verdict.value] += 1
                requests = []
                for state in chosen:
                    evidence = self._evidence(state)
                    if evidence.strategy != "none" and evidence.covers(state.failed_at):
                        # Its last attempt runs on the fixed code: that is the re-drive.
                        report.skipped[FIX_LIVE] += 1
                        continue
                    failure = self._failure(state)
                    requests.append((failure, self._request(failure, state, pipeline.Act.PARK)))
                report.selected += len(requests)
                self._progress.tasks_seen, self._progress.selected = (
                    report.tasks_seen,
                    report.selected,
                )
                self._notify()
                self._act_all(requests)
        except errors.RedriveError as err:
            decision = self.rt.for_error(err)
            assert decision.outcome is not None
            reason = (
                f"queue not found: {err}"
                if isinstance(err, errors.NotFoundError)
                else f"patrolling failed: {decision.reason}"
            )
            self._queue_line(queue, Result(decision.outcome, reason, decision.http_status))

    def _parking_pass(self) -> None:
        """After the plan's queues: a deploy restores the parked tasks it fixes; a patrol counts
        the parked tasks and checks that the parking queue is paused."""
        parking_queue = self.settings.parking_queue
        if parking_queue is None or self.rt.claims is None:
            return
        plan = self._plan
        try:
            if plan.purpose == "patrol":
                self._census(parking_queue)
            elif plan.restore is not None:
                self._restore_parked(parking_queue, plan.restore)
            elif plan.deployed_at is not None:
                origins = [q for q in plan.queues if self.rt.policy.queue_refusal(q) is None]
                if origins:
                    scope = RestoreScope(queues=frozenset(origins), fixed_by=plan.deployed_at)
                    self._restore_parked(parking_queue, scope)
        except errors.RedriveError as err:
            decision = self.rt.for_error(err)
            assert decision.outcome is not None
            reason = f"the parking queue could not be read: {decision.reason}"
            self._queue_line(parking_queue, Result(decision.outcome, reason, decision.http_status))

    def _restore_parked(self, parking_queue: QueueName, scope: RestoreScope) -> None:
        """Restore the parked tasks the scope takes (a deploy's: those of the swept queues
        whose failure came before it)."""
        stats = self._report.parking
        stats.update({"queue": str(parking_queue), "seen": 0, "restore_selected": 0})
        evidence = (
            FixEvidence(
                DEPLOY_STRATEGY,
                live_since=scope.fixed_by,
                service=",".join(self._plan.services) or None,
                note=f"{self._plan.signal.source} deploy notification",
            )
            if scope.fixed_by is not None
            else None
        )
        for page in self._pages(parking_queue):
            requests = []
            for task in page.tasks:
                state = TaskState.from_task(task)
                parked = Parked.from_url(state.target_url)
                stats["seen"] += 1
                if parked is None or not scope.takes(parked, state.name):
                    continue
                failure = Failure(
                    parked.origin,
                    self._seen_at,
                    self._plan.signal,
                    parked.dispatch_count,
                    parked.status,
                )
                request = pipeline.Request(
                    failure,
                    pipeline.Act.RESTORE,
                    evidence=evidence,
                    parked=state.name,
                    owner=self._owner,
                    again=scope.again,
                )
                requests.append((failure, request))
            stats["restore_selected"] += len(requests)
            by_origin: dict[QueueName, list[tuple[Failure, pipeline.Request]]] = {}
            for item in requests:
                by_origin.setdefault(item[0].task.queue_name, []).append(item)
            for origin, items in by_origin.items():
                looked = self._origins_listed(origin, items)
                left = self._act_gated(f"restore:{origin}", origin, looked)
                if left:
                    stats["restore_halted"] = stats.get("restore_halted", 0) + left

    def _origins_listed(
        self, origin: QueueName, items: list[tuple[Failure, pipeline.Request]]
    ) -> list[tuple[Failure, pipeline.Request]]:
        """Mark the restores whose original is gone for good, from one listing of the origin
        queue instead of a GetTask per restore (an original still there means its park has not
        finished). Listed only while each page saves GETS_PER_LISTED_PAGE GetTask calls: a busy
        origin queue, a failed listing or a spent budget leave the restores to look themselves.

        Sound for absence: the origin queue is listed after the parked copies were, so after
        each park had read its original (it makes its copy only then, and deletes the original
        last); an original missing from the listing was deleted since and is gone for good (a
        later task of that name is somebody's new task, which the restore's own look tells
        apart). A name still listed gets that look."""
        allowed = len(items) // GETS_PER_LISTED_PAGE
        if not allowed:
            return items
        wanted = {str(failure.task) for failure, _ in items}
        present: set[str] = set()
        token = ""
        for _ in range(allowed):
            deadline_s = min(self.settings.retry_deadline_s, self._remaining())
            if deadline_s <= 0:
                break
            try:
                tasks, token = self.rt.tasks.list_page(
                    origin, token, page_size=self.page_size, deadline_s=deadline_s
                )
            except errors.RedriveError:
                break
            present.update(name for task in tasks if (name := str(task.name)) in wanted)
            del tasks
            if not token:
                return [
                    (failure, replace(request, origin_gone=str(failure.task) not in present))
                    for failure, request in items
                ]
        return items

    def _census(self, parking_queue: QueueName) -> None:
        """Count the parked tasks, those near the parking queue's retention limit, and check
        that the queue is paused (a running one would dispatch its copies once due)."""
        info = self.rt.tasks.queue_info(parking_queue, fresh=True)
        stats = self._report.parking
        stats.update({"queue": str(parking_queue), "state": info.state, "parked": 0})
        now = self.rt.clock()
        expiring = 0
        soonest: datetime | None = None
        for page in self._pages(parking_queue):
            for task in page.tasks:
                state = TaskState.from_task(task)
                parked = Parked.from_url(state.target_url)
                if parked is None:
                    continue
                stats["parked"] += 1
                expires = parked.expires_at(state.create_time, info.retention)
                if (expires - now).total_seconds() < self.settings.parked_warn_s:
                    expiring += 1
                soonest = expires if soonest is None else min(soonest, expires)
        stats["expiring"] = expiring
        stats["soonest_expiry"] = iso(soonest)

    def _act_all(self, requests: list[tuple[Failure, pipeline.Request]]) -> None:
        """Run requests RECREATE_WORKERS at a time (parks, restores and re-creates spend no
        RunTask quota) and log each one's outcome in order."""
        if not requests:
            return
        if self._workers is None:
            self._workers = ThreadPoolExecutor(RECREATE_WORKERS, thread_name_prefix="recreate")
        results = self._workers.map(lambda item: pipeline.process(item[1], self.rt), requests)
        for (failure, _), result in zip(requests, results, strict=True):
            self._done(failure, result)

    def _prefetched(self, queue: QueueName) -> Iterator[Page]:
        """Queued mode: `_pages` from the last checkpoint of this sweep, listing the next page
        while this page's jobs are created (the ListTasks round trip then costs no time). The
        budget is checked here, before each page is handed out, so the listing thread never
        records a stop; a page listed after the budget ran out is dropped unread."""
        start = self._resume_point(queue)
        self._clean = True
        pages = self._pages(queue, check_budget=False, start=start)
        lister = ThreadPoolExecutor(1, thread_name_prefix="redrive-list")
        try:
            first = start.page + 1 if start else 1
            self._check_budget(queue, first, start.next_token if start else "", 0)
            ahead = lister.submit(next, pages, None)
            while (page := ahead.result()) is not None:
                self._check_budget(queue, page.number, page.token, 0)
                ahead = lister.submit(next, pages, None)
                yield page
        finally:
            lister.shutdown(wait=False, cancel_futures=True)

    def _resume_point(self, queue: QueueName) -> Checkpoint | None:
        claims = self.rt.claims
        if claims is None or self.settings.dry_run or not self._plan.signal.message_id:
            return None
        try:
            start = claims.resume_point(self._sweep_id(), queue)
        except errors.RedriveError:
            return None  # best effort: from the first page, every existing job is a duplicate
        if start is not None:
            self._report.resumed_from_page = start.page + 1
        return start

    def _checkpoint(self, queue: QueueName, page: Page) -> None:
        """Queued mode: once every selected task of a page holds its job (created now or before),
        and every page before it did too, record where the next page starts."""
        claims = self.rt.claims
        if not self.settings.queued or claims is None or self.settings.dry_run:
            return
        if not self._plan.signal.message_id or not self._clean:
            return
        if self._page_faults:
            self._clean = False  # a gap: later pages must not be taken for done either
            return
        if page.next_token:
            claims.checkpoint(
                Checkpoint(self._sweep_id(), queue, page.number, page.next_token, self.rt.clock())
            )

    def _sweep_id(self) -> str:
        return f"{self._plan.signal.kind}:{self._plan.signal.message_id}"

    def _choose_method(self, queue: QueueName, selected: int, *, complete: bool) -> Method:
        """The method for this queue's selected tasks, decided once: by the plan on the whole
        count (`complete`), else on the queue's first page when the plan could not list it."""
        choice = choose_method(
            Method(self.settings.method_for(queue, bulk=True)),
            selected=selected,
            complete=complete,
            run_quota_per_min=self.settings.run_quota_per_min,
            run_within_s=self.settings.auto_run_within_s,
        )
        if choice.method is Method.RECREATE and self.rt.claims is None:
            # Settings refuse an explicit `recreate` without claims; `auto` falls back.
            choice = MethodChoice(Method.RUN, f"{choice.why}, but re-create needs claims")
        self._report.methods[str(queue)] = {"method": choice.method.value, "why": choice.why}
        self._methods[str(queue)] = choice.method
        return choice.method

    def _recreate_page(self, queue: QueueName, chosen: list[tuple[int, TaskState]]) -> None:
        """Re-create a page's tasks, RECREATE_WORKERS at a time: re-creates spend no RunTask
        quota (the target queue's own rate throttles the copies), so nothing waits for a slot.
        A page is all or nothing, as in queued mode (the budget is checked before each page)."""
        failures = [self._failure(state) for _, state in chosen]
        requests = [
            (f, self._request(f, s, pipeline.Act.RECREATE))
            for f, (_, s) in zip(failures, chosen, strict=True)
        ]
        if self._act_gated(str(queue), queue, requests):
            raise _QueueStop

    def _handle_page(
        self,
        queue: QueueName,
        *,
        number: int,
        token: str,
        chosen: list[tuple[int, TaskState]],
    ) -> None:
        if not self.settings.queued:
            gate = self._canaries(str(queue), queue)
            if gate is not None and gate.verdict is CanaryVerdict.HALT:
                raise _QueueStop
            for index, state in chosen:
                self._check_budget(queue, number, token, index)
                failure = self._failure(state)
                result = pipeline.process(
                    self._request(failure, state, pipeline.Act.RUN, throttle=True), self.rt
                )
                if result.extra.get(pipeline.NO_RUN_SLOT):
                    # No RunTask slot before the budget ends: stop here; the redelivery goes on.
                    self._stop(queue, number, token, index)
                self._done(failure, result)
                if gate is not None and self._collected(gate, failure, result):
                    self._await_canaries(gate)
                    if gate.verdict is CanaryVerdict.HALT:
                        raise _QueueStop
            return
        # Queued mode: a page is all or nothing (the budget was checked before listing it). On a
        # redelivery every selected task's job is created again: its name is taken when it was
        # created before (SKIPPED_DUPLICATE), whoever created it. Nothing infers "this page was
        # swept" from one job: a per-task signal or a failed CreateTask would make that guess
        # wrong and leave tasks without a job while the SWEEP line says complete.
        self._page_faults = 0
        if not chosen:
            return
        states = [state for _, state in chosen]
        failures = [self._failure(state) for state in states]
        gate = self._canaries(str(queue), queue) if self._rid is not None else None
        if gate is not None and gate.verdict is CanaryVerdict.HALT:
            raise _QueueStop
        if gate is not None and gate.collecting:
            # Canary jobs one at a time until enough are queued; then the gate job takes the rest.
            while states and gate.collecting:
                failure, state = failures.pop(0), states.pop(0)
                result = self._enqueue_all([failure], [state])[0]
                self._page_faults += result.outcome.redeliver
                self._done(failure, result)
                self._collected(gate, failure, result)
            if not gate.collecting:
                self._create_gate(gate)
                raise _QueueStop
            return
        for failure, result in zip(failures, self._enqueue_all(failures, states), strict=True):
            self._page_faults += result.outcome.redeliver
            self._done(failure, result)

    def _enqueue_all(self, failures: list[Failure], states: list[TaskState]) -> list[Result]:
        """Queued mode: prepare each task's job, create the allowed ones concurrently, finish."""
        planned = [
            pipeline.prepare(self._request(f, s, pipeline.Act.ENQUEUE), self.rt)
            for f, s in zip(failures, states, strict=True)
        ]
        pending = [p for p in planned if isinstance(p, pipeline.Pending)]
        answers: Iterator[bool | errors.RedriveError] = iter(())
        if pending:
            assert self.settings.redrive_queue is not None
            if self._jobs is None:
                self._jobs = JobQueue(self.settings, concurrency=self.concurrency)
            jobs = [p.job for p in pending if p.job is not None]
            answers = iter(self._jobs.create_all(self.settings.redrive_queue, jobs))
        return [
            item if isinstance(item, Result) else pipeline.finish(item, next(answers), self.rt)
            for item in planned
        ]

    # -- canaries ----------------------------------------------------------------------------

    def _canaries(self, key: str, queue: QueueName) -> _Canaries | None:
        """The canaries of a queue's bulk re-drive (`key`: the queue, or `restore:<queue>`);
        None when it takes none: canaries off, a dry run, a gate's release, or a queue whose
        counted selection fits within the canaries themselves (nothing would be left to
        protect)."""
        if key not in self._gates:
            wanted = self.settings.canaries
            planned = self._planned.get(key)
            off = not wanted or self.settings.dry_run or self.release
            gate = (
                None
                if off or (planned is not None and planned <= wanted)
                else _Canaries(key, queue, wanted)
            )
            known = self._known_verdict(key) if gate is not None else None
            if known is not None:
                verdict, reason = known
                if verdict == CanaryVerdict.RELEASE.value:
                    gate = None  # released by an earlier delivery: no new canaries
                elif verdict == CanaryVerdict.HALT.value and gate is not None:
                    gate.verdict = CanaryVerdict.HALT
                    said = f"halted by an earlier delivery: {reason}"
                    self._report.canaries[key] = {"verdict": verdict, "reason": said}
                    self._halt_line(queue, key, None, planned, reason=said)
            self._gates[key] = gate
        return self._gates[key]

    def _known_verdict(self, key: str) -> tuple[str, str] | None:
        claims = self.rt.claims
        if claims is None or self._rid is None:
            return None
        return claims.canary_verdict_of(self._rid, key)

    def _keep_verdict(self, key: str, judged: Judgement) -> None:
        claims = self.rt.claims
        if claims is not None and self._rid is not None:
            claims.canary_verdict(self._rid, key, judged.verdict.value, judged.reason)

    def _collected(self, gate: _Canaries, failure: Failure, result: Result) -> bool:
        """Count an acted task; True when it completes the canaries (time to judge them)."""
        gate.acted += 1
        if not gate.collecting:
            return False
        canary = self._canary_of(failure, result)
        if canary is None:
            return False
        gate.found.append(canary)
        return not gate.collecting

    def _canary_of(self, failure: Failure, result: Result) -> Canary | None:
        """What to watch for a task this re-drive re-ran (None: it did not re-run it)."""
        outcome = result.outcome
        if outcome is Outcome.DISPATCHED or (
            self.settings.queued and outcome in (Outcome.QUEUED, Outcome.SKIPPED_DUPLICATE)
        ):
            # The forced attempt is the next dispatch after the failed one.
            return Canary(failure.task, (failure.dispatch_count or 0) + 1)
        if outcome is Outcome.RECREATED and result.run is not None and result.run.copy:
            return Canary(result.run.copy, 1, failure.task)
        restored = (result.parked or {}).get("restored_as")
        if outcome is Outcome.RESTORED and isinstance(restored, str):
            try:
                return Canary(TaskName.parse(restored), 1, failure.task)
            except InvalidName:
                return None
        return None

    def _act_gated(
        self, key: str, queue: QueueName, requests: list[tuple[Failure, pipeline.Request]]
    ) -> int:
        """Act on requests (re-creates, restores) behind the queue's canaries: the first ones
        one by one until the canaries are complete, then judge them, then the rest at full
        speed. Returns how many were left alone because the canaries halted the queue."""
        gate = self._canaries(key, queue)
        start = 0
        if gate is not None and gate.verdict is None:
            while start < len(requests) and gate.collecting:
                failure, request = requests[start]
                start += 1
                result = pipeline.process(request, self.rt)
                self._done(failure, result)
                if self._collected(gate, failure, result):
                    self._await_canaries(gate)
        if gate is not None and gate.verdict is CanaryVerdict.HALT:
            return len(requests) - start
        if gate is not None and gate.collecting:
            return 0
        rest = requests[start:]
        self._act_all(rest)
        if gate is not None:
            gate.acted += len(rest)
        return 0

    def _await_canaries(self, gate: _Canaries) -> None:
        """Wait for the canaries' forced attempts to be answered (at most REDRIVE_CANARY_TIMEOUT_S,
        and never past the sweep's budget: a sweep delivered again must not pick new canaries
        on and on), then judge them; a halt logs one HALTED line for the queue."""
        settings = self.settings
        waited_for = min(settings.canary_timeout_s, self._remaining())
        started = self._monotonic()
        until = started + waited_for
        while True:
            fates = [canary_fate(self.rt, canary) for canary in gate.found]
            judged = judge(
                fates,
                failures_to_halt=settings.canary_failures,
                timed_out=self._monotonic() >= until,
                timeout_s=round(waited_for, 1),
            )
            if judged.verdict is not CanaryVerdict.WAIT:
                break
            time.sleep(max(0.05, min(CANARY_POLL_S, until - self._monotonic())))
        gate.verdict = judged.verdict
        self._keep_verdict(gate.key, judged)
        self._canary_report(gate, judged, waited_s=self._monotonic() - started)
        if judged.verdict is CanaryVerdict.HALT:
            self._halt_line(gate.queue, gate.key, judged, self._left(gate))

    def _left(self, gate: _Canaries) -> int | None:
        planned = self._planned.get(gate.key)
        return None if planned is None else max(0, planned - gate.acted)

    def _canary_report(self, gate: _Canaries, judged: Judgement, **more: Any) -> None:
        self._report.canaries[gate.key] = {
            **judged.fields(),
            "reason": judged.reason,
            "canaries": [c.fields() for c in gate.found],
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in more.items()},
        }

    def _halt_line(
        self,
        queue: QueueName,
        key: str,
        judged: Judgement | None,
        left: int | None,
        *,
        reason: str | None = None,
    ) -> None:
        self._report.queue_outcomes[key] = Outcome.HALTED.value
        record_halted(
            self.rt,
            queue,
            judged,
            reason=reason,
            left=left,
            signal=self._plan.signal,
            entry_point=self.entry_point,
            redrive=self._rid,
            restore=key.startswith("restore:"),
        )

    def _create_gate(self, gate: _Canaries) -> None:
        """Queued mode: the gate job that judges the queue's canary jobs once they ran, and
        then releases the rest of the queue (run_job sweeps it) or halts it. Named after the
        re-drive and the queue: a redelivered sweep meets its own gate."""
        settings, plan = self.settings, self._plan
        assert self._rid is not None
        assert settings.redrive_queue is not None and settings.job_url is not None
        now = self.rt.clock()
        body = Gate(
            redrive=self._rid,
            queue=gate.queue,
            canaries=tuple(gate.found),
            until=now + timedelta(seconds=GATE_FIRST_CHECK_S + settings.canary_timeout_s),
            timeout_s=settings.canary_timeout_s,
            failures_to_halt=settings.canary_failures,
            signal=plan.signal,
            deployed_at=plan.deployed_at,
            statuses=plan.statuses,
            services=plan.services,
            basis=plan.basis,
            selected=self._planned.get(gate.key),
        )
        name = f"{settings.redrive_queue}/tasks/{gate_id(self._rid, gate.queue)}"
        job = JobTask(
            name=name,
            url=settings.job_url,
            body=body.to_json(),
            service_account=settings.job_service_account,
            dispatch_deadline_s=settings.job_deadline_s,
            schedule_time=now + timedelta(seconds=GATE_FIRST_CHECK_S),
        )
        try:
            created = self.rt.tasks.create(settings.redrive_queue, job)
        except errors.RedriveError as err:
            # No gate, no release: FAILED, so the signal comes again; its canary jobs are then
            # met as existing and the gate is made by that delivery.
            decision = self.rt.for_error(err)
            assert decision.outcome is not None
            self._queue_line(
                gate.queue,
                Result(
                    decision.outcome,
                    f"the gate job of its canaries could not be created: {decision.reason}",
                    decision.http_status,
                ),
            )
            return
        self._report.queue_outcomes[gate.key] = Outcome.GATED.value
        self._report.canaries[gate.key] = {
            "verdict": "gated",
            "gate": name,
            "created": created,
            "canaries": [c.fields() for c in gate.found],
        }
        made = "created" if created else "already there (an earlier delivery made it)"
        pipeline.record(
            self.rt,
            Result(
                Outcome.GATED,
                f"{len(gate.found)} canary job(s) queued; the gate job {name.rsplit('/', 1)[-1]} "
                f"({made}) checks them and releases or halts the rest",
            ),
            failure=None,
            signal=plan.signal,
            entry_point=self.entry_point,
            redrive_id=self._rid,
            extra={"sweep": True, "queue": str(gate.queue), "gate": name},
        )

    def _check_budget(self, queue: QueueName, page: int, token: str, index: int) -> None:
        if self._monotonic() >= self._deadline:
            self._stop(queue, page, token, index)

    def _stop(self, queue: QueueName, page: int, token: str, index: int) -> None:
        """Record where the sweep stopped and leave it (caught in `run`)."""
        report = self._report
        report.complete = False
        report.stopped_at = {
            "queue": str(queue),
            "page": page,
            "page_token": token,
            "index_in_page": index,
            "budget_s": self.budget_s,
        }
        raise BudgetSpent

    def _remaining(self) -> float:
        return max(0.0, self._deadline - self._monotonic())

    # -- one task --------------------------------------------------------------------------

    def _failure(self, state: TaskState) -> Failure:
        # seen_at is when this sweep saw the failure; the failed attempt's dispatch count makes
        # the "already retried" guard exact (here, in run_job, and on every redelivery).
        return Failure(
            state.name,
            self._seen_at,
            self._plan.signal,
            state.dispatch_count,
            state.last_status,
        )

    def _request(
        self, failure: Failure, state: TaskState, act: pipeline.Act, *, throttle: bool = False
    ) -> pipeline.Request:
        return pipeline.Request(
            failure,
            act,
            evidence=self._evidence,
            listed=state,
            throttle=throttle,
            throttle_timeout_s=self._remaining(),
            owner=self._owner,
            redrive_id=self._rid,
        )

    def _evidence(self, state: TaskState) -> FixEvidence:
        deployed_at = self._plan.deployed_at
        if deployed_at is not None:
            return FixEvidence(
                DEPLOY_STRATEGY,
                live_since=deployed_at,
                service=",".join(self._plan.services) or None,
                note=f"{self._plan.signal.source} deploy notification",
            )
        # Queue alert: the configured fix check, asked once per (queue, target host) per sweep:
        # the revision check's answer depends on nothing else.
        key = (str(state.name.queue_name), urlsplit(state.target_url or "").hostname)
        # Re-creates decide in worker threads: one question per key, whoever asks first.
        with self._evidence_lock:
            cached = self._evidence_cache.get(key)
            if cached is None:
                cached = self._evidence_cache[key] = self.rt.fix_check.evidence(state.name, state)
            return cached

    def _done(self, failure: Failure, result: Result) -> None:
        report = self._report
        report.counts[result.outcome.value] += 1
        self._progress.handled += 1
        self._progress.counts[result.outcome.value] += 1
        pipeline.record(
            self.rt,
            result,
            failure=failure,
            signal=self._plan.signal,
            entry_point=self.entry_point,
            redrive_id=self._rid,
            extra={"sweep": True},
        )
        if self.on_result is not None:
            self.on_result(failure, result)
        self._notify()

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._progress)


def canary_fate(rt: Runtime, canary: Canary) -> tuple[Fate, str | None]:
    """A canary's fate now, for a sweep waiting on its canaries and for a gate job."""
    try:
        return fate_of(canary, rt.tasks.get(canary.watch))
    except errors.RedriveError:
        return Fate.WAITING, None  # unreadable for now: judged again, or at the timeout


def record_halted(
    rt: Runtime,
    queue: QueueName,
    judged: Judgement | None,
    *,
    reason: str | None = None,
    left: int | None,
    signal: SignalRef,
    entry_point: str,
    redrive: str | None,
    restore: bool = False,
) -> None:
    """The one HALTED line of a queue whose canaries failed again (or never answered)."""
    rest = (
        "its parked tasks stay parked"
        if restore
        else "its other tasks keep Cloud Tasks' own retries"
    )
    count = "" if left is None else f" ({left} task(s) left alone)"
    reason = f"{reason or (judged.reason if judged else 'halted')}; {rest}{count}"
    what = "restore of" if restore else "re-drive of"
    pipeline.record(
        rt,
        Result(Outcome.HALTED, reason),
        failure=None,
        signal=signal,
        entry_point=entry_point,
        redrive_id=redrive,
        extra={
            "sweep": True,
            "queue": str(queue),
            "message": f"HALTED {what} {queue}: {reason}"[:1000],
            "canaries": judged.fields() if judged else None,
            "left": left,
        },
    )


# ---------------------------------------------------------------------------------------------
# handle_signal's entry


def sweep_signal(
    signal: Deploy | QueueAlert | Patrol, ref: SignalRef, rt: Runtime
) -> list[Outcome]:
    """Sweep for a Deploy, QueueAlert or Patrol signal; every line is logged here.

    Returns what handle_signal counts for the message: SWEEP, plus FAILED when the sweep must be
    delivered again (budget spent or a transient fault), which makes handle_signal raise.
    """
    verdict: tuple[Outcome, str] | None = None
    if isinstance(signal, Patrol):
        plan = patrol_plan(signal, ref, rt.settings)
        if not rt.settings.parking:
            verdict = (
                Outcome.IGNORED,
                "REDRIVE_PARKING_QUEUE is unset: a patrol parks tasks, and nothing is parked",
            )
        elif not plan.queues and not plan.locations:
            verdict = (Outcome.IGNORED, plan.note)
    else:
        plan = plan_for(signal, ref, rt.settings)
    future = plan.deployed_at is not None and rt.settings.is_future(plan.deployed_at, rt.clock())
    if verdict is None and future:
        # A fix cannot be live before it is deployed; selecting "failed before T" with T ahead
        # would force-run the same still-failing tasks on every delivery.
        verdict = (
            Outcome.INVALID_SIGNAL,
            f"the deploy time {iso(plan.deployed_at)} is in the future (more than "
            f"REDRIVE_CLOCK_SKEW_S={rt.settings.clock_skew_s:g}s ahead)",
        )
    elif verdict is None and not plan.queues and not plan.locations:
        verdict = (Outcome.IGNORED, plan.note)
    if verdict is not None:
        rt.log.emit(
            build_record(
                outcome=verdict[0],
                reason=verdict[1],
                signal=ref,
                dry_run=rt.settings.dry_run,
                api_version=rt.settings.tasks_api,
                mode="queued" if rt.settings.queued else "direct",
            )
        )
        return [verdict[0]]
    report = Sweeper(rt).run(plan)
    redeliver = report.redeliver
    if plan.purpose == "patrol" and not report.complete:
        # A patrol cut by its budget is not delivered again (the same message would start at the
        # same queue): the next scheduled patrol starts at another. Faults are, as ever.
        redeliver = any(count and Outcome(o).redeliver for o, count in report.counts.items())
    return [Outcome.SWEEP, Outcome.FAILED] if redeliver else [Outcome.SWEEP]


# ---------------------------------------------------------------------------------------------
# inspect (CLI): the failing tasks of a queue, newest first, in bounded memory


def failing_tasks(
    tasks: CloudTasks, queue: QueueName, limit: int, retry_deadline_s: float = 30.0
) -> tuple[list[TaskState], int, int]:
    """(the `limit` most recently failed tasks, newest first; tasks seen; failing tasks)."""
    heap: list[tuple[float, str, TaskState]] = []
    seen = failing = 0
    token = ""
    while True:
        page, token = tasks.list_page(
            queue, token, page_size=PAGE_SIZE, deadline_s=retry_deadline_s
        )
        for task in page:
            seen += 1
            state = TaskState.from_task(task)
            if not state.last_failed:
                continue
            failing += 1
            when = state.failed_at or datetime.min.replace(tzinfo=UTC)
            item = (when.timestamp(), str(state.name), state)
            if len(heap) < limit:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
        if not token:
            break
    newest = sorted(heap, key=lambda item: item[:2], reverse=True)
    return [state for _, _, state in newest], seen, failing


# ---------------------------------------------------------------------------------------------
# parked (CLI): the parking queue's copies, page by page


def parked_copies(
    tasks: CloudTasks, parking_queue: QueueName, retry_deadline_s: float = 30.0
) -> Iterator[tuple[TaskState, Parked]]:
    """Every parked copy of the parking queue with what its URL records, one page in memory at a
    time (tasks that are not parked copies are passed over)."""
    token = ""
    while True:
        page, token = tasks.list_page(
            parking_queue, token, page_size=PAGE_SIZE, deadline_s=retry_deadline_s
        )
        for task in page:
            state = TaskState.from_task(task)
            parked = Parked.from_url(state.target_url)
            if parked is not None:
                yield state, parked
        del page
        if not token:
            return
