"""Hostile input through handle_signal and run_job: no crash, no 5xx for bad input, an outcome with
a reason for everything, and not one RunTask outside the allowlist.

The bulk goes in-process through functions-framework's own Flask app (`create_app(...)
.test_client()`: the real request parsing and CloudEvent conversion) against a real emulator; a
sample goes over real HTTP to functions-framework servers. Size: REDRIVE_HOSTILE_N payloads in all
(default 5,000; `.ci/run` sets 100000).

A real task that has failed exists in the allowed queue and in a forbidden one, with no fix check
(REDRIVE_FIX_CHECK=none): nothing but the allowlist stands between a hostile name and a RunTask of
the forbidden task, so a breach would show in the emulator's run log.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from redrive import runtime
from redrive.adapters.log import OutcomeLog
from redrive.core.config import Settings
from redrive.core.names import InvalidName, TaskName
from redrive.runtime import Runtime
from redrive_tools.devserver import free_port
from tests.integration.helpers import ROOT, FunctionServer, Stack, now_rfc3339
from tests.stress import payloads
from tests.stress.payloads import ALLOWED_QUEUE, FORBIDDEN_QUEUE, REAL_TASK, Gen

TOTAL = int(os.environ.get("REDRIVE_HOSTILE_N", "5000"))
HTTP_SAMPLE = 300
MAX_BYTES = 65536
REDRIVE_QUEUE = "projects/demo/locations/local1/queues/hostile-redrive"
BAD = {"FAILED", "PERMISSION_DENIED"}
"""Outcomes that would mean redrive blamed the platform for bad input (the emulator is healthy)."""
LATER = {"DEFERRED"}
"""The one outcome that may make a valid signal come back (5xx): the real task's attempt, forced
by an earlier payload, was still running."""


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, str]:
    for queue in (ALLOWED_QUEUE, FORBIDDEN_QUEUE):
        stack.queue(queue.rsplit("/", 1)[1])
        stack.failed_task(queue, REAL_TASK, f"/hostile/{queue.rsplit('/', 1)[1]}")
    stack.queue("hostile-redrive", paused=True)
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": ALLOWED_QUEUE,
        "REDRIVE_FIX_CHECK": "none",
        "REDRIVE_DIRECT_RATE_PER_S": "100000",
        "REDRIVE_MAX_PAYLOAD_BYTES": str(MAX_BYTES),
        # Generous: a healthy but busy emulator (2 shared cores) must not turn into FAILED.
        "REDRIVE_RETRY_DEADLINE_S": "5",
    }


def queued(env: dict[str, str], job_url: str = "http://127.0.0.1:9/") -> dict[str, str]:
    return {**env, "REDRIVE_QUEUE": REDRIVE_QUEUE, "REDRIVE_JOB_URL": job_url}


class Recorder:
    """The instance's runtime with its outcome log in memory; reads the lines each request adds."""

    def __init__(self, env: dict[str, str]) -> None:
        self.stream = io.StringIO()
        self.rt = Runtime(Settings.from_env(env), log=OutcomeLog(self.stream))

    def install(self) -> None:
        runtime.reset_runtime()
        runtime._runtime = self.rt  # what get_runtime() hands to main.py's entry points

    def new_lines(self) -> list[dict[str, Any]]:
        # Drain the buffer: re-reading a log that grows with every request is quadratic, and at
        # 100,000 payloads its copies alone outlast the test's timeout.
        chunk = self.stream.getvalue()
        self.stream.seek(0)
        self.stream.truncate()
        return [json.loads(line) for line in chunk.splitlines()]  # every line is JSON


def app_client(target: str, signature: str) -> Any:
    import functions_framework

    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target=target, source=str(ROOT / "main.py"), signature_type=signature
    )
    return app.test_client()


@dataclass
class Tally:
    statuses: Counter[int]
    outcomes: Counter[str]

    @classmethod
    def empty(cls) -> Tally:
        return cls(Counter(), Counter())


_SETTLED = {"SKIPPED_ALREADY_RETRIED", "NOT_FOUND", "SKIPPED_NOT_ALLOWED", "INVALID_SIGNAL"}
"""Other decisions that may share a message with a DEFERRED one."""


