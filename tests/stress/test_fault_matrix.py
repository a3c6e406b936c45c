"""Fault matrix: every Cloud Tasks and Cloud Run call redrive makes fails with each gRPC code that
matters, once and persistently, through real functions-framework servers and the emulator.

The calls, read from the adapters (tasks.py, cloudrun_client.py) and the handlers:

| entry point              | calls                                                         |
|--------------------------|---------------------------------------------------------------|
| handle_signal, direct    | GetTask, run.GetService, run.GetRevision, RunTask              |
|   (service from the URL) | + run.ListServices (no REDRIVE_SERVICE_MAP entry for the queue) |
| handle_signal, queued    | GetTask, run.GetService, run.GetRevision, CreateTask           |
| run_job                  | GetTask, run.GetService, run.GetRevision, RunTask              |
| deploy sweep, direct     | ListTasks (then GetTask and RunTask per selected task)         |
| deploy sweep, queued     | ListTasks, CreateTask (the async client, jobqueue.py)          |

(ListServices is exercised through direct mode only: the same adapter serves every entry point,
and its host cache means each case needs a fresh instance, which is a server start.)

What is "right", per code (errors.translate and decide.for_error, asserted exactly below):
- PERMISSION_DENIED: outcome PERMISSION_DENIED (ERROR), acknowledged (handle_signal 2xx, run_job
  200): a missing grant does not heal by retrying, and retrying burns the RunTask quota.
- UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL: transient. Idempotent reads and
  CreateTask (explicit name) are retried within REDRIVE_RETRY_DEADLINE_S, so one fault is absorbed.
  RunTask is never retried blindly: after UNAVAILABLE/DEADLINE_EXCEEDED the task is read again and
  RunTask is tried again only if the dispatch count shows it did not dispatch; after
  RESOURCE_EXHAUSTED (quota) or INTERNAL it is not retried in-process at all. A fault that
  outlasts the retries is FAILED (ERROR) and the platform delivers the work again: handle_signal
  answers 500, run_job 429 for quota and 503 otherwise.
- INTERNAL is treated as transient (google-api-core and the Cloud Tasks client's own retry
  settings treat it as a server-side hiccup); it is safe because the next delivery re-reads the
  task, so a RunTask that did dispatch despite answering INTERNAL is caught by the "dispatched
  again since" guard instead of being run twice.

Every case then delivers the same work again with the faults cleared (what Pub/Sub or the redrive
queue does after a non-2xx) and checks that the task was force-run exactly once over both
deliveries (queued mode: exactly one job exists, nothing run).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from redrive.core.jobs import job_name
from redrive.core.names import QueueName, TaskName
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    dead_letter,
    function_server,
    now_rfc3339,
    post_signal,
)
from tests.stress.support import direct_and_queued_servers, ok_runs

CODES = [
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INTERNAL,
]
ONCE, ALWAYS = 1, -1
SERVICE = f"{PARENT}/services/fm"
SWEEP_SERVICE_ID = "fm-sweep"
SWEEP_Q_SERVICE_ID = "fm-sweep-q"
URL_SERVICE = f"{PARENT}/services/fm-by-url"
RETRY_DEADLINE_S = "0.5"
"""Small, so a persistent fault reaches FAILED quickly; large enough for three attempts."""
QUEUE_HEADER = {"X-CloudTasks-QueueName": "fm-redrive"}

CALLS = {
    "direct": ["GetTask", "run.GetService", "run.GetRevision", "RunTask", "run.ListServices"],
    "queued": ["GetTask", "run.GetService", "run.GetRevision", "CreateTask"],
    "run_job": ["GetTask", "run.GetService", "run.GetRevision", "RunTask"],
    # A deploy signal in direct mode: the sweep lists the queue (ListTasks), then re-drives.
    "sweep": ["ListTasks"],
    # The same in queued mode: ListTasks, then one CreateTask per selected task.
    "sweep_queued": ["ListTasks", "CreateTask"],
}
SUCCESS = {
    "direct": "DISPATCHED",
    "queued": "QUEUED",
    "run_job": "DISPATCHED",
    "sweep": "DISPATCHED",
    "sweep_queued": "QUEUED",
}


@dataclass(frozen=True)
class Expected:
    outcome: str
    status: int


def expected(entry: str, call: str, code: grpc.StatusCode, times: int) -> Expected:
    """The rule of the module docstring, as a function of the case."""
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return Expected("PERMISSION_DENIED", 200)
    retried_in_process = call != "RunTask" or code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    if times == ONCE and retried_in_process:
        return Expected(SUCCESS[entry], 200)
    if entry == "run_job":
        return Expected("FAILED", 429 if code is grpc.StatusCode.RESOURCE_EXHAUSTED else 503)
    return Expected("FAILED", 500)


@dataclass(frozen=True)
class Case:
    entry: str
    call: str
    code: grpc.StatusCode
    times: int


CASES = [
    pytest.param(Case(entry, call, code, times), id=f"{entry}-{call}-{code.name}-{label}")
    for entry, calls in CALLS.items()
    for call in calls
    for code in CODES
    for times, label in ((ONCE, "once"), (ALWAYS, "always"))
]


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    return {
        "fm": stack.queue("fm"),
        "fmurl": stack.queue("fmurl"),
        "fmsweep": stack.queue("fmsweep"),
        "fmsweepq": stack.queue("fmsweepq"),
        # Paused: queued-mode jobs stay put; run_job is driven by posting the job directly.
        "redrive": stack.queue("fm-redrive", paused=True),
    }


def base_env(stack: Stack, queues: dict[str, str]) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": ",".join(
            queues[q] for q in ("fm", "fmurl", "fmsweep", "fmsweepq")
        ),
        "REDRIVE_SERVICE_MAP": json.dumps(
            {
                SERVICE: [queues["fm"]],
                f"{PARENT}/services/{SWEEP_SERVICE_ID}": [queues["fmsweep"]],
                f"{PARENT}/services/{SWEEP_Q_SERVICE_ID}": [queues["fmsweepq"]],
            }
        ),
        "REDRIVE_RETRY_DEADLINE_S": RETRY_DEADLINE_S,
        "REDRIVE_DIRECT_RATE_PER_S": "100",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
    }


@pytest.fixture(scope="module")
def servers(
    stack: Stack, queues: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FunctionServer]]:
    logs = tmp_path_factory.mktemp("faults")
    env = base_env(stack, queues)
    with direct_and_queued_servers(env, env, queues["redrive"], logs) as started:
        yield started


_ids = itertools.count()


def job_body(task: str, seen_at: str) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "task": task,
            "seen_at": seen_at,
            "dispatch_count": 1,
            "signal": {
                "kind": "dead-letter",
                "source": "dead-letter",
                "message_id": "fault-matrix",
                "publish_time": seen_at,
            },
        }
    ).encode()


class Delivery:
    """One piece of work (a Pub/Sub message or a redrive job) that can be delivered again."""

    def __init__(self, entry: str, server: FunctionServer, task: str, message_id: str) -> None:
        self.entry = entry
        self.server = server
        self.task = task
        self.message_id = message_id
        self.published = now_rfc3339()
        self.seen = 0

    def send(self) -> tuple[int, list[dict[str, Any]]]:
        """Deliver once; the HTTP status and the outcome lines this delivery added."""
        if self.entry == "run_job":
            body = job_body(self.task, self.published)
            status = httpx.post(
                self.server.url, content=body, headers=QUEUE_HEADER, timeout=30
            ).status_code
            lines = self.server.outcomes(task=self.task)
        else:
            payload = dead_letter(self.task)
            if self.entry.startswith("sweep"):
                service = SWEEP_SERVICE_ID if self.entry == "sweep" else SWEEP_Q_SERVICE_ID
                deployed = {"service": service, "at": self.published}
                payload = json.dumps({"deployed": deployed}).encode()
            status = post_signal(self.server, payload, self.message_id, self.published).status_code
            lines = self.server.outcomes(signal__message_id=self.message_id)
        new, self.seen = lines[self.seen :], len(lines)
        return status, new


def run_case(stack: Stack, queues: dict[str, str], server: FunctionServer, case: Case) -> None:
    entry, call, code, times = case.entry, case.call, case.code, case.times
    n = next(_ids)
    by_url = call == "run.ListServices"
    queue = queues[
        "fmurl" if by_url else {"sweep": "fmsweep", "sweep_queued": "fmsweepq"}.get(entry, "fm")
    ]
    path = f"/fm/{entry}/{n}"
    task = stack.failed_task(queue, f"fm-{entry}-{n}", path)
    if by_url:
        stack.emu.cloudrun.deploy(URL_SERVICE, uri=stack.target.url(""))
    else:
        stack.emu.cloudrun.deploy(SERVICE)  # the fix is live after the failed attempt...
    stack.target.statuses[path] = 200  # ...and the application now succeeds
    want = expected(entry, call, code, times)
    delivery = Delivery(entry, server, task, f"fm-{n}")

    calls_before = stack.emu.control.call_counts().get(call, 0)
    stack.emu.control.fail(call, code, times=times)
    try:
        status, lines = delivery.send()
    finally:
        stack.emu.control.clear()
    assert stack.emu.control.call_counts().get(call, 0) > calls_before, f"{call} never called"

    assert status == want.status, (status, lines)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["outcome"] == want.outcome, line
    if want.outcome in ("FAILED", "PERMISSION_DENIED"):
        assert line["severity"] == "ERROR"
        assert code.name in line["reason"], line["reason"]
    if entry in ("direct", "queued"):
        (summary,) = server.summaries(delivery.message_id)
        assert summary["outcome"] == want.outcome

    # The platform delivers again after a non-2xx (and a fixed grant lets a new signal through):
    # the task is force-run exactly once over both deliveries, never lost, never twice.
    again_status, again = delivery.send()
    assert again_status == 200, again
    sweep = entry.startswith("sweep")
    if sweep and want.outcome == SUCCESS[entry]:
        # Direct: the task is done, the sweep selects nothing. Queued: the task waits for its
        # job, and the probe of the page's last job shows the page was swept: no line at all.
        assert again == [], again
    elif sweep:
        assert [x["outcome"] for x in again] == [SUCCESS[entry]], again
    else:
        assert len(again) == 1, again
    if sweep:
        pass
    elif want.outcome == SUCCESS[entry]:
        settled = (
            {"SKIPPED_DUPLICATE"}
            if entry == "queued"
            else {"NOT_FOUND", "SKIPPED_IN_FLIGHT", "SKIPPED_ALREADY_RETRIED"}
        )
        assert again[0]["outcome"] in settled, again
    else:
        assert again[0]["outcome"] == SUCCESS[entry], again
    if entry in ("queued", "sweep_queued"):
        job = job_name(QueueName.parse(queues["redrive"]), TaskName.parse(task), 1)
        assert stack.get(job) is not None, "the redrive job exists"
        assert {x["job"] for x in server.outcomes(task=task)} - {None} == {job}
        assert ok_runs(stack, task) == 0  # the job waits in the (paused) redrive queue
        if entry == "sweep_queued":
            stack.client.delete_task(name=task)  # the next case's sweep lists only its own task
    else:
        assert ok_runs(stack, task) == 1


@pytest.mark.parametrize("case", CASES)
def test_fault(stack, queues, servers, tmp_path, case):
    if case.call == "run.ListServices":
        # A fresh instance: the host → service cache would otherwise skip ListServices.
        env = base_env(stack, queues)
        with function_server("handle_signal", "cloudevent", env, tmp_path / "fn.log") as fresh:
            run_case(stack, queues, fresh, case)
        return
    server = {"sweep": "direct", "sweep_queued": "queued"}.get(case.entry, case.entry)
    run_case(stack, queues, servers[server], case)


def test_matrix_covers_every_call_and_code():
    """The matrix is the product it claims to be (a guard against a case silently dropped)."""
    seen = {c.values[0] for c in CASES}
    assert len(seen) == sum(len(calls) for calls in CALLS.values()) * len(CODES) * 2
    assert {c.code for c in seen} == set(CODES)  # type: ignore[attr-defined]
