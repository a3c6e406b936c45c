"""Every bulk re-drive logs its plan first, through the real servers: a deploy message reaches
handle_signal under functions-framework, which counts the emulator's queues, reads the rates
that bound the re-drive from Cloud Tasks (GetQueue) and logs one `redrive.plan` line before any
outcome line — in direct mode, in queued mode (the redrive queue's rate, the jobs already
waiting in it) and for a re-create queue (its own dispatch rate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.helpers import Stack, function_server, now_rfc3339, post_signal

REDRIVE_JOB_URL = "http://127.0.0.1:9/run_job"  # never reached: the redrive queue stays paused


def env_for(stack: Stack, queues: list[str], **extra: str) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": ",".join(queues),
        "REDRIVE_FIX_CHECK": "none",
        "REDRIVE_RETRY_DEADLINE_S": "2",
        "REDRIVE_DIRECT_RATE_PER_S": "100",
        "REDRIVE_RUN_QUOTA_PER_MIN": "6000",
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        # The plan's own counts and rates; canaries are tests/integration/test_canaries.py.
        "REDRIVE_CANARIES": "0",
        **extra,
    }


def deploy(queues: list[str], statuses: str | None = None) -> bytes:
    body: dict[str, Any] = {"queues": queues, "at": now_rfc3339()}
    if statuses:
        body["statuses"] = statuses
    return json.dumps({"deployed": body}).encode()


def failing(stack: Stack, queue_id: str, n: int, status: int = 500, **queue: Any) -> str:
    name = stack.queue(queue_id, **queue)
    path = f"/{queue_id}/fail"
    stack.target.statuses[path] = status
    for i in range(n):
        stack.failed_task(name, f"t-{i}", path)
    stack.target.statuses[path] = 200
    return name


def events(lines: list[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    return [x for x in lines if (x.get("signal") or {}).get("message_id") == message_id]


def test_a_direct_sweep_logs_its_plan_first(stack: Stack, tmp_path: Path) -> None:
    a = failing(stack, "plan-a", 3)
    b = failing(stack, "plan-b", 2, status=404)
    stack.task(b, "later", "/plan-b/later", schedule_in_s=3600)
    env = env_for(stack, [a, b], REDRIVE_DIRECT_RATE_PER_S="50")
    with function_server("handle_signal", "cloudevent", env, tmp_path / "signal.log") as fn:
        assert post_signal(fn, deploy([a, b], "5xx"), "plan-d-1", now_rfc3339()).status_code == 200
        lines = events(fn.lines(), "plan-d-1")
    assert lines[0]["event"] == "redrive.plan"
    assert [x["event"] for x in lines[1:]].count("redrive.plan") == 0
    planned = lines[0]
    assert planned["mode"] == "direct" and planned["statuses"] == "5xx"
    assert (planned["tasks_seen"], planned["selected"]) == (6, 3)
    assert planned["skipped"] == {"OTHER_STATUS": 2, "NEVER_ATTEMPTED": 1}
    assert planned["by_status"] == {"INTERNAL (HTTP 500)": 3}
    per = {q["queue"]: q for q in planned["per_queue"]}
    assert per[a]["method"] == "run" and per[a]["rate_per_s"] == 50.0
    assert "REDRIVE_DIRECT_RATE_PER_S=50" in per[a]["limited_by"]
    assert per[b]["selected"] == 0 and planned["eta_s"] == 0.1  # 3 tasks at 50/s (rounded)
    sweep = next(x for x in lines if x["event"] == "redrive.sweep")
    assert sweep["counts"] == {"DISPATCHED": 3}


def test_a_queued_sweep_plans_at_the_redrive_queues_rate_after_the_jobs_ahead(
    stack: Stack, tmp_path: Path
) -> None:
    queue = failing(stack, "plan-q", 4)
    redrive = stack.queue("redrive-plan", paused=True)
    # Two jobs already wait in the redrive queue (another re-drive's).
    for i in range(2):
        stack.task(redrive, f"waiting-{i}", "/elsewhere")
    stack.client.update_queue(
        request={
            "queue": {"name": redrive, "rate_limits": {"max_dispatches_per_second": 2.0}},
            "update_mask": {"paths": ["rate_limits.max_dispatches_per_second"]},
        }
    )
    env = env_for(stack, [queue], REDRIVE_QUEUE=redrive, REDRIVE_JOB_URL=REDRIVE_JOB_URL)
    with function_server("handle_signal", "cloudevent", env, tmp_path / "signal.log") as fn:
        post_signal(fn, deploy([queue]), "plan-q-1", now_rfc3339())
        lines = events(fn.lines(), "plan-q-1")
    planned = lines[0]
    assert planned["event"] == "redrive.plan" and planned["mode"] == "queued"
    (q,) = planned["per_queue"]
    assert q["method"] == "run" and q["rate_per_s"] == 2.0
    assert "redrive queue's dispatch rate (2/s)" in q["limited_by"]
    assert planned["eta_s"] == 3.0  # (2 jobs ahead + 4) at 2/s
    assert {x["outcome"] for x in lines if x["event"] == "redrive.outcome"} == {"QUEUED"}


def test_a_recreate_queue_plans_at_its_own_dispatch_rate(stack: Stack, tmp_path: Path) -> None:
    queue = failing(stack, "plan-rc", 3)
    stack.client.update_queue(
        request={
            "queue": {"name": queue, "rate_limits": {"max_dispatches_per_second": 0.5}},
            "update_mask": {"paths": ["rate_limits.max_dispatches_per_second"]},
        }
    )
    env = env_for(stack, [queue], REDRIVE_METHOD="recreate", REDRIVE_DRY_RUN="true")
    with function_server("handle_signal", "cloudevent", env, tmp_path / "signal.log") as fn:
        post_signal(fn, deploy([queue]), "plan-rc-1", now_rfc3339())
        lines = events(fn.lines(), "plan-rc-1")
    planned = lines[0]
    (q,) = planned["per_queue"]
    assert q["method"] == "recreate" and q["rate_per_s"] == 0.5
    assert "the queue's dispatch rate (0.5/s)" in q["limited_by"]
    assert planned["eta_s"] == 11.0  # REDRIVE_RECREATE_DELAY_S (5 s), then 3 at 0.5/s
    assert planned["dry_run"] is True and planned["methods"] == {"recreate": 3}
