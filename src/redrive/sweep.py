"""Re-drive after a deploy (or a queue alert): list the queues page by page, pick the tasks whose
last attempt failed before the fix went live, and re-drive each one once.

Three layers, from pure to I/O:

- `select(state, deployed_at)`: pure verdict for one listed task (table-tested).
- `plan_for(signal, settings)`: pure; which queues a Deploy or QueueAlert means, and why.
- `Sweeper.run(plan)`: lists each queue (ListTasks, page_size 1000, one page in memory at a time),
  and for every selected task either enqueues one redrive job (queued mode; the same
  deterministic job name as handle_signal uses, so an existing job is SKIPPED_DUPLICATE) or runs
  the guarded decision and RunTask under the in-process rate limit (direct mode). One outcome line
  per selected task, one SWEEP line per sweep.

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
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from redrive import errors
from redrive.config import Settings
from redrive.decide import (
    Action,
    Decision,
    Failure,
    FixEvidence,
    SignalRef,
    after_run,
    decide,
    for_error,
)
from redrive.handlers import (
    TASK_LOCKS,
    PendingJob,
    Result,
    job_created,
    job_or_result,
    result_record,
)
from redrive.jobqueue import CONCURRENCY, Answer, JobQueue
from redrive.jobs import job_name
from redrive.names import QueueName, TaskName
from redrive.outcome_log import COMPONENT, build_record, signal_fields
from redrive.outcomes import Outcome
from redrive.runtime import Runtime
from redrive.state import TaskState
from redrive.tasks import make_retry

PAGE_SIZE = 1000
"""ListTasks' maximum page size: fewest round trips, one page (≈1 MB of BASIC tasks) in memory."""
SWEEP_EVENT = "redrive.sweep"
DEPLOY_STRATEGY = "deploy-signal"
LIST_VIEW_BASIC = 1
"""Listing never needs bodies: BASIC view, whatever REDRIVE_RESPONSE_VIEW says."""


# ---------------------------------------------------------------------------------------------
# Pure selection


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


def select(state: TaskState, deployed_at: datetime | None) -> Pick:
    """Should this listed task be re-driven? Tasks that succeeded are gone and never listed.

    `deployed_at` None (a queue alert) selects every failed, finished task; the fix check then
    decides for each one.
    """
    if state.in_flight:
        return Pick.IN_FLIGHT
    if state.last_status_code is None:
        return Pick.NEVER_ATTEMPTED
    if not state.last_failed:
        return Pick.LAST_OK
    if deployed_at is None:
        return Pick.SELECTED
    failed_at = state.failed_at
    if failed_at is None:
        return Pick.NO_ATTEMPT_TIME
    if failed_at >= deployed_at:
        return Pick.AFTER_DEPLOY
    return Pick.SELECTED


