"""Fault matrix: every Cloud Tasks and Cloud Run call redrive makes fails with each gRPC code that
matters, once and persistently, through real functions-framework servers and the emulator.

The calls, in the order each entry point makes them (the claims queue is configured, as in
production; `#n` is the method's n-th call of the delivery, targeted with the emulator's `after`):

| entry point           | calls                                                                  |
|-----------------------|------------------------------------------------------------------------|
| handle_signal, direct | GetTask#0 (the task), run.GetService, run.GetRevision, then the claim    |
|                       | (CreateTask#0: its rung), then RunTask; + run.ListServices when the      |
|                       | service comes from the URL                                               |
| the same, fix check   | GetTask#0, the claim: GetTask#1 (fix marker), CreateTask#0 (rung),       |
|   `none`              | CreateTask#1 (fix marker), then RunTask                                  |
| handle_signal, queued | GetTask#0, run.GetService, run.GetRevision, CreateTask#0 (the job)       |
| run_job               | GetTask#0 (the job, as the redrive queue holds it), GetTask#1 (the task),|
|                       | run.GetService, run.GetRevision, the claim (CreateTask#0), RunTask       |
| deploy sweep, direct  | the plan (ListTasks#0), then ListTasks#1, GetTask#0 (fresh read), the    |
|                       | claim (CreateTask#0), RunTask                                            |
| deploy sweep, queued  | the plan (ListTasks#0, GetQueue#0: the redrive queue's rate), GetTask#0  |
|                       | (the sweep's checkpoint, best effort), ListTasks#1, CreateTask#0         |
| deploy sweep,         | the plan (ListTasks#0, GetQueue#0: the queue's rate), ListTasks#1,       |
|   re-create           | GetTask#0 (the original, FULL view), the claim (CreateTask#0),           |
|                       | CreateTask#1 (the copy), DeleteTask#0 (the original)                     |

(ListServices is exercised through direct mode only: the same adapter serves every entry point,
and its host cache means each case needs a fresh instance, which is a server start.)

What is "right", per code (translate and decide.for_error, asserted exactly below):
- PERMISSION_DENIED: outcome PERMISSION_DENIED (ERROR), acknowledged (handle_signal 2xx, run_job
  200): a missing grant does not heal by retrying, and retrying burns the RunTask quota.
- UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL: transient. Idempotent reads and
  CreateTask (explicit name) are retried within REDRIVE_RETRY_DEADLINE_S, so one fault is absorbed.
  RunTask is never retried: after UNAVAILABLE, DEADLINE_EXCEEDED or INTERNAL its outcome is
  unknown (the claim stays with the delivery, which waits until the task's state can tell); after
  RESOURCE_EXHAUSTED it provably did not dispatch (an end marker frees the next attempt). A fault
  that outlasts the retries is FAILED (ERROR) and the platform delivers the work again:
  handle_signal answers 500, run_job 429 for quota and 503 otherwise.
- A best-effort call (the queued sweep's checkpoint read, the plan's GetQueue) never fails the
  work: the sweep starts from the first page instead, the plan says the rate is not known.
- The plan's own listing: a fault of it alone (once) leaves the plan saying the queue could not
  be counted, and the sweep goes on; a persistent fault is the sweep's listing's too.
- Re-create: a copy is withdrawn when the original cannot be deleted (before the copy is due);
  when neither can be done the copy stays (FAILED, whatever the code) and the redelivery finishes
  the re-create. The work then runs exactly once: the copy's request reaches the target once.

Every case then delivers the same work again with the faults cleared, as often as the answers ask
for it (what Pub/Sub or the redrive queue does after a non-2xx; DEFERRED while a claimed attempt's
outcome is unknown), and checks that the task was force-run exactly once over all deliveries
(queued mode: exactly one job exists, nothing run).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from redrive.core.jobs import job_name
from redrive.core.names import QueueName, TaskName
from redrive_tools.devserver import wait_for
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
SWEEP_RC_SERVICE_ID = "fm-sweep-rc"
URL_SERVICE = f"{PARENT}/services/fm-by-url"
RETRY_DEADLINE_S = "0.5"
"""Small, so a persistent fault reaches FAILED quickly; large enough for three attempts."""
RPC_TIMEOUT_S = "0.5"
"""A claimed RunTask whose outcome is unknown is judged after twice this (plus the claim's
one-second timestamp): redeliveries within that time are DEFERRED."""
REDELIVERIES = 12
REDELIVERY_PAUSE_S = 0.5
REDRIVE_QUEUE_ID = "fm-redrive"


@dataclass(frozen=True)
class Call:
    """One call of a delivery: the RPC method and how many calls of that method come first."""

    method: str
    after: int = 0
    label: str = ""
    best_effort: bool = False
    plan: bool = False
    """The plan's call: one fault of it changes nothing; a persistent one is the sweep's too."""

    @property
    def name(self) -> str:
        return self.label or (self.method if not self.after else f"{self.method}#{self.after}")


CLAIM = [Call("CreateTask", 0, "claim.rung")]
"""The claim with time-bound fix evidence (a revision, a deploy): one rung marker."""
CLAIM_UNTIMED = [
    Call("GetTask", 1, "claim.fix-marker-read"),
    Call("CreateTask", 0, "claim.rung"),
    Call("CreateTask", 1, "claim.fix-marker"),
]
"""With REDRIVE_FIX_CHECK=none the fix marker is read first and written after the rung."""
PLAN_LIST = Call("ListTasks", 0, "plan.count", plan=True)
PLAN_RATE = Call("GetQueue", 0, "plan.rate", best_effort=True)
"""A sweep's plan: its listing pass, and the rate it reads (a re-create queue's, the redrive
queue's in queued mode)."""
CALLS = {
    "direct": [
        Call("GetTask"),
        Call("run.GetService"),
        Call("run.GetRevision"),
        *CLAIM,
        Call("RunTask"),
        Call("run.ListServices"),
    ],
    "direct_none": [Call("GetTask"), *CLAIM_UNTIMED, Call("RunTask")],
    "queued": [
        Call("GetTask"),
        Call("run.GetService"),
        Call("run.GetRevision"),
        Call("CreateTask"),
    ],
    "run_job": [
        Call("GetTask", 0, "job.verify"),
        Call("GetTask", 1, "GetTask"),
        Call("run.GetService"),
        Call("run.GetRevision"),
        *CLAIM,
        Call("RunTask"),
    ],
    # A deploy signal in direct mode: the plan counts the queue; the sweep lists it, reads each
    # task again, claims.
    "sweep": [
        PLAN_LIST,
        Call("ListTasks", 1, "ListTasks"),
        Call("GetTask", 0, "GetTask"),
        *CLAIM,
        Call("RunTask"),
    ],
    # A re-create sweep (the queue's method is recreate): the plan (the count, the queue's own
    # rate), the FULL read, the claim, the copy, the original's deletion.
    "sweep_recreate": [
        PLAN_LIST,
        PLAN_RATE,
        Call("ListTasks", 1, "ListTasks"),
        Call("GetTask", 0, "original-read"),
        *CLAIM,
        Call("CreateTask", 1, "copy"),
        Call("DeleteTask", 0, "original-delete"),
    ],
    # The same in queued mode: the plan (the count, the redrive queue's rate), the checkpoint
    # probe, ListTasks, one CreateTask per task.
    "sweep_queued": [
        PLAN_LIST,
        PLAN_RATE,
        Call("GetTask", 0, "checkpoint-read", best_effort=True),
        Call("ListTasks", 1, "ListTasks"),
        Call("CreateTask"),
    ],
}
SUCCESS = {
    "direct": "DISPATCHED",
    "direct_none": "DISPATCHED",
    "queued": "QUEUED",
    "run_job": "DISPATCHED",
    "sweep": "DISPATCHED",
    "sweep_queued": "QUEUED",
    "sweep_recreate": "RECREATED",
}


