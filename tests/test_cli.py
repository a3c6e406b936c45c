"""The `redrive` command line against the real emulator: click's CliRunner, and once as a
subprocess. The emulator and the application target are real local servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from click.testing import CliRunner, Result

from redrive_tools.cli import main
from redrive_tools.devserver import wait_for
from tests.integration.helpers import ROOT, Stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    world = Stack()
    try:
        yield world
    finally:
        world.stop()


def cli(stack: Stack, *args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env={**stack.emu.env(), **env})


def runs_of(stack: Stack, task: str) -> int:
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


def iso(when: Any) -> str:
    return str(when.isoformat().replace("+00:00", "Z"))


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("command", [[], ["run"], ["sweep"], ["inspect"], ["demo"]])
def test_help_documents_the_exit_codes(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    for line in ("0  done", "1  a task", "2  usage", "3  not finished"):
        assert line in result.output


def test_inspect_lists_failing_tasks_newest_first(stack):
    queue = stack.queue("inspect")
    names = [stack.failed_task(queue, f"in-{i}", "/inspect/fail") for i in range(3)]
    stack.task(queue, "in-later", "/inspect/later", schedule_in_s=3600)  # not failing
    result = cli(stack, "inspect", queue, "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.output)
    assert [r["task"] for r in rows] == names[::-1]
    assert [r["last_attempt"] for r in rows] == sorted(
        (r["last_attempt"] for r in rows), reverse=True
    )
    assert all(r["attempts"] == 1 and r["last_status"] for r in rows)
    assert all(r["next_schedule"] > r["last_attempt"] for r in rows)

    limited = json_lines(cli(stack, "inspect", queue, "--json", "--limit", "2").output)
    assert [r["task"] for r in limited] == names[:0:-1]
    table = cli(stack, "inspect", queue)
    assert (
        table.exit_code == 0 and "in-2" in table.output and "3 failing of 4 tasks" in table.output
    )


def test_inspect_errors(stack):
    assert cli(stack, "inspect", "not-a-queue").exit_code == 2
    missing = cli(stack, "inspect", "projects/demo/locations/local1/queues/nope")
    assert missing.exit_code == 2 and "not found" in missing.output


def test_run_is_guarded_and_honours_the_allowlist(stack):
    queue = stack.queue("runq")
    task = stack.failed_task(queue, "r-1", "/runq/fail")

    refused = cli(stack, "run", task, "--fix-check", "none", "--json")
    assert refused.exit_code == 2
    (line,) = json_lines(refused.output)
    assert line["outcome"] == "SKIPPED_NOT_ALLOWED" and runs_of(stack, task) == 0

    dry = cli(stack, "run", task, "--fix-check", "none", "--dry-run", "--allow-any-queue")
    assert dry.exit_code == 0 and "DRY_RUN" in dry.output and runs_of(stack, task) == 0

    # A fix deployed before the failure is no fix.
    before = iso(stack.emu.clock.now() - timedelta(hours=1))
    early = cli(stack, "run", task, "--deployed-at", before, "--json", REDRIVE_ALLOWED_QUEUES=queue)
    assert json_lines(early.output)[0]["outcome"] == "SKIPPED_FIX_NOT_DEPLOYED"
    assert early.exit_code == 0 and runs_of(stack, task) == 0

    stack.target.statuses["/runq/fail"] = 200
    now = iso(stack.emu.clock.now())
    done = cli(stack, "run", task, "--deployed-at", now, "--json", REDRIVE_ALLOWED_QUEUES=queue)
    assert done.exit_code == 0, done.output
    (line,) = json_lines(done.output)
    assert line["outcome"] == "DISPATCHED" and line["entry_point"] == "cli"
    assert line["fix"]["strategy"] == "static" and line["run"]["dispatch_count_after"] == 2
    wait_for(lambda: stack.gone(task), "the re-driven task to complete")
    again = cli(stack, "run", task, "--fix-check", "none", "--allow-any-queue")
    assert again.exit_code == 0 and "NOT_FOUND" in again.output
    assert runs_of(stack, task) == 1


def test_run_exit_codes_for_failures_and_bad_input(stack):
    queue = stack.queue("runerr")
    task = stack.failed_task(queue, "e-1", "/runerr/fail")
    stack.emu.control.fail("GetTask", grpc.StatusCode.PERMISSION_DENIED, times=1)
    denied = cli(stack, "run", task, "--fix-check", "none", "--allow-any-queue")
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in denied.output
    stack.emu.control.fail("GetTask", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        failed = cli(
            stack,
            "run",
            task,
            "--fix-check",
            "none",
            "--allow-any-queue",
            REDRIVE_RETRY_DEADLINE_S="0.2",
        )
    finally:
        stack.emu.control.clear()
    assert failed.exit_code == 1 and "FAILED" in failed.output
    assert cli(stack, "run", "projects/x/tasks/bad name").exit_code == 2
    assert cli(stack, "run", task, "--deployed-at", "yesterday").exit_code == 2
    bad_env = cli(stack, "run", task, REDRIVE_TASKS_API="v9")
    assert bad_env.exit_code == 2 and "REDRIVE_TASKS_API" in bad_env.output
    assert cli(stack, "run", task, "--fix-check", "maybe").exit_code == 2
    assert runs_of(stack, task) == 0


def test_sweep_redrives_each_failed_task_once(stack):
    queue = stack.queue("sweepq")
    tasks = [stack.failed_task(queue, f"s-{i}", "/sweepq/fail") for i in range(4)]
    later = stack.task(queue, "s-later", "/sweepq/later", schedule_in_s=3600)
    stack.target.statuses["/sweepq/fail"] = 200
    at = iso(stack.emu.clock.now())

    dry = cli(stack, "sweep", queue, "--deployed-at", at, "--dry-run", "--allow-any-queue")
    assert dry.exit_code == 0 and "DRY_RUN" in dry.output and "DRY RUN" in dry.output
    assert sum(runs_of(stack, t) for t in tasks) == 0

    result = cli(
        stack,
        "sweep",
        queue,
        "--deployed-at",
        at,
        "--rate",
        "200",
        "--json",
        REDRIVE_ALLOWED_QUEUES=queue,
    )
    assert result.exit_code == 0, result.output
    lines = json_lines(result.output)
    assert {x["task"]: x["outcome"] for x in lines[:-1]} == dict.fromkeys(tasks, "DISPATCHED")
    summary = lines[-1]
    assert summary["event"] == "redrive.sweep" and summary["counts"] == {"DISPATCHED": 4}
    assert summary["skipped"] == {"NEVER_ATTEMPTED": 1} and summary["complete"] is True
    for task in tasks:
        wait_for(lambda t=task: stack.gone(t), "the re-driven task to complete")  # type: ignore[misc]
        assert runs_of(stack, task) == 1
    assert runs_of(stack, later) == 0

    again = cli(stack, "sweep", queue, "--deployed-at", at, "--allow-any-queue")
    assert again.exit_code == 0 and "1 tasks seen" in again.output.replace("\n", " ")
    assert sum(runs_of(stack, t) for t in tasks) == 4


def test_sweep_exit_codes(stack):
    queue = stack.queue("sweeperr")
    stack.failed_task(queue, "x-1", "/sweeperr/fail")
    at = iso(stack.emu.clock.now())
    not_allowed = cli(stack, "sweep", queue, "--deployed-at", at)
    assert not_allowed.exit_code == 2 and "SKIPPED_NOT_ALLOWED" in not_allowed.output
    missing = "projects/demo/locations/local1/queues/ghost"
    assert cli(stack, "sweep", missing, "--deployed-at", at, "--allow-any-queue").exit_code == 2
    assert cli(stack, "sweep", queue).exit_code == 2  # --deployed-at is required
    assert cli(stack, "sweep", "queue-x", "--deployed-at", at).exit_code == 2
    assert cli(stack, "sweep", queue, "--deployed-at", at, "--rate", "0").exit_code == 2
    stack.emu.control.delay("ListTasks", 0.5, times=1)
    cut = cli(stack, "sweep", queue, "--deployed-at", at, "--budget", "0.1", "--allow-any-queue")
    assert cut.exit_code == 3 and "INCOMPLETE" in cut.output
    stack.emu.control.fail("ListTasks", grpc.StatusCode.PERMISSION_DENIED, times=1)
    denied = cli(stack, "sweep", queue, "--deployed-at", at, "--allow-any-queue", "--json")
    assert denied.exit_code == 1
    assert json_lines(denied.output)[-1]["queue_outcomes"] == {queue: "PERMISSION_DENIED"}


def test_cli_as_a_subprocess(stack):
    queue = stack.queue("subproc")
    task = stack.failed_task(queue, "sp-1", "/subproc/fail")
    stack.target.statuses["/subproc/fail"] = 200
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDRIVE_", "CLOUD_"))}
    env.update(stack.emu.env(), PYTHONPATH=str(ROOT / "src"), REDRIVE_ALLOWED_QUEUES=queue)
    command = [
        sys.executable,
        "-c",
        "from redrive_tools.cli import main; main(prog_name='redrive')",
    ]
    done = subprocess.run(
        [*command, "sweep", queue, "--deployed-at", iso(stack.emu.clock.now()), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    assert lines[0]["task"] == task and lines[0]["outcome"] == "DISPATCHED"
    assert lines[-1]["outcome"] == "SWEEP"
    usage = subprocess.run(
        [*command, "sweep", queue], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2 and "--deployed-at" in usage.stderr
