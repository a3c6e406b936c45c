"""Queued mode end to end: handle_signal enqueues one job per failure in the redrive queue, the
emulator dispatches it over HTTP to run_job (a second functions-framework server), which re-drives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from redrive.core.jobs import Job, job_name
from redrive.core.names import QueueName, TaskName
from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    dead_letter,
    now_rfc3339,
    post_signal,
)

SERVICE = f"{PARENT}/services/orders"
JOB_SA = "redrive-jobs@demo.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    return {
        "orders": stack.queue("orders"),
        # The redrive queue retries jobs quickly (emulated backoff 0.2 s) and starts paused.
        "redrive": stack.queue("redrive", min_backoff_s=0.2, paused=True),
    }


@pytest.fixture(scope="module")
def servers(
    stack: Stack, queues: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FunctionServer, FunctionServer]]:
    logs = tmp_path_factory.mktemp("queued")
    job_port = free_port()
    env = {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": queues["orders"],
        "REDRIVE_QUEUE": queues["redrive"],
        "REDRIVE_JOB_URL": f"http://127.0.0.1:{job_port}/",
        "REDRIVE_JOB_SERVICE_ACCOUNT": JOB_SA,
        "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [queues["orders"]]}),
        "REDRIVE_TASKS_API": "v2",
        "REDRIVE_RETRY_DEADLINE_S": "2",
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
    }
    job = FunctionServer("run_job", "http", env, logs / "run_job.log", port=job_port)
    signal = FunctionServer("handle_signal", "cloudevent", env, logs / "handle_signal.log")
    yield signal, job
    signal.stop()
    job.stop()


def resume(stack: Stack, queue: str) -> None:
    stack.client.resume_queue(request={"name": queue})


def runs_of(stack: Stack, task: str) -> int:
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


def test_signal_enqueues_one_job_and_run_job_redrives(stack, queues, servers):
    signal_fn, job_fn = servers
    task = stack.failed_task(queues["orders"], "order-1", "/orders/1")
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses["/orders/1"] = 200

    first = post_signal(signal_fn, dead_letter(task), "q-1", now_rfc3339(), mode="binary")
    duplicate = post_signal(signal_fn, dead_letter(task), "q-1-dup", now_rfc3339(), mode="raw")

    assert first.status_code == duplicate.status_code == 200
    (queued,) = signal_fn.outcomes(signal__message_id="q-1")
    (dup,) = signal_fn.outcomes(signal__message_id="q-1-dup")
    expected_job = job_name(QueueName.parse(queues["redrive"]), TaskName.parse(task), 1)
    assert queued["outcome"] == "QUEUED" and queued["job"] == expected_job
    assert queued["mode"] == "queued" and queued["api_version"] == "v2"
    assert dup["outcome"] == "SKIPPED_DUPLICATE" and dup["job"] == expected_job
    # The job waits in the (paused) redrive queue, addressed to run_job with an OIDC token.
    job = stack.client.get_task(request={"name": expected_job, "response_view": "FULL"})
    assert job.http_request.url == job_fn.url + "/"
    assert job.http_request.oidc_token.service_account_email == JOB_SA
    assert job.http_request.oidc_token.audience == job_fn.url + "/"
    assert Job.parse(job.http_request.body).task == TaskName.parse(task)
    assert runs_of(stack, task) == 0

    resume(stack, queues["redrive"])
    line = wait_for(lambda: job_fn.outcomes(task=task), "run_job's outcome")[0]
    assert line["outcome"] == "DISPATCHED" and line["entry_point"] == "run_job"
    assert line["signal"]["message_id"] == "q-1" and line["failed_dispatch_count"] == 1
    assert line["fix"]["service"] == SERVICE
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    wait_for(lambda: stack.gone(expected_job), "the job to be acknowledged (2xx) and deleted")
    assert runs_of(stack, task) == 1


def test_quota_on_run_job_is_retried_by_the_redrive_queue(stack, queues, servers):
    signal_fn, job_fn = servers
    task = stack.failed_task(queues["orders"], "order-2", "/orders/2")
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses["/orders/2"] = 200
    stack.emu.control.fail("RunTask", grpc.StatusCode.RESOURCE_EXHAUSTED, times=1)
    post_signal(signal_fn, dead_letter(task), "q-2", now_rfc3339(), mode="structured")
    assert signal_fn.outcomes(signal__message_id="q-2")[0]["outcome"] == "QUEUED"
    wait_for(lambda: len(job_fn.outcomes(task=task)) >= 2, "the job's retry")
    assert [x["outcome"] for x in job_fn.outcomes(task=task)] == ["FAILED", "DISPATCHED"]
    wait_for(lambda: stack.gone(task), "the task to complete")


def test_guards_that_hold_are_applied_before_enqueueing(stack, queues, servers):
    signal_fn, _ = servers
    missing = f"{queues['orders']}/tasks/order-missing"
    post_signal(signal_fn, dead_letter(missing), "q-3", now_rfc3339())
    (line,) = signal_fn.outcomes(signal__message_id="q-3")
    assert line["outcome"] == "NOT_FOUND" and line["job"] is None
    assert line["not_found"] == "never_or_long_ago" and "check the name" in line["reason"]


def job_body(task: str) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "task": task,
            "seen_at": now_rfc3339(),
            "dispatch_count": 1,
            "signal": {
                "kind": "dead-letter",
                "source": "dead-letter",
                "message_id": "m",
                "publish_time": None,
            },
        }
    ).encode()


def post_job(job_fn: FunctionServer, body: bytes, headers: dict[str, str]) -> Any:
    return httpx.post(job_fn.url, content=body, headers=headers, timeout=30)


def test_run_job_answers(stack, queues, servers):
    _, job_fn = servers
    missing = f"{queues['orders']}/tasks/job-missing"

    stranger = post_job(job_fn, job_body(missing), {})
    assert stranger.status_code == 403
    assert stranger.json()["outcome"] == "INVALID_SIGNAL"

    other_queue = post_job(job_fn, job_body(missing), {"X-CloudTasks-QueueName": "orders"})
    assert other_queue.status_code == 403

    ours = {"X-CloudTasks-QueueName": "redrive"}
    bad = post_job(job_fn, b'{"task": 1}', ours)
    assert bad.status_code == 200 and bad.json()["outcome"] == "INVALID_SIGNAL"

    # A live job of the (paused) redrive queue, whose task is gone: run_job acts on it.
    body = job_body(missing)
    job_id = "job-gone-1"
    stack.client.pause_queue(request={"name": queues["redrive"]})
    stack.client.create_task(
        request={
            "parent": queues["redrive"],
            "task": {
                "name": f"{queues['redrive']}/tasks/{job_id}",
                "http_request": {"url": job_fn.url, "http_method": "POST", "body": body},
            },
        }
    )
    live = {**ours, "X-CloudTasks-TaskName": job_id}
    gone = post_job(job_fn, body, live)
    assert gone.status_code == 200 and gone.json()["outcome"] == "NOT_FOUND"
    (gone_line,) = job_fn.outcomes(task=missing)
    assert gone_line["outcome"] == "NOT_FOUND" and gone_line["not_found"] == "never_or_long_ago"

    # A body that is not the job's as the queue holds it, or a job the queue does not hold.
    forged = post_job(job_fn, job_body(missing), live)
    assert forged.status_code == 403 and forged.json()["outcome"] == "INVALID_SIGNAL"
    unknown = post_job(job_fn, body, {**ours, "X-CloudTasks-TaskName": "no-such-job"})
    assert unknown.status_code == 403 and "no job" in unknown.json()["reason"]

    stack.emu.control.fail("GetTask", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        down = post_job(job_fn, body, live)
    finally:
        stack.emu.control.clear()
    assert down.status_code == 503 and down.json()["outcome"] == "FAILED"
    invalid_lines = [x for x in job_fn.outcomes(outcome="INVALID_SIGNAL")]
    assert len(invalid_lines) == 5 and all(x["severity"] == "WARNING" for x in invalid_lines)


def test_deploy_sweep_jobs_carry_the_deploy_as_fix_evidence(stack, queues, servers):
    """A deploy naming only a queue: run_job's own revision check would find no revision newer
    than the failure, so the job carries the deploy notification as its evidence."""
    signal_fn, job_fn = servers
    # Hold the job so it can be read: an earlier test left the redrive queue running, and a job
    # dispatched at once is completed and gone before it is read.
    stack.client.pause_queue(request={"name": queues["redrive"]})
    task = stack.failed_task(queues["orders"], "order-deploy-1", "/orders/d1")
    stack.target.statuses["/orders/d1"] = 200
    deploy = json.dumps({"deployed": {"queues": [queues["orders"]], "at": now_rfc3339()}})
    post_signal(signal_fn, deploy.encode(), "q-deploy", now_rfc3339(), mode="binary")
    (queued,) = signal_fn.outcomes(signal__message_id="q-deploy", task=task)
    assert queued["outcome"] == "QUEUED" and queued["fix"]["strategy"] == "deploy-signal"
    job = stack.client.get_task(request={"name": queued["job"], "response_view": "FULL"})
    carried = Job.parse(job.http_request.body).fix
    assert carried is not None and carried.strategy == "deploy-signal"

    resume(stack, queues["redrive"])
    line = wait_for(lambda: job_fn.outcomes(task=task), "run_job's outcome")[0]
    assert line["outcome"] == "DISPATCHED", line["reason"]
    assert line["fix"]["strategy"] == "deploy-signal"
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    assert runs_of(stack, task) == 1
