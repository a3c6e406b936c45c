"""The logic behind both entry points.

handle_signal: CloudEvent → Message → signals → one decision (direct mode) or one redrive job
(queued mode) per failed task, one outcome line each, one summary line per message. It returns
normally for every terminal outcome (Pub/Sub acknowledges) and raises `RedeliverError` after
logging when any task met a transient fault or the quota, so Pub/Sub delivers the message again;
every step is idempotent (the "dispatched again since" guard and deterministic job names), so
that is safe.

run_job: one redrive job from the redrive queue → the full decision → RunTask. HTTP status tells
Cloud Tasks what to do: 200 for every terminal outcome (including INVALID_SIGNAL: Cloud Tasks
retries any non-2xx, and a malformed job will not get better), 429 for quota and 503 for transient
faults so the queue retries with backoff, 403 for a request that did not come through the redrive
queue (not a retry of ours; the queue-name header is a guard against misrouting, the authentication
is the OIDC token checked by Cloud Run IAM).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redrive import errors
from redrive.config import Settings
from redrive.decide import (
    Action,
    Decision,
    Failure,
    FixEvidence,
    RunResult,
    SignalRef,
    after_run,
    decide,
    for_error,
    screen,
)
from redrive.jobs import Job, JobTask, job_task
from redrive.outcome_log import build_record, build_summary, message_outcome
from redrive.outcomes import Outcome
from redrive.runtime import Runtime, get_runtime
from redrive.state import TaskState

THROTTLE_REREAD_S = 0.5
"""After waiting this long for a direct-mode RunTask slot, read the task again before running it."""


@dataclass
class Result:
    """One decision with everything the outcome record reports."""

    outcome: Outcome
    reason: str
    http_status: int = 200
    state: TaskState | None = None
    fix: FixEvidence | None = None
    run: RunResult | None = None
    job: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, decision: Decision, **kwargs: Any) -> Result:
        assert decision.outcome is not None
        return cls(decision.outcome, decision.reason, decision.http_status, **kwargs)


# ---------------------------------------------------------------------------------------------
# One task


class TaskLocks:
    """One lock per task name, held while any thread uses it (then forgotten)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._held.get(key, (threading.Lock(), 0))
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)


TASK_LOCKS = TaskLocks()


def redrive_one(
    failure: Failure, rt: Runtime, *, throttle: bool, carried_fix: FixEvidence | None = None
) -> Result:
    """The design's decision list for one task, then RunTask (direct mode and run_job).

    `carried_fix` is the evidence a redrive job brought along (run_job): used instead of asking
    the configured fix check again.
    """
    now = rt.clock()
    early = screen(failure, rt.policy, now)
    if early is not None:
        return Result.of(early)
    # One decision per task at a time in this instance: duplicate deliveries served by
    # concurrent request threads would otherwise all read "failed" and all call RunTask. The
    # second one reads the task after the first one's RunTask and sees it dispatched.
    with TASK_LOCKS.hold(str(failure.task)):
        return _redrive_locked(failure, rt, throttle=throttle, now=now, carried_fix=carried_fix)


def _redrive_locked(
    failure: Failure,
    rt: Runtime,
    *,
    throttle: bool,
    now: datetime,
    carried_fix: FixEvidence | None,
) -> Result:
    state: TaskState | None = None
    evidence: FixEvidence | None = None
    try:
        state = rt.tasks.get(failure.task)
        decision = decide(failure, state, None, rt.policy, now)
        if decision.action is Action.CHECK_FIX:
            assert state is not None
            evidence = carried_fix or rt.fix_check.evidence(failure.task, state)
            decision = decide(failure, state, evidence, rt.policy, now)
        if decision.action is Action.RUN and throttle:
            waited = time.monotonic()
            if not rt.limiter.acquire(timeout_s=max(rt.settings.retry_deadline_s, 1.0)):
                return Result(
                    Outcome.FAILED,
                    "direct-mode rate limit: no RunTask slot free within REDRIVE_RETRY_DEADLINE_S",
                    429,
                    state=state,
                    fix=evidence,
                )
            if time.monotonic() - waited > THROTTLE_REREAD_S:
                # The task may have moved while we waited: decide again on a fresh read.
                state = rt.tasks.get(failure.task)
                decision = decide(failure, state, evidence, rt.policy, rt.clock())
        if decision.action is Action.RUN:
            assert state is not None
            run = rt.tasks.run(failure.task, state)
            return Result.of(after_run(run), state=state, fix=evidence, run=run)
        return Result.of(decision, state=state, fix=evidence)
    except errors.RedriveError as err:
        return Result.of(for_error(err), state=state, fix=evidence)


