"""run_job: one redrive job from the redrive queue → the pipeline's RunTask → an HTTP answer.

A job is believed only as the redrive queue holds it: run_job reads the job it is told it runs
(`X-CloudTasks-TaskName`) from the redrive queue with the FULL view and acts only when that task
exists and its body is the body received. Whoever may invoke run_job therefore cannot make it act
on a body of their own (fix evidence included), nor replay a job once it is done (its task is
gone); a duplicate execution of a live job is the same owner, and the claim lets one act.

The status tells Cloud Tasks what to do: 200 for every terminal outcome (including
INVALID_SIGNAL: Cloud Tasks retries any non-2xx, and a malformed job will not get better), 429 for
quota and 503 for transient faults so the queue retries with backoff, 403 for a request that did
not come through the redrive queue (the queue-name header is a guard against misrouting; the
authentication is the OIDC token checked by Cloud Run IAM).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from redrive import pipeline
from redrive.core import errors
from redrive.core.canary import Gate, Verdict, is_gate, judge
from redrive.core.decide import Failure, SignalRef
from redrive.core.jobs import Job
from redrive.core.names import TASK_ID_RE
from redrive.core.outcomes import Outcome
from redrive.core.records import Result, iso
from redrive.core.redrives import owner_for
from redrive.runtime import Runtime, get_runtime

ENTRY_POINT = "run_job"
QUOTA_MINUTE_S = 60.0
"""RESOURCE_EXHAUSTED on RunTask is the per-minute quota: an earlier retry would likely meet it."""
GATE_RECHECK_S = 5.0
"""A gate whose canaries are not answered yet comes back this soon (its Retry-After)."""
RELEASE_SHARE = 0.8
"""A gate's release sweeps for at most this share of run_job's dispatch deadline, so it stops
cleanly (and is delivered again) before Cloud Tasks gives up on the attempt."""
QUEUE_HEADER = "X-CloudTasks-QueueName"
TASK_NAME_HEADER = "X-CloudTasks-TaskName"


def handle_job(
    body: bytes, headers: Mapping[str, str], rt: Runtime | None = None
) -> tuple[int, dict[str, Any]]:
    """One redrive job → (HTTP status, JSON body). Logs exactly one outcome line."""
    rt = rt or get_runtime()
    started = time.monotonic()
    settings = rt.settings
    ref = SignalRef("job", "redrive-queue", None, None)

    rid: str | None = None

    def answer(
        result: Result, failure: Failure | None, signal: SignalRef
    ) -> tuple[int, dict[str, Any]]:
        pipeline.record(
            rt,
            result,
            failure=failure,
            signal=signal,
            entry_point=ENTRY_POINT,
            started=started,
            redrive_id=rid,
        )
        body: dict[str, Any] = {
            "outcome": result.outcome.value,
            "reason": result.reason,
            "task": str(failure.task) if failure else None,
        }
        retry_after = result.retry_after_s
        if retry_after is None and result.http_status == 429:
            retry_after = QUOTA_MINUTE_S
        if retry_after is not None:
            body["retry_after_s"] = retry_after
        return result.http_status, body

    if settings.redrive_queue is None:
        return answer(
            Result(Outcome.INVALID_SIGNAL, "run_job called but REDRIVE_QUEUE is not set", 403),
            None,
            ref,
        )
    queue_id = header(headers, QUEUE_HEADER)
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
    if is_gate(body):
        return handle_gate(body, header(headers, TASK_NAME_HEADER), rt, answer)
    try:
        job = Job.parse(body)
    except errors.InvalidJobError as err:
        # 200 on purpose: Cloud Tasks retries any other status, and a malformed job stays so.
        return answer(Result(Outcome.INVALID_SIGNAL, f"invalid redrive job: {err}"), None, ref)
    failure = job.failure()
    rid = job.redrive
    job_id = header(headers, TASK_NAME_HEADER)
    unverified = not_a_live_job(job_id, body, rt)
    if unverified is not None:
        return answer(unverified, failure, job.signal)
    request = pipeline.Request(
        failure,
        pipeline.Act.RUN,
        evidence=job.fix,
        owner=owner_for(f"job:{job_id}", rid),
        redrive_id=rid,
    )
    result = pipeline.process(request, rt)
    result.job = job_id
    return answer(result, failure, job.signal)


Answer = Callable[[Result, Failure | None, SignalRef], tuple[int, dict[str, Any]]]


def handle_gate(
    body: bytes, job_id: str | None, rt: Runtime, answer: Answer
) -> tuple[int, dict[str, Any]]:
    """A gate job: judge the queue's canaries; halt the queue (HALTED, 200), come back later
    (503 with Retry-After while they are not answered), or release the rest of the queue: a
    sweep of it under the re-drive's plan, which creates the other jobs (503 when it is cut
    short, so Cloud Tasks delivers the gate again and it resumes)."""
    from redrive.core.selection import SweepPlan
    from redrive.sweep import Sweeper, canary_fate, record_halted

    ref = SignalRef("job", "redrive-queue", None, None)
    try:
        gate = Gate.parse(body)
    except errors.InvalidJobError as err:
        return answer(Result(Outcome.INVALID_SIGNAL, f"invalid gate job: {err}"), None, ref)
    unverified = not_a_live_job(job_id, body, rt)
    if unverified is not None:
        return answer(unverified, None, gate.signal)
    fates = [canary_fate(rt, canary) for canary in gate.canaries]
    now = rt.clock()
    judged = judge(
        fates,
        failures_to_halt=gate.failures_to_halt,
        timed_out=now >= gate.until,
        timeout_s=gate.timeout_s,
    )
    line = {
        "event": "redrive.gate",
        "severity": "INFO",
        "message": f"gate of {gate.queue}: {judged.verdict.value}: {judged.reason}"[:1000],
        "redrive_id": gate.redrive,
        "queue": str(gate.queue),
        "gate": job_id,
        "canaries": judged.fields(),
        "time": iso(now),
        "labels": {"component": "redrive"},
    }
    if judged.verdict is Verdict.WAIT:
        rt.log.emit(line)
        wait = max(1.0, min(GATE_RECHECK_S, (gate.until - now).total_seconds()))
        return 503, {"outcome": "WAITING", "reason": judged.reason, "retry_after_s": wait}
    if rt.claims is not None:
        rt.claims.canary_verdict(gate.redrive, str(gate.queue), judged.verdict.value, judged.reason)
    if judged.verdict is Verdict.HALT:
        left = None if gate.selected is None else max(0, gate.selected - len(gate.canaries))
        record_halted(
            rt,
            gate.queue,
            judged,
            left=left,
            signal=gate.signal,
            entry_point=ENTRY_POINT,
            redrive=gate.redrive,
        )
        return 200, {"outcome": Outcome.HALTED.value, "reason": judged.reason}
    rt.log.emit(line)
    deadline = rt.settings.job_deadline_s or 600
    sweeper = Sweeper(
        rt,
        budget_s=min(rt.settings.sweep_budget_s, deadline * RELEASE_SHARE),
        entry_point=ENTRY_POINT,
        owner=f"job:{job_id}",
        release=True,
    )
    plan = SweepPlan(
        (gate.queue,),
        gate.deployed_at,
        gate.signal,
        "gate",
        gate.services,
        statuses=gate.statuses,
    )
    report = sweeper.run(plan)
    status = 503 if report.redeliver else 200
    return status, {
        "outcome": Outcome.SWEEP.value,
        "reason": f"released: {judged.reason}",
        "complete": report.complete,
        **({"retry_after_s": GATE_RECHECK_S} if report.redeliver else {}),
    }


def not_a_live_job(job_id: str | None, body: bytes, rt: Runtime) -> Result | None:
    """The answer to a request that is not a live job of the redrive queue (403), or to a
    fault while looking (as any fault); None when it is one."""
    try:
        refusal = verify(job_id, body, rt)
    except errors.RedriveError as err:
        return Result.of(rt.for_error(err))
    return None if refusal is None else Result(Outcome.INVALID_SIGNAL, refusal, 403)


def verify(job_id: str | None, body: bytes, rt: Runtime) -> str | None:
    """Why this request is not a live job of the redrive queue, or None when it is."""
    queue = rt.settings.redrive_queue
    assert queue is not None
    if not job_id or re.fullmatch(TASK_ID_RE, job_id) is None:
        return f"{TASK_NAME_HEADER} is missing or not a task id: the request is not a job"
    stored = rt.tasks.get_full(f"{queue}/tasks/{job_id}")
    if stored is None:
        return (
            f"no job {job_id!r} in the redrive queue: the request was not sent by the queue, or "
            "replays a job that is done"
        )
    if stored[1] != body:
        return f"the body differs from job {job_id!r} as the redrive queue holds it"
    return None


def run_job(request: Any, rt: Runtime | None = None) -> tuple[str, int, dict[str, str]]:
    """Flask adapter: functions-framework passes a flask.Request."""
    body = request.get_data(cache=False)
    status, payload = handle_job(body, request.headers, rt)
    headers = {"Content-Type": "application/json"}
    if "retry_after_s" in payload:
        # Cloud Tasks considers Retry-After on 429 and 503: the job comes back when it can go.
        headers["Retry-After"] = str(math.ceil(payload["retry_after_s"]))
    return json.dumps(payload), status, headers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (Flask's headers are case-blind, dicts are not)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value
