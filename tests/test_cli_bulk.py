"""The bulk re-drive commands of `redrive` against the real emulator (click's CliRunner; the
emulator and the application target are real local servers): `sweep --status`."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from redrive_tools.devserver import wait_for
from tests import test_cli
from tests.integration.helpers import Stack
from tests.test_cli import cli, flat, iso, json_lines, runs_of

stack = test_cli.stack
"""The command-line tests' emulator fixture (one per module)."""


def failing_by_status(stack: Stack, queue_id: str) -> tuple[str, dict[int, str]]:
    """A queue with one task per status whose first attempt failed with it."""
    queue = stack.queue(queue_id)
    tasks = {}
    for status in (500, 503, 404):
        path = f"/{queue_id}/{status}"
        stack.target.statuses[path] = status
        tasks[status] = stack.failed_task(queue, f"s-{status}", path)
        stack.target.statuses[path] = 200
    return queue, tasks


def test_sweep_status_redrives_only_the_statuses_named(stack):
    queue, tasks = failing_by_status(stack, "clistatus")
    now = iso(stack.emu.clock.now())
    result = cli(
        stack,
        "sweep",
        queue,
        "--deployed-at",
        now,
        "--status",
        "5xx",
        "--status",
        "UNAVAILABLE",
        "--rate",
        "100",
        "--allow-any-queue",
        "--json",
    )
    assert result.exit_code == 0, result.output
    lines = json_lines(result.output)
    outcomes = {x["task"]: x["outcome"] for x in lines if x.get("event") == "redrive.outcome"}
    assert outcomes == {tasks[500]: "DISPATCHED", tasks[503]: "DISPATCHED"}
    (sweep,) = [x for x in lines if x.get("event") == "redrive.sweep"]
    assert sweep["statuses"] == "5xx,UNAVAILABLE" and sweep["skipped"] == {"OTHER_STATUS": 1}
    for status in (500, 503):
        wait_for(partial(stack.gone, tasks[status]), "the re-driven task to complete")
    assert runs_of(stack, tasks[404]) == 0

    # The table says which statuses were taken, and what was left alone.
    table = cli(stack, "sweep", queue, "--deployed-at", now, "--status", "404", "--allow-any-queue")
    assert table.exit_code == 0, table.output
    assert "statuses 404" in table.output and "DISPATCHED" in table.output
    wait_for(lambda: stack.gone(tasks[404]), "the 404 task, re-driven on its own")


def test_sweep_takes_the_configured_default_and_any_overrides_it(stack):
    queue, tasks = failing_by_status(stack, "clidefault")
    now = iso(stack.emu.clock.now())
    env = {"REDRIVE_SWEEP_STATUSES": "404"}
    args = ["sweep", queue, "--deployed-at", now, "--dry-run", "--allow-any-queue", "--json"]
    default = json_lines(cli(stack, *args, **env).output)
    assert {x["task"] for x in default if x.get("event") == "redrive.outcome"} == {tasks[404]}
    every = json_lines(cli(stack, *args, "--status", "any", **env).output)
    assert {x["task"] for x in every if x.get("event") == "redrive.outcome"} == set(tasks.values())
    assert sum(runs_of(stack, t) for t in tasks.values()) == 0


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("teapot", "'teapot' is not an HTTP status"),
        ("200", "'200' is not a failed HTTP status"),
        ("any,500", "`any` stands alone"),
    ],
)
def test_a_bad_status_is_a_usage_error(stack, value, needle):
    queue = "projects/demo/locations/local1/queues/clibad"
    result = cli(
        stack, "sweep", queue, "--deployed-at", iso(stack.emu.clock.now()), "--status", value
    )
    assert result.exit_code == 2 and needle in result.output
    assert "--status" in result.output


def test_a_bad_configured_default_is_a_usage_error(stack):
    queue, _ = failing_by_status(stack, "clibadenv")
    now = iso(stack.emu.clock.now())
    result = cli(stack, "sweep", queue, "--deployed-at", now, REDRIVE_SWEEP_STATUSES="teapot")
    assert result.exit_code == 2 and "REDRIVE_SWEEP_STATUSES" in result.output


# --- sweep --plan -------------------------------------------------------------------------------


def snapshot(stack: Stack, *queues: str) -> dict[str, Any]:
    """Every task of the queues (name → dispatch count, schedule) and the calls made so far."""
    tasks = {
        t.name: (t.dispatch_count, t.schedule_time.timestamp())
        for q in queues
        for t in stack.client.list_tasks(request={"parent": q})
    }
    return {"tasks": tasks, "calls": dict(stack.emu.control.call_counts())}