@dataclass(frozen=True)
class Expected:
    outcome: str
    status: int


def expected(entry: str, call: Call, code: grpc.StatusCode, times: int) -> Expected:
    """The rule of the module docstring, as a function of the case."""
    if call.best_effort or (call.plan and times == ONCE):
        return Expected(SUCCESS[entry], 200)
    if entry == "sweep_recreate" and call.method == "DeleteTask" and times == ALWAYS:
        # Neither the original deleted nor the copy withdrawn: the copy stays, delivered again.
        return Expected("FAILED", 500)
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return Expected("PERMISSION_DENIED", 200)
    if times == ONCE and call.method != "RunTask":
        return Expected(SUCCESS[entry], 200)
    if entry == "run_job":
        return Expected("FAILED", 429 if code is grpc.StatusCode.RESOURCE_EXHAUSTED else 503)
    return Expected("FAILED", 500)


@dataclass(frozen=True)
class Case:
    entry: str
    call: Call
    code: grpc.StatusCode
    times: int


CASES = [
    pytest.param(Case(entry, call, code, times), id=f"{entry}-{call.name}-{code.name}-{label}")
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
        "fmsweeprc": stack.queue("fmsweeprc"),
        # Paused: queued-mode jobs stay put; run_job is driven by posting a job it holds.
        "redrive": stack.queue(REDRIVE_QUEUE_ID, paused=True),
    }


