"""handle_signal in direct mode, end to end: CloudEvents → functions-framework → emulator.

Every outcome handle_signal can reach in direct mode is produced here through real requests, and
checked on both sides: the emulator's state (task deleted, run log) and the outcome lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

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

SECRET = "MARKER-SECRET-7f3a"
BILLING_SVC = f"{PARENT}/services/billing"
LEGACY_SVC = f"{PARENT}/services/legacy"
WEB_SVC = f"{PARENT}/services/web"


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    names = {q: stack.queue(q) for q in ("billing", "legacy", "web", "other")}
    # legacy's only revision predates every failure below: its fix is never live.
    stack.emu.cloudrun.deploy(LEGACY_SVC, at=stack.emu.clock.now() - timedelta(hours=1))
    return names


def server_env(stack: Stack, queues: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": ",".join(queues[q] for q in ("billing", "legacy", "web")),
        "REDRIVE_SERVICE_MAP": json.dumps(
            {BILLING_SVC: [queues["billing"]], LEGACY_SVC: [queues["legacy"]]}
        ),
        "REDRIVE_RESPONSE_VIEW": "FULL",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
        "REDRIVE_RETRY_DEADLINE_S": "1",
        "REDRIVE_DIRECT_RATE_PER_S": "50",
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        **extra,
    }


@pytest.fixture(scope="module")
def fn(
    stack: Stack, queues: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    log = tmp_path_factory.mktemp("direct") / "handle_signal.log"
    server = FunctionServer("handle_signal", "cloudevent", server_env(stack, queues), log)
    yield server
    server.stop()


def test_startup_lines_come_before_any_request(fn):
    startup = [x for x in fn.lines() if x.get("event") == "redrive.startup"]
    assert startup[0]["message"].startswith("redrive started: direct")
    warnings = [x["message"] for x in startup if x["severity"] == "WARNING"]
    assert len(warnings) == 1 and "direct mode" in warnings[0]  # the allowlist is set


def one_outcome(fn: FunctionServer, message_id: str, task: str | None = None) -> dict:
    lines = fn.outcomes(signal__message_id=message_id)
    if task is not None:
        lines = [line for line in lines if line["task"] == task]
    assert len(lines) == 1, lines
    return lines[0]


def runs_of(stack: Stack, task: str) -> int:
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


@pytest.mark.parametrize("mode", ["binary", "structured", "raw"])
def test_dispatched_once_the_fix_is_live(stack, queues, fn, mode):
    path = f"/billing/{mode}"
    task = stack.failed_task(
        queues["billing"],
        f"inv-{mode}",
        path,
        body=json.dumps({"card": SECRET}).encode(),
        headers={"Content-Type": "application/json", "X-Api-Key": SECRET},
    )
    revision = stack.emu.cloudrun.deploy(BILLING_SVC)  # the fix lands...
    stack.target.statuses[path] = 200  # ...and the application now succeeds
    message_id = f"dispatch-{mode}"

    response = post_signal(fn, dead_letter(task), message_id, now_rfc3339(), mode=mode)

    assert response.status_code == 200, response.text
    line = one_outcome(fn, message_id)
    assert line["outcome"] == "DISPATCHED" and line["severity"] == "INFO"
    assert line["task"] == task and line["queue"] == queues["billing"]
    assert line["signal"]["kind"] == "dead-letter"
    assert line["task_state"]["dispatch_count"] == 1
    assert line["task_state"]["last_status"] in ("INTERNAL", "UNKNOWN")
    assert line["fix"] == {
        "strategy": "revision",
        "service": BILLING_SVC,
        "revision": revision,
        "live_since": line["fix"]["live_since"],
        "note": None,
    }
    assert line["run"]["dispatched"] is True and line["run"]["dispatch_count_after"] == 2
    assert line["api_version"] == "v2beta3" and line["dry_run"] is False
    assert line["logging.googleapis.com/labels"]["outcome"] == "DISPATCHED"
    assert fn.summaries(message_id)[0]["outcome"] == "DISPATCHED"
    wait_for(lambda: stack.gone(task), "the re-driven task to succeed and be deleted")
    assert runs_of(stack, task) == 1
    # FULL view brought the body and headers into the function: none of it reached the log.
    assert SECRET not in fn.log_path.read_text()


def test_service_found_from_the_target_url(stack, queues, fn):
    task = stack.failed_task(queues["web"], "page-1", "/web/1", host="localhost")
    stack.emu.cloudrun.deploy(WEB_SVC, uri=stack.target.url("", host="localhost"))
    stack.target.statuses["/web/1"] = 200
    post_signal(fn, dead_letter(task), "web-1", now_rfc3339())
    line = one_outcome(fn, "web-1")
    assert line["outcome"] == "DISPATCHED" and line["fix"]["service"] == WEB_SVC
    wait_for(lambda: stack.gone(task), "the task behind the web service to complete")


def test_fix_not_deployed(stack, queues, fn):
    task = stack.failed_task(queues["legacy"], "old-1", "/legacy/1")
    post_signal(fn, dead_letter(task), "legacy-1", now_rfc3339())
    line = one_outcome(fn, "legacy-1")
    assert line["outcome"] == "SKIPPED_FIX_NOT_DEPLOYED"
    assert line["fix"]["service"] == LEGACY_SVC and line["fix"]["live_since"]
    assert stack.get(task) is not None and runs_of(stack, task) == 0


def test_not_found(stack, queues, fn):
    task = f"{queues['billing']}/tasks/long-gone"
    assert post_signal(fn, dead_letter(task), "nf-1", now_rfc3339()).status_code == 200
    assert one_outcome(fn, "nf-1")["outcome"] == "NOT_FOUND"


def test_not_found_says_whether_the_task_completed_or_never_existed(stack, queues, fn):
    # A task that completed a moment ago, and a name with a typo in it: Cloud Tasks answers
    # GetTask NOT_FOUND for both, in different words; the outcome lines tell them apart.
    stack.target.statuses["/billing/done"] = 200
    done = stack.task(queues["billing"], "inv-done", "/billing/done")
    wait_for(lambda: stack.gone(done), "the task to complete and be deleted")
    typo = f"{queues['billing']}/tasks/inv-dnoe"
    missing_queue = f"{PARENT}/queues/billing-typo/tasks/inv-1"
    for message_id, task in (("nf-done", done), ("nf-typo", typo)):
        assert post_signal(fn, dead_letter(task), message_id, now_rfc3339()).status_code == 200
    completed = one_outcome(fn, "nf-done")
    never = one_outcome(fn, "nf-typo")
    assert completed["outcome"] == never["outcome"] == "NOT_FOUND"
    assert completed["not_found"] == "existed_recently"
    assert "existed recently" in completed["reason"] and "completed" in completed["reason"]
    assert never["not_found"] == "never_or_long_ago"
    assert "check the name" in never["reason"] and "completed" not in never["reason"]
    assert runs_of(stack, done) == runs_of(stack, typo) == 0
    # A queue that does not exist is said as such (the allowlist has to let it through).
    env = server_env(stack, queues)
    env["REDRIVE_ALLOWED_QUEUES"] += f",{PARENT}/queues/billing-typo"
    log = fn.log_path.parent / "handle_signal_nf.log"
    with function_server("handle_signal", "cloudevent", env, log) as other:
        post_signal(other, dead_letter(missing_queue), "nf-queue", now_rfc3339())
        line = one_outcome(other, "nf-queue")
    assert line["outcome"] == "NOT_FOUND" and line["not_found"] == "queue_missing"
    assert "queue does not exist" in line["reason"]


def test_not_allowed(stack, queues, fn):
    task = stack.failed_task(queues["other"], "o-1", "/other/1")
    post_signal(fn, dead_letter(task), "na-1", now_rfc3339())
    line = one_outcome(fn, "na-1")
    assert line["outcome"] == "SKIPPED_NOT_ALLOWED" and line["task_state"] is None
    assert runs_of(stack, task) == 0


def test_stale_signal(stack, queues, fn):
    task = stack.failed_task(queues["billing"], "stale-1", "/billing/stale")
    stack.emu.cloudrun.deploy(BILLING_SVC)
    post_signal(fn, dead_letter(task, failedAt=now_rfc3339(-2 * 86400)), "stale-1", now_rfc3339())
    assert one_outcome(fn, "stale-1")["outcome"] == "SKIPPED_STALE_SIGNAL"
    assert runs_of(stack, task) == 0


def test_in_flight(stack, queues, fn):
    stack.target.statuses["/billing/hang"] = "hang"
    task = stack.task(queues["billing"], "busy-1", "/billing/hang")
    wait_for(
        lambda: any(p == "/billing/hang" for p, _, _ in stack.target.requests),
        "the attempt to reach the target",
    )
    stack.emu.cloudrun.deploy(BILLING_SVC)
    published = now_rfc3339()
    first = post_signal(fn, dead_letter(task), "busy-1", published)
    # Not dropped: the failure may be that very attempt's, so the message comes back later.
    assert first.status_code == 500
    line = one_outcome(fn, "busy-1")
    assert line["outcome"] == "DEFERRED" and line["task_state"]["in_flight"] is True
    assert runs_of(stack, task) == 0

    stack.target.statuses["/billing/hang"] = 200  # the fix is live for the forced run
    stack.target.release()  # the attempt ends (the old code answers 500)
    wait_for(
        lambda: (t := stack.get(task)) is not None and "response_time" in t.last_attempt,
        "the hung attempt's answer",
    )
    again = post_signal(fn, dead_letter(task), "busy-1", published)  # Pub/Sub's redelivery
    assert again.status_code == 200
    lines = fn.outcomes(signal__message_id="busy-1")
    assert [x["outcome"] for x in lines] == ["DEFERRED", "DISPATCHED"]
    assert runs_of(stack, task) == 1


def test_already_retried(stack, queues, fn):
    task = stack.failed_task(queues["billing"], "retried-1", "/billing/retried")
    stack.client.run_task(request={"name": task})  # somebody else retried it (and it failed)
    wait_for(
        lambda: (
            (t := stack.get(task)) and t.dispatch_count == 2 and "response_time" in t.last_attempt
        ),
        "the second attempt's answer",
    )
    stack.emu.cloudrun.deploy(BILLING_SVC)
    post_signal(fn, dead_letter(task, dispatchCount=1), "retried-1", now_rfc3339())
    line = one_outcome(fn, "retried-1")
    assert line["outcome"] == "SKIPPED_ALREADY_RETRIED" and line["failed_dispatch_count"] == 1
    assert runs_of(stack, task) == 1  # only the one above


def test_not_failing(stack, queues, fn):
    task = stack.task(queues["billing"], "later-1", "/billing/later", schedule_in_s=3600)
    post_signal(fn, dead_letter(task), "later-1", now_rfc3339())
    assert one_outcome(fn, "later-1")["outcome"] == "SKIPPED_NOT_FAILING"


@pytest.mark.parametrize(
    "payload",
    [b"hello, world", b'{"task": "projects/demo/locations/local1/queues/billing/tasks/bad name"}'],
    ids=["garbage", "bad-grammar"],
)
def test_invalid_signal_is_acknowledged(fn, payload):
    message_id = f"invalid-{len(payload)}"
    response = post_signal(fn, payload, message_id, now_rfc3339(), mode="structured")
    assert response.status_code == 200
    line = one_outcome(fn, message_id)
    assert line["outcome"] == "INVALID_SIGNAL" and line["severity"] == "WARNING"
    assert fn.summaries(message_id)[0]["outcome"] == "INVALID_SIGNAL"


def test_permission_denied_is_loud_and_acknowledged(stack, queues, fn):
    task = stack.failed_task(queues["billing"], "perm-1", "/billing/perm")
    stack.emu.control.fail("GetTask", grpc.StatusCode.PERMISSION_DENIED, times=1)
    response = post_signal(fn, dead_letter(task), "perm-1", now_rfc3339())
    assert response.status_code == 200
    line = one_outcome(fn, "perm-1")
    assert line["outcome"] == "PERMISSION_DENIED" and line["severity"] == "ERROR"


def test_transient_fault_fails_then_redelivery_dispatches(stack, queues, fn):
    task = stack.failed_task(queues["billing"], "flaky-1", "/billing/flaky")
    stack.emu.cloudrun.deploy(BILLING_SVC)
    stack.target.statuses["/billing/flaky"] = 200
    stack.emu.control.fail("GetTask", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        first = post_signal(fn, dead_letter(task), "flaky-1", now_rfc3339())
    finally:
        stack.emu.control.clear()
    assert first.status_code == 500  # Pub/Sub delivers again
    failed = one_outcome(fn, "flaky-1")
    assert failed["outcome"] == "FAILED" and failed["severity"] == "ERROR"
    assert runs_of(stack, task) == 0

    again = post_signal(fn, dead_letter(task), "flaky-1", now_rfc3339())  # the redelivery
    assert again.status_code == 200
    outcomes = [line["outcome"] for line in fn.outcomes(signal__message_id="flaky-1")]
    assert outcomes == ["FAILED", "DISPATCHED"]
    wait_for(lambda: stack.gone(task), "the task to complete")


def test_quota_fails_then_redelivery_dispatches(stack, queues, fn):
    task = stack.failed_task(queues["billing"], "quota-1", "/billing/quota")
    stack.emu.cloudrun.deploy(BILLING_SVC)
    stack.target.statuses["/billing/quota"] = 200
    stack.emu.control.fail("RunTask", grpc.StatusCode.RESOURCE_EXHAUSTED, times=1)
    assert post_signal(fn, dead_letter(task), "quota-1", now_rfc3339()).status_code == 500
    assert "quota" in one_outcome(fn, "quota-1")["reason"]
    assert post_signal(fn, dead_letter(task), "quota-1", now_rfc3339()).status_code == 200
    assert [x["outcome"] for x in fn.outcomes(signal__message_id="quota-1")] == [
        "FAILED",
        "DISPATCHED",
    ]


def test_every_task_of_a_message_gets_its_line(stack, queues, fn):
    done = stack.failed_task(queues["billing"], "multi-1", "/billing/multi")
    stack.emu.cloudrun.deploy(BILLING_SVC)
    stack.target.statuses["/billing/multi"] = 200
    missing = f"{queues['billing']}/tasks/multi-missing"
    payload = json.dumps({"tasks": [done, missing, done]}).encode()
    post_signal(fn, payload, "multi-1", now_rfc3339())
    assert one_outcome(fn, "multi-1", done)["outcome"] == "DISPATCHED"
    assert one_outcome(fn, "multi-1", missing)["outcome"] == "NOT_FOUND"
    summary = fn.summaries("multi-1")
    assert len(summary) == 1 and summary[0]["counts"] == {"DISPATCHED": 1, "NOT_FOUND": 1}


def test_deploy_signal_starts_a_sweep(fn, queues):
    payload = json.dumps({"deployed": {"service": "billing", "at": now_rfc3339()}}).encode()
    assert post_signal(fn, payload, "deploy-1", now_rfc3339()).status_code == 200
    (summary,) = fn.summaries("deploy-1")
    assert summary["counts"] == {"SWEEP": 1}
    (sweep,) = [
        x
        for x in fn.lines()
        if x.get("event") == "redrive.sweep" and x["signal"]["message_id"] == "deploy-1"
    ]
    assert sweep["queues"] == [queues["billing"]] and sweep["complete"] is True


def test_dry_run(stack, queues, tmp_path: Path):
    task = stack.failed_task(queues["billing"], "dry-1", "/billing/dry")
    stack.emu.cloudrun.deploy(BILLING_SVC)
    env = server_env(stack, queues, REDRIVE_DRY_RUN="true", REDRIVE_TASKS_API="v2")
    server = FunctionServer("handle_signal", "cloudevent", env, tmp_path / "dry.log")
    try:
        post_signal(server, dead_letter(task), "dry-1", now_rfc3339())
        line = one_outcome(server, "dry-1")
    finally:
        server.stop()
    assert line["outcome"] == "DRY_RUN" and line["dry_run"] is True
    assert line["api_version"] == "v2"
    assert stack.get(task) is not None and runs_of(stack, task) == 0
    startup = [x for x in server.lines() if x.get("event") == "redrive.startup"]
    assert any("DRY RUN" in x["message"] for x in startup)