def test_sweep_plan_prints_the_plan_and_changes_nothing(stack):
    queue, tasks = failing_by_status(stack, "cliplan")
    stack.task(queue, "later", "/cliplan/later", schedule_in_s=3600)  # never attempted
    claims = stack.claims()
    now = iso(stack.emu.clock.now())
    env = {"REDRIVE_CLAIMS_QUEUE": claims, "REDRIVE_RUN_QUOTA_PER_MIN": "60"}
    before = snapshot(stack, queue, claims)
    args = ["sweep", queue, "--deployed-at", now, "--allow-any-queue", "--plan"]

    shown = cli(stack, *args, "--status", "5xx", "--rate", "0.5", **env)
    as_json = cli(stack, *args, "--json", **env)

    assert shown.exit_code == 0 and as_json.exit_code == 0, shown.output + as_json.output
    after = snapshot(stack, queue, claims)
    assert after["tasks"] == before["tasks"]  # no claim written, no task run, re-created, moved
    made = {
        k.rpartition(".")[2] for k, v in after["calls"].items() if v != before["calls"].get(k, 0)
    }
    assert made <= {"ListTasks", "GetQueue"}, made
    assert sum(runs_of(stack, t) for t in tasks.values()) == 0

    (planned,) = json_lines(as_json.output)  # the plan line only: nothing else happened
    assert planned["event"] == "redrive.plan" and planned["counted"] is True
    assert planned["tasks_seen"] == 4 and planned["selected"] == 3
    assert planned["skipped"] == {"NEVER_ATTEMPTED": 1}
    assert planned["by_status"] == {
        "INTERNAL (HTTP 500)": 1,
        "UNAVAILABLE (HTTP 503)": 1,
        "NOT_FOUND (HTTP 404)": 1,
    }
    (q,) = planned["per_queue"]
    assert q["method"] == "run" and "auto: 3 task(s) fit" in q["why"]
    assert q["rate_per_s"] == 1.0 and "RunTask quota" in q["limited_by"]
    assert planned["eta_s"] == 3.0 and planned["mode"] == "direct"
    # The table: the same plan with the status filter, the throttle at 0.5/s bounding it.
    text = " ".join(shown.output.split())
    assert "redrive sweep --plan" in text and "Nothing was done" in text
    assert "2 of 4 task(s) selected" in text and "ETA 4.0 s" in text
    assert "REDRIVE_DIRECT_RATE_PER_S=0.5" in text
    assert "other status 1" in text and "never attempted 1" in text


def test_sweep_plan_of_a_queue_not_allowed_or_missing(stack):
    queue, _ = failing_by_status(stack, "cliplanna")
    now = iso(stack.emu.clock.now())
    refused = cli(stack, "sweep", queue, "--deployed-at", now, "--plan")
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "not allowed" in text and "--allow-any-queue" in text
    missing = "projects/demo/locations/local1/queues/cliplan-missing"
    gone = cli(stack, "sweep", missing, "--deployed-at", now, "--plan", "--allow-any-queue")
    assert gone.exit_code == 2 and "NOT_FOUND" in gone.output


def test_a_sweep_starts_with_its_plan(stack):
    queue, tasks = failing_by_status(stack, "cliplanfirst")
    now = iso(stack.emu.clock.now())
    args = ["sweep", queue, "--deployed-at", now, "--rate", "100", "--allow-any-queue"]
    result = cli(stack, *args, "--json", REDRIVE_RUN_QUOTA_PER_MIN="6000")
    lines = json_lines(result.output)
    assert lines[0]["event"] == "redrive.plan"
    assert lines[0]["selected"] == 3 and lines[0]["per_queue"][0]["rate_per_s"] == 100.0
    assert lines[-1]["event"] == "redrive.sweep" and lines[-1]["counts"] == {"DISPATCHED": 3}
    for task in tasks.values():
        wait_for(partial(stack.gone, task), "the re-driven task to complete")


def test_a_sweep_whose_fix_does_not_work_halts_after_its_canaries(stack):
    queue = stack.queue("clihalt")
    tasks = [stack.failed_task(queue, f"h-{i}", f"/clihalt/{i}") for i in range(6)]
    at = iso(stack.emu.clock.now())
    args = ["sweep", queue, "--deployed-at", at, "--allow-any-queue"]
    result = cli(stack, *args, REDRIVE_CANARY_TIMEOUT_S="20")
    assert result.exit_code == 5, result.output
    said = flat(result.stdout)
    assert "HALTED" in said
    assert flat("3 of 3 canaries failed again (INTERNAL (HTTP 500) x3)") in said
    assert flat("(3 task(s) left alone)") in said
    assert sum(runs_of(stack, t) for t in tasks) == 3  # the canaries, nothing else