def base_env(stack: Stack, queues: dict[str, str]) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": ",".join(
            queues[q] for q in ("fm", "fmurl", "fmsweep", "fmsweepq", "fmsweeprc")
        ),
        "REDRIVE_SERVICE_MAP": json.dumps(
            {
                SERVICE: [queues["fm"]],
                f"{PARENT}/services/{SWEEP_SERVICE_ID}": [queues["fmsweep"]],
                f"{PARENT}/services/{SWEEP_Q_SERVICE_ID}": [queues["fmsweepq"]],
                f"{PARENT}/services/{SWEEP_RC_SERVICE_ID}": [queues["fmsweeprc"]],
            }
        ),
        "REDRIVE_QUEUE_METHODS": json.dumps({queues["fmsweeprc"]: "recreate"}),
        # Copies are due 3 s after they are made: time to retry a failed DeleteTask, then to
        # withdraw the copy.
        "REDRIVE_RECREATE_DELAY_S": "3",
        "REDRIVE_RETRY_DEADLINE_S": RETRY_DEADLINE_S,
        "REDRIVE_RPC_TIMEOUT_S": RPC_TIMEOUT_S,
        "REDRIVE_DIRECT_RATE_PER_S": "100",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
    }


@pytest.fixture(scope="module")
def servers(
    stack: Stack, queues: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FunctionServer]]:
    logs = tmp_path_factory.mktemp("faults")
    env = base_env(stack, queues)
    with direct_and_queued_servers(env, env, queues["redrive"], logs) as started:
        untimed = {**env, "REDRIVE_FIX_CHECK": "none"}
        with function_server("handle_signal", "cloudevent", untimed, logs / "none.log") as none:
            yield {**started, "direct_none": none}


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

    def __init__(
        self, stack: Stack, entry: str, server: FunctionServer, task: str, message_id: str
    ) -> None:
        self.entry = entry
        self.server = server
        self.task = task
        self.message_id = message_id
        self.published = now_rfc3339()
        self.seen = 0
        if entry == "run_job":
            # The job as the redrive queue holds it (paused, so it waits): run_job believes a
            # request only when the queue holds that job with that body.
            self.body = job_body(task, self.published)
            queue = f"{PARENT}/queues/{REDRIVE_QUEUE_ID}"
            stack.client.create_task(
                request={
                    "parent": queue,
                    "task": {
                        "name": f"{queue}/tasks/{message_id}",
                        "http_request": {
                            "url": server.url,
                            "http_method": "POST",
                            "body": self.body,
                        },
                    },
                }
            )

    def send(self) -> tuple[int, list[dict[str, Any]]]:
        """Deliver once; the HTTP status and the outcome lines this delivery added."""
        if self.entry == "run_job":
            headers = {
                "X-CloudTasks-QueueName": REDRIVE_QUEUE_ID,
                "X-CloudTasks-TaskName": self.message_id,
            }
            status = httpx.post(
                self.server.url, content=self.body, headers=headers, timeout=30
            ).status_code
            lines = self.server.outcomes(task=self.task)
        else:
            payload = dead_letter(self.task)
            if self.entry.startswith("sweep"):
                service = {
                    "sweep": SWEEP_SERVICE_ID,
                    "sweep_queued": SWEEP_Q_SERVICE_ID,
                    "sweep_recreate": SWEEP_RC_SERVICE_ID,
                }[self.entry]
                deployed = {"service": service, "at": self.published}
                payload = json.dumps({"deployed": deployed}).encode()
            status = post_signal(self.server, payload, self.message_id, self.published).status_code
            lines = self.server.outcomes(signal__message_id=self.message_id)
        new, self.seen = lines[self.seen :], len(lines)
        return status, new

    def redeliver(self) -> list[tuple[int, list[dict[str, Any]]]]:
        """Deliver again as the platform does: once, then as long as the answer is not 2xx."""
        answers = [self.send()]
        while answers[-1][0] >= 300 and len(answers) < REDELIVERIES:
            time.sleep(REDELIVERY_PAUSE_S)
            answers.append(self.send())
        return answers


