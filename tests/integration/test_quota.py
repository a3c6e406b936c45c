"""redrive against the RunTask quota the emulator enforces (60 a minute per project, production
value, emulated time), not against injected faults: direct mode (handle_signal) and queued mode
(the redrive queue dispatching run_job faster than the quota allows).

What must hold, as in production: a RunTask refused for quota is reported FAILED with the quota as
reason (handle_signal 500, run_job 429) so the platform delivers the work again; the delivery
again re-drives exactly the tasks that were not run; no task is force-run twice; and the emulator
never lets more than 60 calls through in any 60 seconds.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from cloudtasks_emulator import Quotas
from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import PARENT, FunctionServer, Stack, now_rfc3339, post_signal

LIMIT = 60
TIME_SCALE = 10.0
"""A minute of emulated time lasts 6 real seconds, so the quota frees up within a test."""
SERVICE = f"{PARENT}/services/quota-app"


def busiest_minute(times_s: list[float]) -> int:
    ordered = sorted(times_s)
    return max((bisect_left(ordered, t + 60.0) - i for i, t in enumerate(ordered)), default=0)


def ok_runs(stack: Stack) -> Counter[str]:
    return Counter(r.task for r in stack.emu.control.run_log() if r.code.name == "OK")


def refused_runs(stack: Stack) -> list[Any]:
    return [r for r in stack.emu.control.run_log() if r.code.name == "RESOURCE_EXHAUSTED"]


def signal_body(names: list[str]) -> bytes:
    return json.dumps({"tasks": [{"task": n, "dispatch_count": 1} for n in names]}).encode()


@pytest.fixture
def stack() -> Iterator[Stack]:
    world = Stack(time_scale=TIME_SCALE, quotas=Quotas())  # production quotas
    try:
        yield world
    finally:
        world.stop()


def failing_tasks(stack: Stack, queue: str, count: int) -> list[str]:
    """`count` tasks whose first attempt failed; then the fix is deployed and the app answers."""
    names = [stack.failed_task(queue, f"t{i}", "/quota-app") for i in range(count)]
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses["/quota-app"] = 200
    return names


def test_direct_mode_over_the_quota_fails_loudly_then_redrives_the_rest_once(
    stack: Stack, tmp_path: Any
) -> None:
    queue = stack.queue("quota-direct")
    names = failing_tasks(stack, queue, LIMIT + 8)
    env = {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": queue,
        "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [queue]}),
        "REDRIVE_DIRECT_RATE_PER_S": "1000",  # redrive's own throttle out of the way
        "REDRIVE_RETRY_DEADLINE_S": "0.5",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
    }
    fn = FunctionServer("handle_signal", "cloudevent", env, tmp_path / "handle_signal.log")
    try:
        published = now_rfc3339()
        first = post_signal(fn, signal_body(names), "quota-1", published)
        assert first.status_code == 500  # FAILED work: Pub/Sub delivers the message again
        refused = refused_runs(stack)
        assert refused, "the burst never reached the quota"
        outcomes = Counter(line["outcome"] for line in fn.outcomes())
        assert outcomes["DISPATCHED"] <= LIMIT
        assert outcomes["DISPATCHED"] + outcomes["FAILED"] == len(names)
        failed = fn.outcomes(outcome="FAILED")
        assert all("quota" in line["reason"] for line in failed), failed

        # The redelivery, once the minute has passed, re-drives exactly the refused tasks.
        free_at = refused[-1].emulated_time.timestamp() + 60.0
        wait_for(lambda: stack.emu.clock.now_s() > free_at, "the quota's minute to pass")
        again = post_signal(fn, signal_body(names), "quota-1", published)
        assert again.status_code == 200
        wait_for(lambda: all(stack.gone(n) for n in names), "every task to complete")
    finally:
        fn.stop()
    runs = ok_runs(stack)
    assert set(runs) == set(names) and set(runs.values()) == {1}
    ok_times = [
        r.emulated_time.timestamp() for r in stack.emu.control.run_log() if r.code.name == "OK"
    ]
    assert busiest_minute(ok_times) <= LIMIT


def test_queued_mode_faster_than_the_quota_retries_jobs_and_runs_each_task_once(
    stack: Stack, tmp_path: Any
) -> None:
    queue = stack.queue("quota-queued")
    names = failing_tasks(stack, queue, LIMIT + 15)
    redrive = f"{PARENT}/queues/quota-redrive"
    stack.client.create_queue(
        request={
            "parent": PARENT,
            "queue": {
                "name": redrive,
                # three times the quota: run_job must meet RESOURCE_EXHAUSTED and answer 429
                "rate_limits": {"max_dispatches_per_second": 3.0},
                "retry_config": {"max_attempts": -1, "min_backoff": "2s", "max_backoff": "10s"},
            },
        }
    )
    job_port = free_port()
    env = {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": queue,
        "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [queue]}),
        "REDRIVE_QUEUE": redrive,
        "REDRIVE_JOB_URL": f"http://127.0.0.1:{job_port}/",
        "REDRIVE_RETRY_DEADLINE_S": "0.5",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
    }
    signal_fn = FunctionServer("handle_signal", "cloudevent", env, tmp_path / "signal.log")
    job_fn = FunctionServer("run_job", "http", env, tmp_path / "job.log", port=job_port)
    try:
        answer = post_signal(signal_fn, signal_body(names), "quota-q", now_rfc3339())
        assert answer.status_code == 200
        assert Counter(line["outcome"] for line in signal_fn.outcomes()) == {"QUEUED": len(names)}
        wait_for(
            lambda: len(ok_runs(stack)) >= len(names), "every task to be force-run", timeout_s=180
        )
        wait_for(lambda: all(stack.gone(n) for n in names), "every task to complete")
        wait_for(
            lambda: len(job_fn.outcomes(outcome="DISPATCHED")) >= len(names),
            "every DISPATCHED line",
        )
        quota_failures = [
            line for line in job_fn.outcomes(outcome="FAILED") if "quota" in line["reason"]
        ]
    finally:
        signal_fn.stop()
        job_fn.stop()
    assert refused_runs(stack), "the redrive queue never outran the quota"
    assert quota_failures, "run_job never reported the quota (429)"
    runs = ok_runs(stack)
    assert set(runs) == set(names) and set(runs.values()) == {1}
    ok_times = [
        r.emulated_time.timestamp() for r in stack.emu.control.run_log() if r.code.name == "OK"
    ]
    assert busiest_minute(ok_times) <= LIMIT
