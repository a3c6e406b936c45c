"""`redrive parked list/show/restore/purge` against the real emulator (click's CliRunner): tasks
are parked through the runtime's own pipeline first, then the operator's commands act on them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from redrive_tools.commands import main
from redrive_tools.devserver import wait_for
from tests.integration.helpers import PARENT, Stack
from tests.integration.test_parking import (
    LONG_AGO,
    SECRET,
    failing_twice,
    make_queue,
    requests_to,
)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    world = Stack()
    try:
        yield world
    finally:
        world.stop()


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, str]:
    return {
        "origin": make_queue(stack, "cp-origin"),
        "other": make_queue(stack, "cp-other"),
        "parking": stack.queue("cp-parking", paused=True),
        "claims": stack.claims(),
    }


def env_of(stack: Stack, world: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": f"{world['origin']},{world['other']}",
        "REDRIVE_CLAIMS_QUEUE": world["claims"],
        "REDRIVE_PARKING_QUEUE": world["parking"],
        "REDRIVE_FIX_CHECK": "static",
        "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
        "REDRIVE_RETRY_DEADLINE_S": "1",
        **extra,
    }


def cli(stack: Stack, world: dict[str, str], *args: str, **env: str) -> Result:
    return CliRunner().invoke(main, ["parked", *args], env=env_of(stack, world, **env))


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def park(stack: Stack, world: dict[str, str], queue: str, name: str) -> tuple[str, str, str]:
    """A task failed twice, then parked through the pipeline (as the patrol parks it)."""
    from redrive import pipeline
    from redrive.core.config import Settings
    from redrive.core.decide import Failure, SignalRef
    from redrive.core.names import TaskName
    from redrive.runtime import Runtime

    task, path = failing_twice(stack, queue, name)
    rt = Runtime(Settings.from_env(env_of(stack, world, REDRIVE_MAX_SIGNAL_AGE="1h")))
    failure = Failure(TaskName.parse(task), rt.clock(), SignalRef("patrol", "patrol"), 2)
    result = pipeline.process(pipeline.Request(failure, pipeline.Act.PARK, owner="test"), rt)
    assert result.outcome.value == "PARKED", result.reason
    assert result.parked is not None
    return task, path, str(result.parked["copy"])


def test_list_show_restore_and_purge(stack: Stack, world: dict[str, str]) -> None:
    first, first_path, first_copy = park(stack, world, world["origin"], "cp-a")
    second, _, second_copy = park(stack, world, world["origin"], "cp-b")
    third, _, _ = park(stack, world, world["other"], "cp-c")

    listed = cli(stack, world, "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["origin"]: r for r in json_lines(listed.output)}
    assert set(rows) >= {first, second, third}
    row = rows[first]
    assert row["copy"] == first_copy and row["attempts"] == 2 and row["last_status"] == "INTERNAL"
    assert row["why"] == "last_attempt" and 30.5 < row["days_left"] <= 31
    only = json_lines(cli(stack, world, "list", "--json", "--queue", world["other"]).output)
    assert [r["origin"] for r in only] == [third]
    table = cli(stack, world, "list")
    assert table.exit_code == 0 and "cp-a" in table.output and "days left" in table.output
    assert "parked task(s) in" in table.output

    shown = cli(stack, world, "show", first, "--json")
    assert shown.exit_code == 0, shown.output
    (info,) = json_lines(shown.output)
    assert info["copy"] == first_copy and info["request"]["method"] == "PUT"
    assert SECRET not in shown.output and "?invoice" not in shown.output  # no body, no query
    assert {"Content-Type", "X-Secret"} <= set(info["request"]["headers"])
    with_body = json_lines(cli(stack, world, "show", first_copy, "--json", "--body").output)[0]
    assert SECRET in with_body["request"]["body"] and with_body["request"]["url"].endswith("441")
    assert cli(stack, world, "show", f"{world['origin']}/tasks/never").exit_code == 2

    assert cli(stack, world, "restore").exit_code == 2  # which tasks must be said
    dry = cli(stack, world, "restore", "--task", first, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert [x["outcome"] for x in json_lines(dry.output) if x.get("task") == first] == ["DRY_RUN"]
    assert stack.get(first_copy) is not None

    done = cli(stack, world, "restore", "--task", first, "--json")
    assert done.exit_code == 0, done.output
    (line,) = [x for x in json_lines(done.output) if x.get("task") == first]
    assert line["outcome"] == "RESTORED" and line["entry_point"] == "cli"
    assert stack.gone(first_copy)
    wait_for(lambda: len(requests_to(stack, first_path)) == 3, "the restored task's request")
    again = cli(stack, world, "restore", "--task", first, "--json")
    assert [x for x in json_lines(again.output) if x.get("task") == first] == []  # not parked

    refused = cli(stack, world, "purge", "--queue", world["origin"])
    assert refused.exit_code == 2 and "--yes" in refused.output  # no terminal to confirm on
    assert stack.get(second_copy) is not None
    purged = cli(stack, world, "purge", "--queue", world["origin"], "--yes", "--json")
    assert purged.exit_code == 0, purged.output
    assert [x["origin"] for x in json_lines(purged.output)] == [second]
    assert stack.gone(second_copy)
    left = {r["origin"] for r in json_lines(cli(stack, world, "list", "--json").output)}
    assert first not in left and second not in left and third in left


def test_restore_needs_the_claims_queue_and_an_allowed_origin(
    stack: Stack, world: dict[str, str]
) -> None:
    task, _, copy = park(stack, world, world["other"], "cp-d")
    no_claims = cli(stack, world, "restore", "--all", REDRIVE_CLAIMS_QUEUE="")
    assert no_claims.exit_code == 2 and "REDRIVE_CLAIMS_QUEUE" in no_claims.output
    refused = cli(
        stack, world, "restore", "--task", task, "--json", REDRIVE_ALLOWED_QUEUES=world["origin"]
    )
    assert refused.exit_code == 2, refused.output
    outcomes = [x["outcome"] for x in json_lines(refused.output) if x.get("task") == task]
    assert outcomes == ["SKIPPED_NOT_ALLOWED"] and stack.get(copy) is not None
    allowed = cli(
        stack,
        world,
        "restore",
        "--queue",
        world["other"],
        "--allow-any-queue",
        REDRIVE_ALLOWED_QUEUES=world["origin"],
    )
    assert allowed.exit_code == 0, allowed.output
    assert "RESTORED" in allowed.output and "parked task(s) looked at" in allowed.output
    assert stack.gone(copy)


def test_without_a_parking_queue_it_says_what_to_set(stack: Stack, world: dict[str, str]) -> None:
    result = cli(stack, world, "list", REDRIVE_PARKING_QUEUE="")
    assert result.exit_code == 2 and "REDRIVE_PARKING_QUEUE" in result.output
    missing = cli(stack, world, "list", "--parking-queue", f"{PARENT}/queues/no-such-parking")
    assert missing.exit_code == 2 and "not found" in missing.output