def check_lines(lines: list[dict[str, Any]], tally: Tally) -> None:
    outcomes = [x for x in lines if x.get("event") == "redrive.outcome"]
    for line in outcomes:
        tally.outcomes[line["outcome"]] += 1
        assert line["outcome"] not in BAD, line
        assert line["reason"], line
        task = line.get("task")
        if task is not None and not task.startswith(ALLOWED_QUEUE + "/tasks/"):
            # Refused for its queue, or before that (a forged job, a time in the future).
            assert line["outcome"] in ("SKIPPED_NOT_ALLOWED", "INVALID_SIGNAL"), line


def assert_no_run_outside_allowlist(stack: Stack) -> None:
    for record in stack.emu.control.run_log():
        try:
            queue = str(TaskName.parse(record.task).queue_name)
        except InvalidName:
            queue = None
        assert queue == ALLOWED_QUEUE, record


def post_event(client: Any, gen: Gen, message_id: str) -> Any:
    data, is_envelope = gen.envelope(MAX_BYTES)
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/demo/topics/hostile",
        "ce-id": message_id,
        "ce-time": now_rfc3339(),
        "Content-Type": "application/json",
    }
    pick = gen.rng.randrange(10)
    if pick == 0 and is_envelope:
        # A raw Pub/Sub push body: functions-framework's conversion path.
        return client.post("/projects/demo/topics/hostile", json=data)
    if pick == 1:
        body = gen.rng.randbytes(gen.rng.randint(0, 300))  # not even JSON, CloudEvent headers
        return client.post("/", data=body, headers=headers)
    return client.post("/", data=json.dumps(data), headers=headers)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["direct", "queued"])
def test_handle_signal_in_process(stack, world, mode):
    count = TOTAL * 2 // 5 if mode == "direct" else TOTAL // 10
    recorder = Recorder(world if mode == "direct" else queued(world))
    recorder.install()
    client = app_client("handle_signal", "cloudevent")
    tally = Tally.empty()
    for i, gen in enumerate(payloads.stream(seed=1 if mode == "direct" else 2, count=count)):
        response = post_event(client, gen, f"h-{mode}-{i}")
        tally.statuses[response.status_code] += 1
        lines = recorder.new_lines()
        if response.status_code >= 500:
            redelivered = {x["outcome"] for x in lines if x.get("event") == "redrive.outcome"}
            assert redelivered and redelivered <= LATER | _SETTLED, (gen.seed, lines)
        if response.status_code == 200:
            assert any(x.get("event") == "redrive.signal" for x in lines), (gen.seed, lines)
        check_lines(lines, tally)
    assert_no_run_outside_allowlist(stack)
    # The generator reached every interesting answer, or the test proves less than it claims.
    assert tally.outcomes["INVALID_SIGNAL"] > 0 and tally.outcomes["SKIPPED_NOT_ALLOWED"] > 0
    assert tally.statuses[200] > count // 2, tally


@pytest.mark.slow
def test_run_job_in_process(stack, world):
    count = TOTAL - TOTAL * 2 // 5 - TOTAL // 10
    recorder = Recorder(queued(world))
    recorder.install()
    client = app_client("run_job", "http")
    tally = Tally.empty()
    for i, gen in enumerate(payloads.stream(seed=3, count=count)):
        body = gen.job_body(now_rfc3339())
        header_pick = gen.rng.randrange(10)
        headers = {"Content-Type": "application/json"}
        if header_pick < 8:
            headers["X-CloudTasks-QueueName"] = "hostile-redrive"
            # Mostly a live job of the redrive queue holding exactly this body; else a job name
            # the queue does not hold (or none): a forged request.
            if header_pick < 6:
                headers["X-CloudTasks-TaskName"] = live_job(stack, f"hostile-job-{i}", body)
            elif header_pick == 6:
                headers["X-CloudTasks-TaskName"] = f"forged-{i}"
        elif header_pick == 8:
            headers["X-CloudTasks-QueueName"] = gen.rng.choice(["hostile", "forbidden", "", "ø"])
        response = client.post("/", data=body, headers=headers)
        tally.statuses[response.status_code] += 1
        lines = recorder.new_lines()
        check_lines(lines, tally)
        assert len([x for x in lines if x.get("event") == "redrive.outcome"]) == 1, lines
        (line,) = lines
        if header_pick < 6:
            if response.status_code != 200:
                assert line["outcome"] in LATER, (gen.seed, line)
            elif line["outcome"] == "INVALID_SIGNAL":
                # Malformed, or well-formed with a failure time in the future.
                assert "invalid redrive job" in line["reason"] or "future" in line["reason"], line
        elif header_pick < 8:
            # A job the queue does not hold: refused, unless the body is no job at all (then 200,
            # so that a queue would not retry it).
            assert line["outcome"] == "INVALID_SIGNAL", line
            assert response.status_code in (200, 403), (gen.seed, response.data[:300])
            if response.status_code == 200:
                assert "invalid redrive job" in line["reason"], line
        else:
            # Not from the redrive queue: refused before the body is even read as a job.
            assert response.status_code == 403, (gen.seed, response.data[:300])
            assert line["outcome"] == "INVALID_SIGNAL"
    assert_no_run_outside_allowlist(stack)
    assert tally.outcomes["INVALID_SIGNAL"] > 0 and tally.outcomes["SKIPPED_NOT_ALLOWED"] > 0
    assert tally.statuses[403] > 0


