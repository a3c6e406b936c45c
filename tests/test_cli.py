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
    for line in ("0  done", "1  a task", "2  usage", "3  not finished", "4  setup problem"):
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
    assert lines[0]["event"] == "redrive.plan" and lines[0]["selected"] == 4  # the plan first
    assert {x["task"]: x["outcome"] for x in lines[1:-1]} == dict.fromkeys(tasks, "DISPATCHED")
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
    # Refused to the plan's count and to the sweep's listing.
    stack.emu.control.fail("ListTasks", grpc.StatusCode.PERMISSION_DENIED, times=2)
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
    assert lines[0]["event"] == "redrive.plan"
    assert lines[1]["task"] == task and lines[1]["outcome"] == "DISPATCHED"
    assert lines[-1]["outcome"] == "SWEEP"
    usage = subprocess.run(
        [*command, "sweep", queue], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2 and "--deployed-at" in usage.stderr


def one_line(output: str) -> str:
    """The output, which must be a single line (no traceback): that line."""
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def flat(text: str) -> str:
    """Text without any whitespace: wrapped lines compare equal to the unwrapped text."""
    return "".join(text.split())


def test_a_failed_sweep_says_why_and_its_record_is_honest(stack):
    queue = stack.queue("sweepwhy")
    stack.failed_task(queue, "w-1", "/sweepwhy/fail")
    at = iso(stack.emu.clock.now())
    args = ["sweep", queue, "--deployed-at", at, "--allow-any-queue"]
    stack.emu.control.fail("ListTasks", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        human = cli(stack, *args, REDRIVE_RETRY_DEADLINE_S="0.3")
        machine = cli(stack, *args, "--json", REDRIVE_RETRY_DEADLINE_S="0.3")
    finally:
        stack.emu.control.clear()
    assert human.exit_code == 1 and machine.exit_code == 1
    # The human table names the queue and the reason, and what was given up on.
    assert flat(f"queue {queue}: listing tasks failed") in flat(human.stdout)
    assert "UNAVAILABLE" in human.stdout and "gave up" in human.stdout
    assert "ListTasks" in human.stdout and "REDRIVE_RETRY_DEADLINE_S=0.3" in flat(human.stdout)
    # Not a terminal: no progress bar on stdout, and with --json nothing there but the records.
    assert "sweeping" not in human.stdout and "retrying for up to" in human.stderr
    assert all(line.startswith("{") for line in machine.stdout.splitlines())
    assert "gave up after" in machine.stderr
    # The SWEEP line: a queue not listed is no complete sweep, and it is an ERROR.
    summary = json_lines(machine.stdout)[-1]
    assert summary["outcome"] == "SWEEP" and summary["queue_outcomes"] == {queue: "FAILED"}
    assert summary["complete"] is False and summary["severity"] == "ERROR"
    assert "INCOMPLETE" in summary["message"]

    stack.emu.control.fail("RunTask", grpc.StatusCode.PERMISSION_DENIED, times=-1)
    try:
        denied = cli(stack, *args)
        denied_json = cli(stack, *args, "--json")
    finally:
        stack.emu.control.clear()
    assert denied.exit_code == 1 and denied_json.exit_code == 1
    (task_line,) = [x for x in json_lines(denied_json.stdout) if x["event"] == "redrive.outcome"]
    assert task_line["outcome"] == "PERMISSION_DENIED"
    assert (
        "PERMISSION_DENIED" in denied.stdout and "task queues/sweepwhy/tasks/w-1" in denied.stdout
    )
    assert flat(task_line["reason"]) in flat(denied.stdout)  # the whole reason, wrapped
    summary = json_lines(denied_json.stdout)[-1]
    assert summary["severity"] == "ERROR" and "with FAILED tasks" in summary["message"]


def test_reasons_wrap_and_are_never_cut(stack):
    queue = stack.queue("wrap")
    task = stack.failed_task(queue, "a-task-with-a-rather-long-name-to-wrap", "/wrap/fail")
    before = iso(stack.emu.clock.now() - timedelta(hours=1))
    args = ["run", task, "--deployed-at", before, "--allow-any-queue"]
    (record,) = json_lines(cli(stack, *args, "--json").stdout)
    assert record["outcome"] == "SKIPPED_FIX_NOT_DEPLOYED"
    failed_at = record["task_state"]["last_dispatch_time"]
    assert failed_at in record["reason"] or failed_at[:19] in record["reason"]
    for columns in ("140", "60"):
        human = cli(stack, *args, COLUMNS=columns)
        assert human.exit_code == 0 and "…" not in human.stdout
        assert flat(record["reason"]) in flat(human.stdout)
        assert failed_at in human.stdout  # the failure time, whole


def test_a_run_that_gives_up_says_on_what_with_only_the_record_on_stdout(stack):
    from redrive_tools.devserver import free_port

    # Nothing listens there: every GetTask is refused, retried until REDRIVE_RETRY_DEADLINE_S.
    nowhere = f"127.0.0.1:{free_port()}"
    task = "projects/demo/locations/local1/queues/nowhere/tasks/t-1"
    env = {"CLOUD_TASKS_EMULATOR_HOST": nowhere, "REDRIVE_RETRY_DEADLINE_S": "2"}
    args = ["run", task, "--fix-check", "none", "--allow-any-queue"]
    machine = CliRunner().invoke(main, [*args, "--json"], env=env)
    assert machine.exit_code == 1
    (record,) = json_lines(machine.stdout)
    assert machine.stdout.strip().count("\n") == 0 and record["outcome"] == "FAILED"
    # Not a terminal: one line when the call is retried, and the final reason, on stderr.
    assert f"Cloud Tasks at {nowhere} did not answer GetTask" in machine.stderr
    assert "retrying for up to 2 s (REDRIVE_RETRY_DEADLINE_S)" in machine.stderr
    assert "gave up after" in machine.stderr and f"emulator running at {nowhere}" in machine.stderr
    human = CliRunner().invoke(main, args, env=env)
    assert human.exit_code == 1 and "FAILED" in human.stdout
    assert "waited" in human.stdout and flat("gave up after") in flat(human.stdout)


def test_missing_google_credentials_is_one_line_and_exit_4(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDRIVE_", "CLOUD_", "GOOGLE_", "GCE_", "CLOUDSDK_"))
    }
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        # No metadata server either: where google-auth would look for one, nothing answers.
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
        REDRIVE_ALLOWED_QUEUES="projects/p/locations/l/queues/q",
    )
    command = [
        sys.executable,
        "-c",
        "from redrive_tools.cli import main; main(prog_name='redrive')",
    ]
    for args in (
        ["run", "projects/p/locations/l/queues/q/tasks/t", "--fix-check", "none"],
        ["sweep", "projects/p/locations/l/queues/q", "--deployed-at", "2026-01-01T00:00:00Z"],
        ["inspect", "projects/p/locations/l/queues/q"],
    ):
        done = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 4, done.stderr
        line = one_line(done.stderr)
        assert "no Google credentials" in line and "gcloud auth application-default login" in line
        assert "CLOUD_TASKS_EMULATOR_HOST" in line and done.stdout == ""


def test_emulator_port_in_use_is_one_line_and_exit_4():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args in (["--grpc-port", port, "--rest-port", "0"], ["--rest-port", port]):
            result = CliRunner().invoke(main, ["emulator", *args])
            assert result.exit_code == 4, result.output
            line = one_line(result.output)
            assert line.startswith("redrive emulator: port ") and "already in use" in line
        same = CliRunner().invoke(main, ["emulator", "--grpc-port", "9", "--rest-port", "9"])
        assert same.exit_code == 4 and "both 9" in one_line(same.output)
        standalone = subprocess.run(
            [sys.executable, "-m", "cloudtasks_emulator", "--grpc-port", port],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert standalone.returncode == 4
    assert one_line(standalone.stderr).startswith(f"cloudtasks-emulator: port {port} ")


def test_a_future_deployed_at_is_refused(stack):
    queue = stack.queue("future")
    task = stack.failed_task(queue, "f-1", "/future/fail")
    stack.target.statuses["/future/fail"] = 200
    ahead = iso(stack.emu.clock.now() + timedelta(hours=1))
    for args in (
        ["run", task, "--deployed-at", ahead],
        ["sweep", queue, "--deployed-at", ahead, "--json"],
    ):
        result = cli(stack, *args, "--allow-any-queue")
        assert result.exit_code == 2 and result.stdout == ""
        line = one_line(result.stderr)
        assert f"--deployed-at {ahead} is in the future" in line
        assert "REDRIVE_CLOCK_SKEW_S=30s" in line
    # Within the tolerated skew it is no typo.
    soon = iso(stack.emu.clock.now() + timedelta(seconds=5))
    assert (
        cli(stack, "run", task, "--deployed-at", soon, "--dry-run", "--allow-any-queue").exit_code
        == 0
    )
    assert runs_of(stack, task) == 0


def test_a_queue_not_allowed_points_at_allow_any_queue(stack):
    queue = stack.queue("notallowed")
    task = stack.failed_task(queue, "n-1", "/notallowed/fail")
    at = iso(stack.emu.clock.now())
    human = cli(stack, "run", task, "--fix-check", "none")
    assert human.exit_code == 2 and "--allow-any-queue" in human.stdout
    machine = cli(stack, "run", task, "--fix-check", "none", "--json")
    assert machine.exit_code == 2 and len(json_lines(machine.stdout)) == 1
    assert machine.stdout.count("\n") == 1 and "--allow-any-queue" in machine.stderr
    swept = cli(stack, "sweep", queue, "--deployed-at", at)
    assert swept.exit_code == 2 and "--allow-any-queue" in swept.stdout
    assert "REDRIVE_ALLOWED_QUEUES is empty" in swept.stdout  # the reason, in the table
    swept_json = cli(stack, "sweep", queue, "--deployed-at", at, "--json")
    assert swept_json.exit_code == 2 and "--allow-any-queue" in swept_json.stderr
    assert all(line.startswith("{") for line in swept_json.stdout.splitlines())
    assert runs_of(stack, task) == 0


def test_run_on_a_missing_queue_exits_2(stack):
    # The emulator answers as Cloud Tasks does: a missing queue is not a missing task.
    queue = "projects/demo/locations/local1/queues/no-such-queue"
    with pytest.raises(Exception, match="Queue does not exist"):
        stack.client.get_task(request={"name": f"{queue}/tasks/t"})
    for extra in ([], ["--json"]):
        result = cli(
            stack, "run", f"{queue}/tasks/t", "--fix-check", "none", "--allow-any-queue", *extra
        )
        assert result.exit_code == 2, result.output
        assert f"queue {queue} does not exist" in result.stderr
    human = cli(stack, "run", f"{queue}/tasks/t", "--fix-check", "none", "--allow-any-queue")
    assert "NOT_FOUND" in human.stdout
    assert flat("the task's queue does not exist (Cloud Tasks: NOT_FOUND") in flat(human.stdout)
    # A missing task in a queue that exists is still a reasoned NOT_FOUND: exit 0.
    existing = stack.queue("missingtask")
    gone = cli(stack, "run", f"{existing}/tasks/never", "--fix-check", "none", "--allow-any-queue")
    assert gone.exit_code == 0 and "NOT_FOUND" in gone.stdout and gone.stderr == ""


def test_an_attempt_without_an_answer_is_said_when_not_on_a_terminal(stack, monkeypatch):
    from redrive_tools import cli as cli_module

    queue = stack.queue("slow")
    task = stack.failed_task(queue, "slow-1", "/slow/fail")
    # One GetTask answers only after a while (a black-holed address never answers at all).
    monkeypatch.setattr(cli_module._Waiting, "SLOW_S", 0.2)
    stack.emu.control.delay("GetTask", 3.0, times=1)
    result = cli(
        stack, "run", task, "--fix-check", "none", "--dry-run", "--allow-any-queue", "--json"
    )
    assert result.exit_code == 0
    (record,) = json_lines(result.stdout)
    assert record["outcome"] == "DRY_RUN"
    line = one_line(result.stderr)
    assert f"still waiting for Cloud Tasks at {stack.emu.grpc_target}: GetTask" in line
    assert "REDRIVE_RPC_TIMEOUT_S=20s" in line and "REDRIVE_RETRY_DEADLINE_S=30s" in line
