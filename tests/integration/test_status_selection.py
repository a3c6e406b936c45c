"""Select by the error that was fixed, through the real servers: a deploy message naming the
statuses it fixed reaches handle_signal under functions-framework, which sweeps the emulator's
queue and re-drives only the tasks whose last attempt failed with one of them — in direct mode
(RunTask), and in queued mode (one job each, run by run_job under its own functions-framework).
A 404, an unreachable target and a 502 outside the list are left to their own retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import (
    FunctionServer,
    Stack,
    function_server,
    now_rfc3339,
    post_signal,
)


def runs_of(stack: Stack, task: str) -> int:
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


class Statuses:
    """One queue whose tasks' last attempts failed with 500, 503, 502, 404 and no answer."""

    def __init__(self, stack: Stack, queue_id: str) -> None:
        self.queue = stack.queue(queue_id)
        p = f"/{queue_id}"
        self.tasks: dict[str, str] = {}
        for label, status in (("500", 500), ("503", 503), ("502", 502), ("404", 404)):
            stack.target.statuses[f"{p}/{label}"] = status
            self.tasks[label] = stack.failed_task(self.queue, f"t-{label}", f"{p}/{label}")
        # Nobody listens on this port: the attempt fails without an HTTP answer (UNKNOWN).
        unreachable = f"{self.queue}/tasks/t-unreachable"
        stack.client.create_task(
            request={
                "parent": self.queue,
                "task": {
                    "name": unreachable,
                    "http_request": {"url": f"http://127.0.0.1:{free_port()}/x"},
                },
            }
        )
        self.tasks["unreachable"] = unreachable
        wait_for(
            lambda: (
                (t := stack.get(self.tasks["unreachable"])) is not None
                and "response_status" in t.last_attempt
            ),
            "the unreachable task's first attempt",
        )
        for label in ("500", "503", "502", "404"):
            stack.target.statuses[f"{p}/{label}"] = 200  # the fix (a 404 would stay a 404)

    def deploy(self, statuses: str | None) -> bytes:
        body: dict[str, object] = {"queues": [self.queue], "at": now_rfc3339()}
        if statuses is not None:
            body["statuses"] = statuses
        return json.dumps({"deployed": body}).encode()


def env_for(stack: Stack, queue: str, **extra: str) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": queue,
        "REDRIVE_FIX_CHECK": "none",
        "REDRIVE_RETRY_DEADLINE_S": "2",
        "REDRIVE_DIRECT_RATE_PER_S": "100",
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        **extra,
    }


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path


def test_direct_sweep_redrives_only_the_statuses_the_deploy_fixed(stack, logs):
    mix = Statuses(stack, "stdirect")
    with function_server(
        "handle_signal", "cloudevent", env_for(stack, mix.queue), logs / "signal.log"
    ) as fn:
        answer = post_signal(fn, mix.deploy("500, 503,UNAVAILABLE"), "st-d-1", now_rfc3339())
        assert answer.status_code == 200, answer.text
        lines = {x["task"]: x for x in fn.outcomes(signal__message_id="st-d-1") if x["task"]}
        (sweep,) = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
    assert set(lines) == {mix.tasks["500"], mix.tasks["503"]}
    assert {x["outcome"] for x in lines.values()} == {"DISPATCHED"}
    assert sweep["statuses"] == "500,503,UNAVAILABLE"
    assert sweep["skipped"] == {"OTHER_STATUS": 3} and sweep["selected"] == 2
    for label in ("500", "503"):
        wait_for(partial(stack.gone, mix.tasks[label]), f"the {label} task to complete")
        assert runs_of(stack, mix.tasks[label]) == 1
    for label in ("502", "404", "unreachable"):
        assert runs_of(stack, mix.tasks[label]) == 0 and stack.get(mix.tasks[label]) is not None


def test_the_configured_default_applies_when_the_deploy_names_none(stack, logs):
    mix = Statuses(stack, "stdefault")
    env = env_for(stack, mix.queue, REDRIVE_SWEEP_STATUSES="5xx", REDRIVE_DRY_RUN="true")
    with function_server("handle_signal", "cloudevent", env, logs / "signal.log") as fn:
        post_signal(fn, mix.deploy(None), "st-def-1", now_rfc3339())
        # A deploy that names its own list wins over the default (`any`: every failure).
        post_signal(fn, mix.deploy("any"), "st-def-2", now_rfc3339())
        first = {x["task"] for x in fn.outcomes(signal__message_id="st-def-1") if x["task"]}
        second = {x["task"] for x in fn.outcomes(signal__message_id="st-def-2") if x["task"]}
    assert first == {mix.tasks[k] for k in ("500", "503", "502")}
    assert second == set(mix.tasks.values())


def test_a_bad_statuses_field_is_an_invalid_signal_that_runs_nothing(stack, logs):
    mix = Statuses(stack, "stbad")
    with function_server(
        "handle_signal", "cloudevent", env_for(stack, mix.queue), logs / "signal.log"
    ) as fn:
        answer = post_signal(fn, mix.deploy("5xx,teapot"), "st-bad-1", now_rfc3339())
        (line,) = fn.outcomes(signal__message_id="st-bad-1")
    assert answer.status_code == 200  # acknowledged: a bad message stays bad
    assert line["outcome"] == "INVALID_SIGNAL"
    assert "deployed.statuses: 'teapot' is not an HTTP status" in line["reason"]
    assert sum(runs_of(stack, t) for t in mix.tasks.values()) == 0


@pytest.fixture
def queued(
    stack: Stack, tmp_path: Path
) -> Iterator[tuple[Statuses, str, FunctionServer, FunctionServer]]:
    mix = Statuses(stack, "stqueued")
    redrive = stack.queue("redrive-st", min_backoff_s=0.2, paused=True)
    job_port = free_port()
    env = env_for(
        stack,
        mix.queue,
        REDRIVE_QUEUE=redrive,
        REDRIVE_JOB_URL=f"http://127.0.0.1:{job_port}/",
    )
    job = FunctionServer("run_job", "http", env, tmp_path / "run_job.log", port=job_port)
    signal = FunctionServer("handle_signal", "cloudevent", env, tmp_path / "signal.log")
    try:
        yield mix, redrive, signal, job
    finally:
        signal.stop()
        job.stop()


def test_queued_sweep_enqueues_only_the_statuses_the_deploy_fixed(stack, queued):
    mix, redrive, signal_fn, job_fn = queued
    answer = post_signal(signal_fn, mix.deploy("5xx"), "st-q-1", now_rfc3339())
    assert answer.status_code == 200, answer.text
    lines = {x["task"]: x for x in signal_fn.outcomes(signal__message_id="st-q-1") if x["task"]}
    chosen = {mix.tasks[k] for k in ("500", "503", "502")}
    assert set(lines) == chosen and {x["outcome"] for x in lines.values()} == {"QUEUED"}
    jobs = list(stack.client.list_tasks(request={"parent": redrive}))
    assert len(jobs) == 3
    (sweep,) = [x for x in signal_fn.lines() if x.get("event") == "redrive.sweep"]
    assert sweep["statuses"] == "5xx" and sweep["skipped"] == {"OTHER_STATUS": 2}

    stack.client.resume_queue(request={"name": redrive})
    wait_for(lambda: len(job_fn.outcomes(outcome="DISPATCHED")) == 3, "run_job's three runs")
    for task in chosen:
        wait_for(partial(stack.gone, task), "the re-driven task to complete")
        assert runs_of(stack, task) == 1
    for label in ("404", "unreachable"):
        assert runs_of(stack, mix.tasks[label]) == 0 and stack.get(mix.tasks[label]) is not None
