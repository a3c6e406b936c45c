"""Duplicates: at-least-once delivery and several signals about one failure → exactly one RunTask.

Pub/Sub may deliver one message several times, at the same moment, to one instance's request
threads; an alert, a task-log entry and a dead letter may report the same failure at once. Each
case here fires the deliveries concurrently over real HTTP (a barrier releases every thread
together) at functions-framework servers with 16 request threads, and counts the RunTask calls
the emulator answered.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from redrive.core.jobs import job_name
from redrive.core.names import QueueName, TaskName
from redrive_tools.devserver import wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    dead_letter,
    now_rfc3339,
    post_signal,
)
from tests.stress.support import direct_and_queued_servers, ok_runs, run_calls

DATA = Path(__file__).resolve().parents[1] / "data" / "signals"
SERVICE = f"{PARENT}/services/dup"
COPIES = 10
SETTLED = {"SKIPPED_ALREADY_RETRIED", "NOT_FOUND", "SKIPPED_DUPLICATE"}
"""What a duplicate may honestly answer once the first delivery has run the task (or holds its
claim)."""
LATER = "DEFERRED"
"""A duplicate's answer while the forced attempt runs: it is delivered again, then settles."""


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    return {
        "dup": stack.queue("dup"),
        "dupq": stack.queue("dupq"),
        "redrive": stack.queue("dup-redrive", min_backoff_s=0.2),
    }


@pytest.fixture(scope="module")
def servers(
    stack: Stack, queues: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FunctionServer]]:
    logs = tmp_path_factory.mktemp("duplicates")
    env = {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": f"{queues['dup']},{queues['dupq']}",
        "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [queues["dup"], queues["dupq"]]}),
        "REDRIVE_RETRY_DEADLINE_S": "2",
        # A generous in-process rate: the duplicates are not serialised by the throttle's wait
        # (at 1/s, the re-read after a long wait would hide a race).
        "REDRIVE_DIRECT_RATE_PER_S": "50",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        "THREADS": "16",  # functions-framework's gunicorn request threads
    }
    with direct_and_queued_servers(env, env, queues["redrive"], logs) as started:
        yield started


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread, released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except BaseException as err:  # re-raised in the test thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def settle(fn: FunctionServer, first: Any, again: Callable[[], Any], message_id: str) -> None:
    """Deliver a message again, as Pub/Sub does, for as long as it answers non-2xx: only a
    DEFERRED decision may ask for that, and it settles within a few deliveries."""
    response = first
    for _ in range(20):
        if response.status_code == 200:
            return
        assert response.status_code == 500, response.text
        # Which line is this delivery's is not known (copies run at once): one of them says why.
        assert LATER in {x["outcome"] for x in fn.outcomes(signal__message_id=message_id)}
        time.sleep(0.25)
        response = again()
    raise AssertionError(f"{message_id} did not settle")


def ready_task(stack: Stack, queue: str, task_id: str) -> str:
    """A failed task whose fix is live and whose application now succeeds."""
    path = f"/dup/{task_id}"
    task = stack.failed_task(queue, task_id, path)
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses[path] = 200
    return task


def test_same_message_ten_times_at_once_direct(stack, queues, servers):
    fn = servers["direct"]
    task = ready_task(stack, queues["dup"], "same-direct")
    published = now_rfc3339()
    modes = ["binary", "structured", "raw"]
    responses = at_once(
        [
            lambda mode=modes[i % 3]: post_signal(  # type: ignore[misc]
                fn, dead_letter(task), "dup-direct", published, mode=mode
            )
            for i in range(COPIES)
        ]
    )
    for response in responses:
        again = partial(post_signal, fn, dead_letter(task), "dup-direct", published)
        settle(fn, response, again, "dup-direct")
    lines = fn.outcomes(signal__message_id="dup-direct")
    assert len(lines) >= COPIES
    counts = Counter(line["outcome"] for line in lines)
    assert counts["DISPATCHED"] == 1, counts
    assert set(counts) - {"DISPATCHED"} <= SETTLED | {LATER}, counts
    assert ok_runs(stack, task) == 1
    assert run_calls(stack, task) == 1  # not even a RunTask that found the task gone