def enqueue_one(failure: Failure, rt: Runtime) -> Result:
    """Queued mode: the guards that hold until run_job, then one job per failure.

    Applied here: allowlist, staleness, NOT_FOUND, already retried, not failing, fix check, dry
    run. Not here: in flight (it passes by the time the job runs; run_job checks it). The fix check
    runs here as well so that a job name, which Cloud Tasks keeps for about an hour, is not used up
    by a job that could only answer SKIPPED_FIX_NOT_DEPLOYED.
    """
    settings = rt.settings
    assert settings.redrive_queue is not None and settings.job_url is not None
    now = rt.clock()
    early = screen(failure, rt.policy, now)
    if early is not None:
        return Result.of(early)
    state: TaskState | None = None
    evidence: FixEvidence | None = None
    try:
        state = rt.tasks.get(failure.task)
        decision = decide(failure, state, None, rt.policy, now, check_in_flight=False)
        if decision.action is Action.CHECK_FIX:
            assert state is not None
            evidence = rt.fix_check.evidence(failure.task, state)
            decision = decide(failure, state, evidence, rt.policy, now, check_in_flight=False)
        return enqueue_decided(failure, state, decision, evidence, rt)
    except errors.RedriveError as err:
        return Result.of(for_error(err), state=state, fix=evidence)


@dataclass(frozen=True)
class PendingJob:
    """A job every guard allowed, not created yet (see `job_or_result`, `job_created`)."""

    spec: JobTask
    state: TaskState
    fix: FixEvidence | None


def job_or_result(
    failure: Failure,
    state: TaskState | None,
    decision: Decision,
    evidence: FixEvidence | None,
    rt: Runtime,
) -> Result | PendingJob:
    """Queued mode, once the guards have spoken: the final outcome, DRY_RUN, or the job to create.

    The job's name comes from the failure (task + failed dispatch count), so a second producer of
    the same failure (a redelivery, a duplicate alert, a deploy sweep) meets ALREADY_EXISTS. The
    job carries the fix evidence found here, for run_job.
    """
    settings = rt.settings
    assert settings.redrive_queue is not None and settings.job_url is not None
    if decision.action is not Action.RUN and decision.outcome is not Outcome.DRY_RUN:
        return Result.of(decision, state=state, fix=evidence)
    assert state is not None
    job = Job.for_failure(failure, state.dispatch_count, evidence)
    spec = job_task(job, settings.redrive_queue, settings.job_url, settings.job_service_account)
    if decision.outcome is Outcome.DRY_RUN:
        return Result(
            Outcome.DRY_RUN,
            "every guard passed; REDRIVE_DRY_RUN is on, no job enqueued",
            state=state,
            fix=evidence,
            job=spec.name,
        )
    return PendingJob(spec, state, evidence)


def job_created(pending: PendingJob, created: bool) -> Result:
    """The outcome of CreateTask for a pending job: created, or the name was taken."""
    if created:
        return Result(
            Outcome.QUEUED,
            "redrive job enqueued",
            state=pending.state,
            fix=pending.fix,
            job=pending.spec.name,
        )
    return Result(
        Outcome.SKIPPED_DUPLICATE,
        "a redrive job for this failure exists or existed within the de-duplication window",
        state=pending.state,
        fix=pending.fix,
        job=pending.spec.name,
    )