def run_case(stack: Stack, queues: dict[str, str], server: FunctionServer, case: Case) -> None:
    entry, call, code, times = case.entry, case.call, case.code, case.times
    n = next(_ids)
    by_url = call.method == "run.ListServices"
    sweeps = {"sweep": "fmsweep", "sweep_queued": "fmsweepq", "sweep_recreate": "fmsweeprc"}
    queue = queues["fmurl" if by_url else sweeps.get(entry, "fm")]
    path = f"/fm/{entry}/{n}"
    task = stack.failed_task(queue, f"fm-{entry}-{n}", path)
    if by_url:
        stack.emu.cloudrun.deploy(URL_SERVICE, uri=stack.target.url(""))
    else:
        stack.emu.cloudrun.deploy(SERVICE)  # the fix is live after the failed attempt...
    stack.target.statuses[path] = 200  # ...and the application now succeeds
    want = expected(entry, call, code, times)
    delivery = Delivery(stack, entry, server, task, f"fm-{n}")

    calls_before = stack.emu.control.call_counts().get(call.method, 0)
    stack.emu.control.fail(call.method, code, times=times, after=call.after)
    try:
        status, lines = delivery.send()
    finally:
        stack.emu.control.clear()
    made = stack.emu.control.call_counts().get(call.method, 0) - calls_before
    assert made > call.after, f"{call.name} never called ({made} call(s) of {call.method})"

    assert status == want.status, (status, lines)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["outcome"] == want.outcome, line
    if want.outcome in ("FAILED", "PERMISSION_DENIED"):
        assert line["severity"] == "ERROR"
        assert code.name in line["reason"] or call.method == "RunTask", line["reason"]
    if entry in ("direct", "direct_none", "queued"):
        (summary,) = server.summaries(delivery.message_id)
        assert summary["outcome"] == want.outcome

    # The platform delivers again after a non-2xx (and a fixed grant lets the work through):
    # the task is force-run exactly once over all deliveries, never lost, never twice.
    answers = delivery.redeliver()
    final_status, final = answers[-1]
    assert final_status == 200, answers
    waits = [x["outcome"] for _, lines in answers[:-1] for x in lines]
    assert set(waits) <= {"DEFERRED"}, answers  # only "not yet" before the work settles
    sweep = entry.startswith("sweep")
    done = want.outcome == SUCCESS[entry]
    if sweep and done and entry in ("sweep", "sweep_recreate"):
        assert final == [], final  # the task is done (or deleted, its copy waiting): nothing
    elif sweep and done:
        assert [x["outcome"] for x in final] == ["SKIPPED_DUPLICATE"], final  # its job waits
    elif sweep:
        assert [x["outcome"] for x in final] == [SUCCESS[entry]], answers
    elif done:
        settled = (
            {"SKIPPED_DUPLICATE"} if entry == "queued" else {"NOT_FOUND", "SKIPPED_ALREADY_RETRIED"}
        )
        assert len(final) == 1 and final[0]["outcome"] in settled, answers
    else:
        assert len(final) == 1 and final[0]["outcome"] == SUCCESS[entry], answers
    if entry in ("queued", "sweep_queued"):
        job = job_name(QueueName.parse(queues["redrive"]), TaskName.parse(task), 1)
        assert stack.get(job) is not None, "the redrive job exists"
        assert {x["job"] for x in server.outcomes(task=task)} - {None} == {job}
        assert ok_runs(stack, task) == 0  # the job waits in the (paused) redrive queue
        if entry == "sweep_queued":
            stack.client.delete_task(name=task)  # the next case's sweep lists only its own task
    elif entry == "sweep_recreate":
        copies = {x["run"]["copy"] for x in server.outcomes(task=task) if x.get("run")}
        (copy,) = copies
        assert stack.gone(task) and ok_runs(stack, task) == 0  # re-created, never RunTask
        wait_for(lambda: stack.gone(copy), "the copy to run and complete")
        hits = [r for r in stack.target.requests if r[0].split("?")[0] == path]
        said = [(x["outcome"], x["reason"][:160]) for x in server.outcomes(task=task)]
        assert len(hits) == 2, (hits, said)  # the failed first attempt, then the copy: once
    else:
        assert ok_runs(stack, task) == 1


@pytest.mark.parametrize("case", CASES)
def test_fault(stack, queues, servers, tmp_path, case):
    if case.call.method == "run.ListServices":
        # A fresh instance: the host → service cache would otherwise skip ListServices.
        env = base_env(stack, queues)
        with function_server("handle_signal", "cloudevent", env, tmp_path / "fn.log") as fresh:
            run_case(stack, queues, fresh, case)
        return
    server = {"sweep": "direct", "sweep_recreate": "direct", "sweep_queued": "queued"}.get(
        case.entry, case.entry
    )
    run_case(stack, queues, servers[server], case)


def test_matrix_covers_every_call_and_code():
    """The matrix is the product it claims to be (a guard against a case silently dropped)."""
    seen = {c.values[0] for c in CASES}
    assert len(seen) == sum(len(calls) for calls in CALLS.values()) * len(CODES) * 2
    assert {c.code for c in seen} == set(CODES)  # type: ignore[attr-defined]
    claim_calls = {c.call.label for c in seen if c.call.label.startswith("claim.")}  # type: ignore[attr-defined]
    assert claim_calls == {"claim.fix-marker-read", "claim.rung", "claim.fix-marker"}