def test_same_message_ten_times_at_once_queued(stack, queues, servers):
    fn, job_fn = servers["queued"], servers["run_job"]
    task = ready_task(stack, queues["dupq"], "same-queued")
    published = now_rfc3339()
    # Held while the copies arrive, so that every copy meets the job, none the finished task.
    stack.client.pause_queue(request={"name": queues["redrive"]})
    responses = at_once(
        [lambda: post_signal(fn, dead_letter(task), "dup-queued", published) for _ in range(COPIES)]
    )
    assert [r.status_code for r in responses] == [200] * COPIES
    counts = Counter(line["outcome"] for line in fn.outcomes(signal__message_id="dup-queued"))
    assert counts == {"QUEUED": 1, "SKIPPED_DUPLICATE": COPIES - 1}
    job = job_name(QueueName.parse(queues["redrive"]), TaskName.parse(task), 1)
    assert {line["job"] for line in fn.outcomes(signal__message_id="dup-queued")} == {job}
    stack.client.resume_queue(request={"name": queues["redrive"]})
    # The one job reaches run_job through the redrive queue and runs the task once.
    (line,) = wait_for(lambda: job_fn.outcomes(task=task), "run_job's outcome")
    assert line["outcome"] == "DISPATCHED"
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    assert ok_runs(stack, task) == 1
    assert run_calls(stack, task) == 1  # not even a RunTask that found the task gone


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())  # type: ignore[no-any-return]


def alert_payload(task: str) -> bytes:
    """The monitoring notification of a log-match alert whose label extractor names the task."""
    name = TaskName.parse(task)
    incident = _fixture("alert_metric_label_task")["data"]["incident"]
    incident["scoping_project_id"] = name.project
    # Incidents open after the failed attempt they report; seconds resolution, so round up.
    incident["started_at"] = int(time.time()) + 1
    incident["metric"]["labels"]["task"] = task
    incident["resource"]["labels"].update(
        project_id=name.project, location=name.location, queue_id=name.queue
    )
    return json.dumps({"version": "1.2", "incident": incident}).encode()


def task_log_payload(task: str) -> bytes:
    """The task_operations_log entry of the failed attempt, as a log sink publishes it."""
    name = TaskName.parse(task)
    entry = _fixture("task_log_failed")["data"]
    entry["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    entry["logName"] = (
        f"projects/{name.project}/logs/cloudtasks.googleapis.com%2Ftask_operations_log"
    )
    entry["resource"]["labels"].update(
        project_id=name.project, location=name.location, queue_id=name.queue
    )
    entry["jsonPayload"]["task"] = task
    entry["jsonPayload"]["attemptResponseLog"].update(dispatchCount="1", responseCount="1")
    return json.dumps(entry).encode()


@pytest.mark.parametrize("mode", ["direct", "queued"])
def test_alert_log_entry_and_dead_letter_at_once(stack, queues, servers, mode):
    fn = servers[mode]
    task = ready_task(stack, queues["dup" if mode == "direct" else "dupq"], f"three-{mode}")
    published = now_rfc3339()
    if mode == "queued":
        stack.client.pause_queue(request={"name": queues["redrive"]})
    signals = {
        f"alert-{mode}": alert_payload(task),
        f"log-{mode}": task_log_payload(task),
        f"dl-{mode}": dead_letter(task),
    }
    responses = at_once(
        [
            lambda m=message_id, p=payload: post_signal(fn, p, m, published)  # type: ignore[misc]
            for message_id, payload in signals.items()
        ]
    )
    for (message_id, payload), response in zip(signals.items(), responses, strict=True):
        settle(fn, response, partial(post_signal, fn, payload, message_id, published), message_id)
    lines = [line for m in signals for line in fn.outcomes(signal__message_id=m)]
    assert {line["signal"]["kind"] for line in lines} == {"alert", "task-log", "dead-letter"}
    counts = Counter(line["outcome"] for line in lines)
    if mode == "direct":
        assert counts["DISPATCHED"] == 1, counts
        assert set(counts) - {"DISPATCHED"} <= SETTLED | {LATER}, counts
    else:
        assert counts == {"QUEUED": 1, "SKIPPED_DUPLICATE": 2}, counts
        stack.client.resume_queue(request={"name": queues["redrive"]})
        wait_for(lambda: servers["run_job"].outcomes(task=task), "run_job's outcome")
        wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    assert ok_runs(stack, task) == 1
    assert run_calls(stack, task) == 1  # not even a RunTask that found the task gone
