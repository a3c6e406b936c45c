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
(succeeded), dispatched after the deploy (not selected again) or hold a job name that Cloud Tasks
refuses a second time, so nothing runs twice.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from redrive import pipeline
from redrive.adapters.cloudtasks import CloudTasks
from redrive.adapters.jobqueue import CONCURRENCY, JobQueue
from redrive.core import errors
from redrive.core.decide import Failure, FixEvidence, SignalRef, for_error
from redrive.core.jobs import job_name
from redrive.core.names import QueueName, TaskName
from redrive.core.outcomes import Outcome
from redrive.core.records import COMPONENT, Result, build_record, iso, signal_fields
from redrive.core.selection import Pick, SweepPlan, plan_for, select
from redrive.core.signals import Deploy, QueueAlert
from redrive.core.state import TaskState
from redrive.runtime import Runtime

PAGE_SIZE = 1000
"""ListTasks' maximum page size: fewest round trips, one page (≈1 MB of BASIC tasks) in memory."""
SWEEP_EVENT = "redrive.sweep"
DEPLOY_STRATEGY = "deploy-signal"


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
    counts: Counter[str] = field(default_factory=Counter)
    """Outcome → number of tasks (only selected tasks get a decision)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Pick → number of listed tasks not selected."""
    queue_outcomes: dict[str, str] = field(default_factory=dict)
    """Queue → outcome for queues not listed (not allowed, not found, permission denied)."""
    pages: int = 0
    tasks_seen: int = 0
    selected: int = 0
    already_swept: int = 0
    """Selected tasks on pages a previous delivery of the same signal had finished (queued)."""
    complete: bool = True
    stopped_at: dict[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def redeliver(self) -> bool:
        """True when the signal should be delivered again (cut short, or a transient fault)."""
        return not self.complete or self.counts[Outcome.FAILED.value] > 0

    def record(self) -> dict[str, Any]:
        plan = self.plan
        done = "complete" if self.complete else "INCOMPLETE (budget spent; will be delivered again)"
        counts = (
            ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing re-driven"
        )
        message = (
            f"SWEEP {len(plan.queues)} queue(s), {self.tasks_seen} task(s) seen in {self.pages} "
            f"page(s), {self.selected} selected: {counts}; {done}"
        )
        if self.already_swept:
            message += f"; {self.already_swept} on pages swept by an earlier delivery"
        if self.stopped_at:
            message += f"; stopped in {self.stopped_at['queue']} at page {self.stopped_at['page']}"
        return {
            "event": SWEEP_EVENT,
            "severity": "INFO" if self.complete else "WARNING",
            "message": message[:1000],
            "outcome": Outcome.SWEEP.value,
            "queues": [str(q) for q in plan.queues],
            "basis": plan.basis,
            "services": list(plan.services),
            "unmapped_services": list(plan.unmapped),
            "deployed_at": iso(plan.deployed_at),
            "signal": signal_fields(plan.signal),
            "counts": dict(self.counts),
            "skipped": dict(self.skipped),
            "queue_outcomes": dict(self.queue_outcomes),
            "pages": self.pages,
            "tasks_seen": self.tasks_seen,
            "selected": self.selected,
            "already_swept": self.already_swept,
            "complete": self.complete,
            "stopped_at": self.stopped_at,
            "duration_ms": round(self.duration_ms, 1),
            "dry_run": self.dry_run,
            "mode": self.mode,
            "api_version": self.api_version,
            "labels": {"outcome": Outcome.SWEEP.value, "component": COMPONENT},
        }


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
    ) -> None:
        self.rt = rt
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

    # -- public ----------------------------------------------------------------------------

    def run(self, plan: SweepPlan) -> SweepReport:
        settings = self.settings
        started = self._monotonic()
        self._deadline = started + self.budget_s
        self._seen_at = self.rt.clock()
        self._plan = plan
        self._progress = Progress()
        report = SweepReport(
            plan,
            mode="queued" if settings.queued else "direct",
            dry_run=settings.dry_run,
            api_version=settings.tasks_api,
        )
        self._report = report
        self._jobs: JobQueue | None = None
        try:
            for queue in plan.queues:
                if not self._queue_allowed(queue):
                    continue
                try:
                    self._sweep_queue(queue)
                except BudgetSpent:
                    report.complete = False
                    break
        finally:
            if self._jobs is not None:
                self._jobs.close()
            report.duration_ms = (self._monotonic() - started) * 1000
            self.rt.log.emit(report.record())
        return report

    # -- queues and pages ------------------------------------------------------------------

    def _queue_allowed(self, queue: QueueName) -> bool:
        if self.rt.policy.allowlist.allows(queue):
            return True
        why = (
            "REDRIVE_ALLOWED_QUEUES is empty"
            if self.rt.policy.allowlist.empty
            else f"queue {queue} is not in REDRIVE_ALLOWED_QUEUES"
        )
        self._queue_line(queue, Result(Outcome.SKIPPED_NOT_ALLOWED, why))
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
            extra={
                "sweep": True,
                "queue": str(queue),
                "message": f"{result.outcome.value} {queue}: {result.reason}"[:1000],
            },
        )

    def _pages(
        self, queue: QueueName, *, check_budget: bool = True
    ) -> Iterator[tuple[int, str, list[Any]]]:
        """(page number, the token that fetched it, its tasks): one ListTasks call per page."""
        token = ""
        number = 0
        while True:
            if check_budget:
                self._check_budget(queue, number + 1, token, 0)
            deadline_s = min(self.settings.retry_deadline_s, self._remaining())
            tasks, next_token = self.rt.tasks.list_page(
                queue, token, page_size=self.page_size, deadline_s=deadline_s
            )
            number += 1
            yield number, token, tasks
            if not next_token:
                return
            token = next_token

    def _sweep_queue(self, queue: QueueName) -> None:
        report = self._report
        progress = self._progress
        progress.queue = str(queue)
        try:
            pages = self._prefetched(queue) if self.settings.queued else self._pages(queue)
            for number, token, tasks in pages:
                report.pages += 1
                progress.pages += 1
                chosen: list[tuple[int, TaskState]] = []
                for index, task in enumerate(tasks):
                    state = TaskState.from_task(task)
                    pick = select(state, self._plan.deployed_at)
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
                self._handle_page(queue, number=number, token=token, chosen=chosen)
        except errors.RedriveError as err:
            decision = for_error(err)
            assert decision.outcome is not None
            if isinstance(err, errors.NotFoundError):
                reason = f"queue not found: {err}"
            else:
                reason = f"listing tasks failed: {decision.reason}"
            self._queue_line(queue, Result(decision.outcome, reason, decision.http_status))

    def _prefetched(self, queue: QueueName) -> Iterator[tuple[int, str, list[Any]]]:
        """Queued mode: `_pages`, listing the next page while this page's jobs are created (the
        ListTasks round trip then costs no time). The budget is checked here, before each page is
        handed out, so the listing thread never records a stop; a page listed after the budget
        ran out is dropped unread."""
        pages = self._pages(queue, check_budget=False)
        lister = ThreadPoolExecutor(1, thread_name_prefix="redrive-list")
        try:
            self._check_budget(queue, 1, "", 0)
            ahead = lister.submit(next, pages, None)
            while (page := ahead.result()) is not None:
                number, token, _ = page
                self._check_budget(queue, number, token, 0)
                ahead = lister.submit(next, pages, None)
                yield page
        finally:
            lister.shutdown(wait=False, cancel_futures=True)

    def _handle_page(
        self,
        queue: QueueName,
        *,
        number: int,
        token: str,
        chosen: list[tuple[int, TaskState]],
    ) -> None:
        if not self.settings.queued:
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
            return
        # Queued mode: a page is all or nothing (the budget was checked before listing it), and
        # its last selected task gets its job only after all the others. So on a redelivery, a
        # waiting job for a page's last task means the whole page was swept: one GetTask skips it
        # instead of one CreateTask per task, and a long sweep makes progress on every delivery.
        if not chosen:
            return
        if self._page_already_swept(chosen[-1][1]):
            self._report.already_swept += len(chosen)
            return
        states = [state for _, state in chosen]
        failures = [self._failure(state) for state in states]
        head = self._enqueue_all(failures[:-1], states[:-1])
        for failure, result in zip(failures[:-1], head, strict=True):
            self._done(failure, result)
        self._done(failures[-1], self._enqueue_all(failures[-1:], states[-1:])[0])

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
            item if isinstance(item, Result) else pipeline.finish(item, next(answers))
            for item in planned
        ]

    def _page_already_swept(self, last: TaskState) -> bool:
        settings = self.settings
        if settings.dry_run or settings.redrive_queue is None:
            return False
        name = job_name(settings.redrive_queue, last.name, last.dispatch_count)
        try:
            return self.rt.tasks.get(TaskName.parse(name)) is not None
        except errors.RedriveError:
            return False  # unsure: sweep the page; job names still prevent duplicates

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
        # Only the sweeping thread decides, so the cache needs no lock.
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
            extra={"sweep": True},
        )
        if self.on_result is not None:
            self.on_result(failure, result)
        self._notify()

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._progress)


# ---------------------------------------------------------------------------------------------
# handle_signal's entry


def sweep_signal(signal: Deploy | QueueAlert, ref: SignalRef, rt: Runtime) -> list[Outcome]:
    """Sweep for a Deploy or QueueAlert signal; every line is logged here.

    Returns what handle_signal counts for the message: SWEEP, plus FAILED when the sweep must be
    delivered again (budget spent or a transient fault), which makes handle_signal raise.
    """
    plan = plan_for(signal, ref, rt.settings)
    if not plan.queues:
        why = (
            "deploy names no queue: its services "
            f"({', '.join(plan.services) or 'none'}) are not in REDRIVE_SERVICE_MAP and "
            "REDRIVE_ALLOWED_QUEUES lists no exact queue to default to"
        )
        rt.log.emit(
            build_record(
                outcome=Outcome.IGNORED,
                reason=why,
                signal=ref,
                dry_run=rt.settings.dry_run,
                api_version=rt.settings.tasks_api,
                mode="queued" if rt.settings.queued else "direct",
            )
        )
        return [Outcome.IGNORED]
    report = Sweeper(rt).run(plan)
    return [Outcome.SWEEP, Outcome.FAILED] if report.redeliver else [Outcome.SWEEP]


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