def enqueue_decided(
    failure: Failure,
    state: TaskState | None,
    decision: Decision,
    evidence: FixEvidence | None,
    rt: Runtime,
) -> Result:
    """`job_or_result`, then CreateTask for the job (errors propagate)."""
    planned = job_or_result(failure, state, decision, evidence, rt)
    if isinstance(planned, Result):
        return planned
    assert rt.settings.redrive_queue is not None
    return job_created(planned, rt.tasks.create(rt.settings.redrive_queue, planned.spec))


# ---------------------------------------------------------------------------------------------
# Logging helpers


def result_record(
    result: Result,
    *,
    failure: Failure | None,
    signal: SignalRef | None,
    settings: Settings,
    duration_ms: float,
    entry_point: str,
) -> dict[str, Any]:
    """The outcome record of one Result, for handle_signal, run_job and the sweep alike."""
    return build_record(
        outcome=result.outcome,
        reason=result.reason,
        task=failure.task if failure else None,
        signal=signal,
        seen_at=failure.seen_at if failure else None,
        failed_dispatch_count=failure.dispatch_count if failure else None,
        state=result.state,
        fix=result.fix,
        run=result.run,
        job=result.job,
        dry_run=settings.dry_run,
        duration_ms=duration_ms,
        api_version=settings.tasks_api,
        mode="queued" if settings.queued else "direct",
        entry_point=entry_point,
    )


def _emit(
    rt: Runtime,
    result: Result,
    *,
    failure: Failure | None,
    signal: SignalRef | None,
    started: float,
    entry_point: str,
) -> None:
    rt.log.emit(
        result_record(
            result,
            failure=failure,
            signal=signal,
            settings=rt.settings,
            duration_ms=(time.monotonic() - started) * 1000,
            entry_point=entry_point,
        )
    )


# ---------------------------------------------------------------------------------------------
# handle_signal


def handle_sweep_signal(signal: Any, ref: SignalRef, rt: Runtime) -> list[Outcome]:
    """Queue alerts and deploy notifications: sweep the queues (redrive.sweep logs every line).

    Returns the message-level outcomes: SWEEP, plus FAILED when the sweep must be delivered again.
    """
    from redrive.sweep import sweep_signal

    return sweep_signal(signal, ref, rt)


def handle_signal(cloud_event: Any, rt: Runtime | None = None) -> None:
    """Entry point logic for one Pub/Sub message delivered as a CloudEvent."""
    from redrive.signals import (
        Deploy,
        Ignored,
        Invalid,
        QueueAlert,
        SignalError,
        TaskFailure,
        message_from_event,
        parse_message,
    )

    rt = rt or get_runtime()
    started = time.monotonic()
    ce_id = _ce_attr(cloud_event, "id")
    ce_time = _ce_attr(cloud_event, "time")
    data = getattr(cloud_event, "data", None)
    outcomes: list[Outcome] = []
    kind = "unknown"
    ref = SignalRef("unknown", "unknown", ce_id, None)

    def log(result: Result, failure: Failure | None, signal_ref: SignalRef) -> None:
        outcomes.append(result.outcome)
        _emit(
            rt,
            result,
            failure=failure,
            signal=signal_ref,
            started=started,
            entry_point="handle_signal",
        )

    try:
        if data is not None and not isinstance(data, Mapping):
            raise SignalError(f"CloudEvent data is not a JSON object ({type(data).__name__})")
        message = message_from_event(data, None, ce_id, ce_time)
    except SignalError as err:
        log(Result(Outcome.INVALID_SIGNAL, f"bad Pub/Sub message: {str(err)[:300]}"), None, ref)
        _summary(rt, outcomes, kind, ref, started)
        return

    parsed = parse_message(message, max_bytes=rt.settings.max_payload_bytes, now=rt.clock())
    kind = parsed.kind
    ref = SignalRef(kind, kind, message.message_id, message.publish_time)
    handled: set[tuple[str, int | None]] = set()
    for signal in parsed.signals:
        if isinstance(signal, Invalid):
            log(Result(Outcome.INVALID_SIGNAL, signal.reason), None, ref)
        elif isinstance(signal, Ignored):
            log(
                Result(Outcome.IGNORED, signal.reason),
                None,
                SignalRef(kind, signal.source, ref.message_id, ref.publish_time),
            )
        elif isinstance(signal, QueueAlert | Deploy):
            sref = SignalRef(kind, signal.source, ref.message_id, ref.publish_time)
            outcomes.extend(handle_sweep_signal(signal, sref, rt))
        elif isinstance(signal, TaskFailure):
            key = (str(signal.task), signal.dispatch_count)
            if key in handled:
                continue  # the same failure listed twice in one message: one decision
            handled.add(key)
            sref = SignalRef(kind, signal.source, ref.message_id, ref.publish_time)
            failure = Failure(
                signal.task, signal.seen_at, sref, signal.dispatch_count, signal.status
            )
            if rt.settings.queued:
                result = enqueue_one(failure, rt)
            else:
                result = redrive_one(failure, rt, throttle=True)
            log(result, failure, sref)
    failed = _summary(rt, outcomes, kind, ref, started)
    if failed:
        raise errors.RedeliverError(
            f"{failed} task(s) met a transient fault or the quota; Pub/Sub will deliver the "
            "message again"
        )


