"""Secrets: tasks whose body, headers and URL query carry a marker secret, read with the FULL view
(so the body and headers really reach the function) → the marker is in no log line, on any path:
direct mode (skip, dispatch, failure and redelivery, deploy sweep), queued mode (enqueue, run_job
through the redrive queue, deploy sweep).

The log is everything the functions-framework process wrote (stdout and stderr, JSON or not).
The emulator's own output is not the function's log and is not checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from redrive_tools.devserver import wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    dead_letter,
    now_rfc3339,
    post_signal,
)
from tests.stress.support import direct_and_queued_servers, ok_runs

MARKER = "S3CR3T-MARKER-91c4e0"
SERVICE_ID = "secrets"
SERVICE = f"{PARENT}/services/{SERVICE_ID}"


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    return {
        "sec": stack.queue("sec"),
        "secq": stack.queue("secq"),
        "redrive": stack.queue("sec-redrive", min_backoff_s=0.2, paused=True),
    }


@pytest.fixture(scope="module")
def servers(
    stack: Stack, queues: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, FunctionServer]]:
    logs = tmp_path_factory.mktemp("secrets")
    base = {
        **stack.emu.env(),
        "REDRIVE_RESPONSE_VIEW": "FULL",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
        "REDRIVE_RETRY_DEADLINE_S": "0.5",
        "REDRIVE_DIRECT_RATE_PER_S": "100",
    }
    direct_env = {
        **base,
        "REDRIVE_ALLOWED_QUEUES": queues["sec"],
        "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [queues["sec"]]}),
    }
    queued_env = {
        **base,
        "REDRIVE_ALLOWED_QUEUES": queues["secq"],
        "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [queues["secq"]]}),
    }
    with direct_and_queued_servers(direct_env, queued_env, queues["redrive"], logs) as started:
        yield started


def secret_task(stack: Stack, queue: str, task_id: str) -> str:
    path = f"/sec/{task_id}"
    return stack.failed_task(
        queue,
        task_id,
        f"{path}?token={MARKER}",
        body=json.dumps({"card": MARKER, "note": f"pay {MARKER}"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {MARKER}",
            "X-Api-Key": MARKER,
        },
    )


def fix(stack: Stack, *task_ids: str) -> None:
    stack.emu.cloudrun.deploy(SERVICE)
    for task_id in task_ids:
        stack.target.statuses[f"/sec/{task_id}"] = 200


def assert_clean(*servers: FunctionServer) -> None:
    for server in servers:
        text = Path(server.log_path).read_text(errors="replace")
        assert text.strip(), f"{server.target} logged nothing: the check would be empty"
        assert MARKER not in text, f"{server.target} logged the secret"


def deploy_signal() -> bytes:
    return json.dumps({"deployed": {"service": SERVICE_ID, "at": now_rfc3339()}}).encode()


def test_direct_mode_paths_log_no_secret(stack, queues, servers):
    fn = servers["direct"]
    task = secret_task(stack, queues["sec"], "d-1")
    full = stack.client.get_task(request={"name": task, "response_view": "FULL"})
    assert MARKER.encode() in full.http_request.body  # FULL really carries the secret

    # No revision yet: skipped, with the task (body included) read in FULL view.
    post_signal(fn, dead_letter(task), "sec-skip", now_rfc3339())
    assert fn.outcomes(signal__message_id="sec-skip")[0]["outcome"] == "SKIPPED_FIX_NOT_DEPLOYED"

    # A persistent fault on RunTask: FAILED, then the redelivery dispatches.
    fix(stack, "d-1")
    stack.emu.control.fail("RunTask", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        assert post_signal(fn, dead_letter(task), "sec-run", now_rfc3339()).status_code == 500
    finally:
        stack.emu.control.clear()
    assert post_signal(fn, dead_letter(task), "sec-run", now_rfc3339()).status_code == 200
    outcomes = [x["outcome"] for x in fn.outcomes(signal__message_id="sec-run")]
    assert outcomes == ["FAILED", "DISPATCHED"]
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    # The application got the secret on the forced run: it was there to leak.
    assert any(MARKER.encode() in body for _, _, body in stack.target.requests)

    # A deploy sweep over the queue re-drives two more secret-bearing tasks.
    swept = [secret_task(stack, queues["sec"], f"d-sweep-{i}") for i in range(2)]
    fix(stack, "d-sweep-0", "d-sweep-1")
    assert post_signal(fn, deploy_signal(), "sec-deploy", now_rfc3339()).status_code == 200
    for name in swept:
        wait_for(lambda n=name: stack.gone(n), "the swept task to complete")  # type: ignore[misc]
        assert ok_runs(stack, name) == 1
    assert_clean(fn)


def test_queued_mode_paths_log_no_secret(stack, queues, servers):
    fn, job_fn = servers["queued"], servers["run_job"]
    task = secret_task(stack, queues["secq"], "q-1")
    fix(stack, "q-1")
    post_signal(fn, dead_letter(task), "secq-1", now_rfc3339())
    assert fn.outcomes(signal__message_id="secq-1")[0]["outcome"] == "QUEUED"

    swept = [secret_task(stack, queues["secq"], f"q-sweep-{i}") for i in range(2)]
    fix(stack, "q-sweep-0", "q-sweep-1")
    assert post_signal(fn, deploy_signal(), "secq-deploy", now_rfc3339()).status_code == 200

    stack.client.resume_queue(request={"name": queues["redrive"]})
    for name in [task, *swept]:
        wait_for(lambda n=name: job_fn.outcomes(task=n), "run_job's outcome")  # type: ignore[misc]
        wait_for(lambda n=name: stack.gone(n), "the re-driven task to complete")  # type: ignore[misc]
        assert ok_runs(stack, name) == 1
    assert_clean(fn, job_fn)