def live_job(stack: Stack, job_id: str, body: bytes) -> str:
    """Put a job holding `body` in the (paused) redrive queue; its id for X-CloudTasks-TaskName."""
    stack.client.create_task(
        request={
            "parent": REDRIVE_QUEUE,
            "task": {
                "name": f"{REDRIVE_QUEUE}/tasks/{job_id}",
                "http_request": {"url": "http://127.0.0.1:9/", "http_method": "POST", "body": body},
            },
        }
    )
    return job_id


@pytest.fixture(scope="module")
def http_servers(
    stack: Stack, world: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FunctionServer]]:
    logs = tmp_path_factory.mktemp("hostile")
    job_port = free_port()
    started: dict[str, FunctionServer] = {}
    try:
        started["signal"] = FunctionServer("handle_signal", "cloudevent", world, logs / "s.log")
        started["job"] = FunctionServer(
            "run_job",
            "http",
            queued(world, f"http://127.0.0.1:{job_port}/"),
            logs / "j.log",
            port=job_port,
        )
        yield started
    finally:
        for server in started.values():
            server.stop()


def test_sample_over_real_http(stack, http_servers):
    signal_fn, job_fn = http_servers["signal"], http_servers["job"]
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=signal_fn.url, timeout=30) as client:
        for i, gen in enumerate(payloads.stream(seed=4, count=HTTP_SAMPLE)):
            data, _ = gen.envelope(MAX_BYTES)
            response = client.post(
                "/",
                content=json.dumps(data),
                headers={
                    "ce-specversion": "1.0",
                    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                    "ce-source": "//pubsub.googleapis.com/projects/demo/topics/hostile",
                    "ce-id": f"http-{i}",
                    "Content-Type": "application/json",
                },
            )
            statuses[response.status_code] += 1
            assert response.status_code < 500, (gen.seed, response.text[:300])
    with httpx.Client(base_url=job_fn.url, timeout=30) as client:
        for i, gen in enumerate(payloads.stream(seed=5, count=HTTP_SAMPLE)):
            body = gen.job_body(now_rfc3339())
            response = client.post(
                "/",
                content=body,
                headers={
                    "X-CloudTasks-QueueName": "hostile-redrive",
                    "X-CloudTasks-TaskName": live_job(stack, f"hostile-http-{i}", body),
                },
            )
            statuses[response.status_code] += 1
            outcome = response.json()["outcome"]
            assert response.status_code == 200 or outcome in LATER, (gen.seed, response.text)
    tally = Tally.empty()
    check_lines(signal_fn.lines() + job_fn.lines(), tally)
    assert tally.outcomes["INVALID_SIGNAL"] > 0
    assert_no_run_outside_allowlist(stack)
    # Both servers are still up and answering after all of it.
    assert signal_fn.process.poll() is None and job_fn.process.poll() is None


@pytest.mark.xfail(
    strict=True,
    reason="functions-framework 3.10.2 crashes (500) converting a non-object JSON body sent "
    "without CloudEvent headers, before redrive runs; Pub/Sub and Eventarc never send one",
)
def test_raw_non_object_json_body(world):
    Recorder(world).install()
    client = app_client("handle_signal", "cloudevent")
    response = client.post("/", data="[1, 2]", headers={"Content-Type": "application/json"})
    assert response.status_code < 500
