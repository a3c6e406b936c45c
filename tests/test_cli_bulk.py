"""The bulk re-drive commands of `redrive` against the real emulator (click's CliRunner; the
emulator and the application target are real local servers): `sweep --status`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from click.testing import CliRunner, Result

from redrive_tools.cli import main
from redrive_tools.devserver import wait_for
from tests.integration.helpers import Stack


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
