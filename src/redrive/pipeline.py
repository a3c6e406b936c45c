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

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from redrive.adapters.claims import Grant, Refusal
from redrive.core import errors
from redrive.core.claims import FailureKey, fix_identity
from redrive.core.decide import (
    Action,
    Failure,
    FixEvidence,
    SignalRef,
    after_run,
    decide,
    screen,
)
from redrive.core.jobs import Job, JobTask, job_task
from redrive.core.outcomes import Outcome
from redrive.core.records import Result, result_record
from redrive.core.state import TaskState
from redrive.runtime import Runtime

NO_RUN_SLOT = "no_run_slot"
"""`Result.extra` key set when the throttle had no RunTask slot in time (nothing was done)."""
STALE_AFTER_S = 0.5
"""A state older than this (a throttle wait, a listing) is read again before RunTask."""

EvidenceSource = FixEvidence | Callable[[TaskState], FixEvidence] | None
"""Fix evidence given outright (a job's, a deploy's), a function of the task's state (a sweep's
cache), or None: the configured fix check."""


class Act(StrEnum):
    """What to do with a task once every guard passed."""

    RUN = "run"
    """Force-run it now (RunTask): direct mode, run_job, the command line."""
    ENQUEUE = "enqueue"
    """Create one redrive job for it (queued mode); run_job does the RUN later."""


@dataclass(frozen=True)
class Request:
    """One failure and how the caller wants it handled."""

    failure: Failure
    act: Act
    evidence: EvidenceSource = None
    listed: TaskState | None = None
    """The state a sweep listed: decided on without a GetTask, read again before a RunTask."""
    throttle: bool = False
    """Wait for the in-process RunTask throttle (direct mode) before acting."""
    throttle_timeout_s: float | None = None
    """How long to wait for a RunTask slot; None: REDRIVE_RETRY_DEADLINE_S (at least 1 s). With no
    slot in time the Result is FAILED (429) and its `extra` says `no_run_slot`."""
    owner: str = "unknown"
    """Who acts: the delivery that may come back after a fault (`msg:<Pub/Sub message id>`,
    `job:<redrive job name>`, `cli:<run id>`); the claim is held in its name."""


@dataclass(frozen=True)
class Pending:
    """A request every guard allowed, whose act has not happened yet."""

    request: Request
    state: TaskState
    fix: FixEvidence | None
    job: JobTask | None = None
    """For `Act.ENQUEUE`: the job to create."""


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
"""Concurrent request threads of one instance run one task's read-decide-act one at a time, so a
duplicate delivery reads the task after the first one's RunTask and sees it dispatched."""


def process(request: Request, rt: Runtime) -> Result:
    """Every step for one task; the Result is returned, not logged (see `record`)."""
    early = screen(request.failure, rt.policy, rt.clock())
    if early is not None:
        return Result.of(early)
    if request.act is Act.RUN:
        with TASK_LOCKS.hold(str(request.failure.task)):
            return _process(request, rt)
    return _process(request, rt)


def _process(request: Request, rt: Runtime) -> Result:
    planned = prepare(request, rt)
    if isinstance(planned, Result):
        return planned
    if request.act is Act.ENQUEUE:
        assert planned.job is not None and rt.settings.redrive_queue is not None
        try:
            created = rt.tasks.create(rt.settings.redrive_queue, planned.job)
        except errors.RedriveError as err:
            return finish(planned, err, rt)
        return finish(planned, created, rt)
    return _run(planned, rt)


def prepare(request: Request, rt: Runtime) -> Result | Pending:
    """Screen, read and decide: the final Result, or what to act on."""
    failure = request.failure
    now = rt.clock()
    early = screen(failure, rt.policy, now)
    if early is not None:
        return Result.of(early)
    # In-flight is a RunTask's guard: an attempt running when a job is enqueued is over by the
    # time run_job (which checks it again) acts.
    check_in_flight = request.act is Act.RUN
    state: TaskState | None = request.listed
    evidence: FixEvidence | None = None
    try:
        if state is None:
            state = rt.tasks.get(failure.task)
        decision = decide(failure, state, None, rt.policy, now, check_in_flight=check_in_flight)
        if decision.action is Action.CHECK_FIX:
            assert state is not None
            evidence = _evidence(request.evidence, state, rt)
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
            job=_job(failure, state, evidence, rt).name,
        )
    if decision.action is not Action.RUN:
        return Result.of(decision, state=state, fix=evidence)
    assert state is not None
    job = _job(failure, state, evidence, rt) if request.act is Act.ENQUEUE else None
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
            fresh = rt.tasks.get(failure.task)
            decision = decide(failure, fresh, evidence, rt.policy, rt.clock())
            if decision.action is not Action.RUN:
                return Result.of(decision, state=fresh, fix=evidence)
            assert fresh is not None
            state = fresh
        claimed = _claim(request, state, evidence, rt)
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err), state=state, fix=evidence)
    if isinstance(claimed, Refusal):
        return Result(
            claimed.outcome,
            claimed.reason,
            claimed.http_status,
            state=state,
            fix=evidence,
            claim=claimed.fields(),
            retry_after_s=claimed.retry_after_s,
        )
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


def _evidence(source: EvidenceSource, state: TaskState, rt: Runtime) -> FixEvidence:
    if source is None:
        return rt.fix_check.evidence(state.name, state)
    if isinstance(source, FixEvidence):
        return source
    return source(state)


def _job(failure: Failure, state: TaskState, evidence: FixEvidence | None, rt: Runtime) -> JobTask:
    """The redrive job for a failure: named after the task and its failed attempt's dispatch
    count, so a second producer of the same failure meets ALREADY_EXISTS; it carries the fix
    evidence found here, for run_job."""
    settings = rt.settings
    assert settings.redrive_queue is not None and settings.job_url is not None
    job = Job.for_failure(failure, state.dispatch_count, evidence)
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
) -> None:
    """Log one outcome line for `result` (duration from `started`, a time.monotonic() value)."""
    line = result_record(
        result,
        failure=failure,
        signal=signal,
        settings=rt.settings,
        duration_ms=0.0 if started is None else (time.monotonic() - started) * 1000,
        entry_point=entry_point,
    )
    if extra:
        line.update(extra)
    rt.log.emit(line)