# ---------------------------------------------------------------------------------------------
# Pure planning: which queues a signal means


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep: the queues, the deploy time (None for a queue alert), and why."""

    queues: tuple[QueueName, ...]
    deployed_at: datetime | None
    signal: SignalRef
    basis: str
    """How the queues were found: "signal", "service map", "allowlist default", "alert"."""
    services: tuple[str, ...] = ()
    unmapped: tuple[str, ...] = ()
    """Services of the deploy signal that REDRIVE_SERVICE_MAP does not know."""


def plan_for(signal: Any, ref: SignalRef, settings: Settings) -> SweepPlan:
    """The sweep a Deploy or QueueAlert signal asks for.

    Deploy: the queues it names, plus the queues REDRIVE_SERVICE_MAP maps its services to. When
    that gives nothing, every exact queue of REDRIVE_ALLOWED_QUEUES (location patterns are not
    expanded: list such queues in the map). QueueAlert: its one queue.
    """
    from redrive.signals import Deploy, QueueAlert

    if isinstance(signal, QueueAlert):
        return SweepPlan((signal.queue,), None, ref, "alert")
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
    if queues:
        from_map = len(queues) > len(set(signal.queues))
        basis = {
            (True, False): "signal",
            (False, True): "service map",
            (True, True): "signal and service map",
        }[(bool(signal.queues), from_map)]
        return SweepPlan(
            queues, signal.deployed_at, ref, basis, tuple(signal.services), tuple(unmapped)
        )
    default = tuple(sorted(QueueName.parse(q) for q in settings.allowed_queues.exact))
    return SweepPlan(
        default,
        signal.deployed_at,
        ref,
        "allowlist default",
        tuple(signal.services),
        tuple(unmapped),
    )


# ---------------------------------------------------------------------------------------------
# The driver


class ListClient(Protocol):
    """The slice of CloudTasksClient the sweep adds: ListTasks."""

    def list_tasks(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...


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
            "deployed_at": _iso(plan.deployed_at),
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
        list_client: ListClient | None = None,
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
        self._list_client = list_client
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
        record = self._record(result, None)
        record["queue"] = str(queue)
        record["message"] = f"{result.outcome.value} {queue}: {result.reason}"[:1000]
        self.rt.log.emit(record)

    def _pages(
        self, queue: QueueName, *, check_budget: bool = True
    ) -> Iterator[tuple[int, str, list[Any]]]:
        """(page number, the token that fetched it, its tasks): one ListTasks call per page."""
        client: ListClient = self._list_client or self.rt.tasks.client  # type: ignore[assignment]
        token = ""
        number = 0
        while True:
            if check_budget:
                self._check_budget(queue, number + 1, token, 0)
            request = {
                "parent": str(queue),
                "page_size": self.page_size,
                "page_token": token,
                "response_view": LIST_VIEW_BASIC,
            }
            retry = make_retry(min(self.settings.retry_deadline_s, self._remaining()))
            try:
                # The pager proxies the first response; one pager per page keeps the token of
                # every page at hand (for the stop record) and errors translated per call.
                page = client.list_tasks(request=request, retry=retry, timeout=20.0)
                tasks = list(page.tasks)
                next_token = str(page.next_page_token or "")
            except Exception as err:
                raise errors.translate(err) from None
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
            outcome = decision.outcome
            if isinstance(err, errors.NotFoundError):
                reason = f"queue not found: {err}"
            else:
                reason = f"listing tasks failed: {decision.reason}"
            self._queue_line(queue, Result(outcome, reason, decision.http_status))

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
                result = self._direct(
                    failure,
                    state,
                    queue=queue,
                    page=number,
                    token=token,
                    index=index,
                )
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
        """Queued mode: decide each task, then create the allowed jobs concurrently."""
        planned = [self._plan_job(f, s) for f, s in zip(failures, states, strict=True)]
        pending = [p for p in planned if isinstance(p, PendingJob)]
        answers: Iterator[Answer] = iter(())
        if pending:
            assert self.settings.redrive_queue is not None
            if self._jobs is None:
                self._jobs = JobQueue(self.settings, concurrency=self.concurrency)
            answers = iter(
                self._jobs.create_all(self.settings.redrive_queue, [p.spec for p in pending])
            )
        results: list[Result] = []
        for item in planned:
            if isinstance(item, Result):
                results.append(item)
                continue
            answer = next(answers)
            if isinstance(answer, errors.RedriveError):
                results.append(Result.of(for_error(answer), state=item.state, fix=item.fix))
            else:
                results.append(job_created(item, answer))
        return results

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

    def _decide(
        self, failure: Failure, state: TaskState, *, check_in_flight: bool
    ) -> tuple[Decision, FixEvidence | None]:
        policy, now = self.rt.policy, self.rt.clock()
        decision = decide(failure, state, None, policy, now, check_in_flight=check_in_flight)
        evidence: FixEvidence | None = None
        if decision.action is Action.CHECK_FIX:
            evidence = self._evidence(state)
            decision = decide(
                failure, state, evidence, policy, now, check_in_flight=check_in_flight
            )
        return decision, evidence

    def _plan_job(self, failure: Failure, state: TaskState) -> Result | PendingJob:
        """Queued mode: the job one selected task gets (named as handle_signal names it), or the
        outcome that stops it."""
        evidence: FixEvidence | None = None
        try:
            # In flight is checked by select() now and by run_job later.
            decision, evidence = self._decide(failure, state, check_in_flight=False)
            return job_or_result(failure, state, decision, evidence, self.rt)
        except errors.RedriveError as err:
            return Result.of(for_error(err), state=state, fix=evidence)

    def _direct(
        self,
        failure: Failure,
        state: TaskState,
        *,
        queue: QueueName,
        page: int,
        token: str,
        index: int,
    ) -> Result:
        """Direct mode: the guarded decision, then RunTask under the in-process rate limit."""
        evidence: FixEvidence | None = None
        current = state
        try:
            decision, evidence = self._decide(failure, state, check_in_flight=True)
            if decision.action is not Action.RUN:
                return Result.of(decision, state=state, fix=evidence)
            if not self.rt.limiter.acquire(timeout_s=self._remaining()):
                # No RunTask slot before the budget ends: stop here; the redelivery goes on.
                self._stop(queue, page, token, index)
            # Read the task again right before RunTask, under the same per-task lock as
            # handle_signal's direct mode: the listing may be old by now (throttle, slow pages)
            # and a concurrent signal for the same task may have run it meanwhile.
            with TASK_LOCKS.hold(str(failure.task)):
                fresh = self.rt.tasks.get(failure.task)
                if fresh is None:
                    return Result.of(
                        decide(failure, None, evidence, self.rt.policy, self.rt.clock())
                    )
                current = fresh
                decision = decide(failure, current, evidence, self.rt.policy, self.rt.clock())
                if decision.action is not Action.RUN:
                    return Result.of(decision, state=current, fix=evidence)
                run = self.rt.tasks.run(failure.task, current)
            return Result.of(after_run(run), state=current, fix=evidence, run=run)
        except errors.RedriveError as err:
            return Result.of(for_error(err), state=current, fix=evidence)

    def _done(self, failure: Failure, result: Result) -> None:
        report = self._report
        report.counts[result.outcome.value] += 1
        self._progress.handled += 1
        self._progress.counts[result.outcome.value] += 1
        self.rt.log.emit(self._record(result, failure))
        if self.on_result is not None:
            self.on_result(failure, result)
        self._notify()

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._progress)

    def _record(self, result: Result, failure: Failure | None) -> dict[str, Any]:
        record = result_record(
            result,
            failure=failure,
            signal=self._plan.signal,
            settings=self.settings,
            duration_ms=0.0,
            entry_point=self.entry_point,
        )
        record["sweep"] = True
        return record


# ---------------------------------------------------------------------------------------------
# handle_signal's entry


def sweep_signal(signal: Any, ref: SignalRef, rt: Runtime) -> list[Outcome]:
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
    client: ListClient, queue: QueueName, limit: int, retry_deadline_s: float = 30.0
) -> tuple[list[TaskState], int, int]:
    """(the `limit` most recently failed tasks, newest first; tasks seen; failing tasks)."""
    heap: list[tuple[float, str, TaskState]] = []
    seen = failing = 0
    token = ""
    while True:
        request = {
            "parent": str(queue),
            "page_size": PAGE_SIZE,
            "page_token": token,
            "response_view": LIST_VIEW_BASIC,
        }
        try:
            page = client.list_tasks(
                request=request, retry=make_retry(retry_deadline_s), timeout=20.0
            )
            tasks = list(page.tasks)
            token = str(page.next_page_token or "")
        except Exception as err:
            raise errors.translate(err) from None
        for task in tasks:
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


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