def _summary(
    rt: Runtime, outcomes: list[Outcome], kind: str, ref: SignalRef, started: float
) -> int:
    counts = Counter(o.value for o in outcomes)
    rt.log.emit(
        build_summary(
            outcome=message_outcome(outcomes),
            kind=kind,
            signal=ref,
            counts=counts,
            duration_ms=(time.monotonic() - started) * 1000,
            dry_run=rt.settings.dry_run,
            api_version=rt.settings.tasks_api,
            mode="queued" if rt.settings.queued else "direct",
        )
    )
    return sum(1 for o in outcomes if o.redeliver)


def _ce_attr(event: Any, name: str) -> str | None:
    try:
        value = event[name]
    except (KeyError, TypeError):
        return None
    return None if value is None else str(value)


# ---------------------------------------------------------------------------------------------
# run_job


QUEUE_HEADER = "X-CloudTasks-QueueName"


def handle_job(
    body: bytes, headers: Mapping[str, str], rt: Runtime | None = None
) -> tuple[int, dict[str, Any]]:
    """One redrive job → (HTTP status, JSON body). Logs exactly one outcome line."""
    rt = rt or get_runtime()
    started = time.monotonic()
    settings = rt.settings
    ref = SignalRef("job", "redrive-queue", None, None)

    def answer(
        result: Result, failure: Failure | None, signal: SignalRef
    ) -> tuple[int, dict[str, Any]]:
        _emit(rt, result, failure=failure, signal=signal, started=started, entry_point="run_job")
        return result.http_status, {
            "outcome": result.outcome.value,
            "reason": result.reason,
            "task": str(failure.task) if failure else None,
        }

    if settings.redrive_queue is None:
        return answer(
            Result(Outcome.INVALID_SIGNAL, "run_job called but REDRIVE_QUEUE is not set", 403),
            None,
            ref,
        )
    queue_id = _header(headers, QUEUE_HEADER)
    if queue_id != settings.redrive_queue.queue:
        return answer(
            Result(
                Outcome.INVALID_SIGNAL,
                f"request did not come from the redrive queue {settings.redrive_queue.queue!r} "
                f"({QUEUE_HEADER}: {(queue_id or 'missing')[:100]!r})",
                403,
            ),
            None,
            ref,
        )
    try:
        job = Job.parse(body)
    except errors.InvalidJobError as err:
        # 200 on purpose: Cloud Tasks retries any other status, and a malformed job stays so.
        return answer(Result(Outcome.INVALID_SIGNAL, f"invalid redrive job: {err}"), None, ref)
    failure = job.failure()
    result = redrive_one(failure, rt, throttle=False, carried_fix=job.fix)
    result.job = _header(headers, "X-CloudTasks-TaskName")
    return answer(result, failure, job.signal)


def run_job(request: Any, rt: Runtime | None = None) -> tuple[str, int, dict[str, str]]:
    """Flask adapter: functions-framework passes a flask.Request."""
    body = request.get_data(cache=False)
    status, payload = handle_job(body, request.headers, rt)
    return json.dumps(payload), status, {"Content-Type": "application/json"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value
