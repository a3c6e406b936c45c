"""A bulk restore looks for the originals with one listing of the origin queue, not a GetTask per
parked copy, and only where that is cheaper; whatever the listing says, an original still in its
queue (a park that never finished) is never restored over.

Real servers: the emulator (this module's own, so its call counters count these tests' calls),
parked copies made by a real patrol through functions-framework, `redrive parked restore` (the
CLI) and a deploy signal restoring them.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from click.testing import CliRunner

from redrive.core.names import TaskName
from redrive.core.parking import Parked, Why, parked_name
from redrive.sweep import GETS_PER_LISTED_PAGE, PAGE_SIZE
from redrive_tools.commands import main
from redrive_tools.devserver import wait_for
from tests.integration.helpers import Stack, function_server, now_rfc3339, post_signal
from tests.integration.test_parking import LONG_AGO, deploy, make_queue

BATCH = GETS_PER_LISTED_PAGE + 20
"""Restores in one origin queue: enough for the sweep to list it (one page saves as many GetTasks
as the rule asks)."""


def env_of(stack: Stack, origin: str, parking: str, **extra: str) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": origin,
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        "REDRIVE_PARKING_QUEUE": parking,
        "REDRIVE_FIX_CHECK": "static",
        "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
        "REDRIVE_MAX_SIGNAL_AGE": "3650d",
        "REDRIVE_RETRY_DEADLINE_S": "1",
        "REDRIVE_CANARIES": "0",  # the listing is the subject; canaries are tested elsewhere
        **extra,
    }


def failed_tasks(stack: Stack, queue: str, prefix: str, n: int) -> list[str]:
    """N tasks of `queue` whose first attempt failed (the queue allows 2: the next is the last)."""
    path = f"/rl/{prefix}"
    stack.target.statuses[path] = 500
    names = [stack.task(queue, f"{prefix}-{i}", path) for i in range(n)]
    wait_for(
        lambda: sum(1 for r in stack.target.requests if r[0].split("?")[0] == path) >= n,
        f"{n} failed first attempts",
        timeout_s=60,
    )
    wait_for(
        lambda: all("response_status" in stack.get(name).last_attempt for name in names),
        "the attempts recorded",
        timeout_s=30,
    )
    stack.target.statuses[path] = 200
    return names


def patrol(stack: Stack, env: dict[str, str], tmp_path: Path, expect: int) -> None:
    with function_server("handle_signal", "cloudevent", env, tmp_path / "patrol.log") as fn:
        answer = post_signal(fn, b'{"patrol": {}}', f"patrol-{tmp_path.name}", now_rfc3339())
        assert answer.status_code == 200, fn.outcomes()
        assert len(fn.outcomes(outcome="PARKED")) == expect, fn.outcomes()


def half_parked(stack: Stack, env: dict[str, str], task: str) -> str:
    """A park that stopped after its copy was made: the parked copy and the original both there
    (the original is deleted last)."""
    from redrive.core.config import Settings
    from redrive.core.state import TaskState
    from redrive.runtime import Runtime

    rt = Runtime(Settings.from_env(env))
    original = rt.tasks.read_original(TaskName.parse(task))
    state = TaskState.from_task(original)
    assert env["REDRIVE_PARKING_QUEUE"]
    copy = parked_name(
        TaskName.parse(f"{env['REDRIVE_PARKING_QUEUE']}/tasks/x").queue_name,
        TaskName.parse(task),
        state.dispatch_count,
        0,
    )
    parked = Parked.of(state, why=Why.LAST_ATTEMPT, api="v2", at=rt.clock(), owner="test")
    assert rt.tasks.create_parked(original, copy, parked.url(), rt.clock() + timedelta(days=30))
    return str(copy)


def restore_cli(env: dict[str, str], origin: str, exit_code: int = 0) -> list[dict[str, Any]]:
    done = CliRunner().invoke(main, ["parked", "restore", "--queue", origin, "--json"], env=env)
    lines = [json.loads(x) for x in done.output.splitlines() if x.startswith("{")]
    assert done.exit_code == exit_code, done.output[-2000:]
    return lines


def parked_batch(
    stack: Stack, queue_id: str, prefix: str, tmp_path: Path
) -> tuple[str, dict[str, str], list[str]]:
    """An origin queue (2 attempts, a day apart) whose BATCH tasks failed once and were then
    parked by a patrol: the queue, redrive's environment, and the parked tasks' names."""
    origin = make_queue(stack, queue_id, max_attempts=2, min_backoff_s=86400, max_backoff_s=86400)
    env = env_of(stack, origin, stack.queue(f"{queue_id}-parking", paused=True))
    parked = failed_tasks(stack, origin, prefix, BATCH)
    patrol(stack, env, tmp_path, BATCH)
    return origin, env, parked


def assert_each_ran_once_more(stack: Stack, path: str) -> None:
    """The BATCH tasks' failed first attempts, then one request each from its restored task."""

    def seen() -> int:
        return sum(1 for r in stack.target.requests if r[0].split("?")[0] == path)

    wait_for(lambda: seen() >= 2 * BATCH, "every restored task dispatched", timeout_s=60)
    time.sleep(0.5)  # a second run of any of them would land about now
    assert seen() == 2 * BATCH


def by_task(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {x["task"]: x["outcome"] for x in lines if x.get("task")}


def test_one_listing_answers_for_the_batch_and_an_unfinished_park_is_kept(
    stack: Stack, tmp_path: Path
) -> None:
    origin, env, parked = parked_batch(stack, "rl-origin", "p", tmp_path)
    assert all(stack.gone(task) for task in parked)
    (unfinished,) = failed_tasks(stack, origin, "u", 1)
    unfinished_copy = half_parked(stack, env, unfinished)

    before = stack.emu.control.call_counts()
    lines = restore_cli(env, origin, exit_code=3)  # 3: some of it is to be done again later
    spent = {
        k: v - before.get(k, 0) for k, v in stack.emu.control.call_counts().items() if "." not in k
    }
    outcomes = by_task(lines)
    assert [outcomes[task] for task in parked] == ["RESTORED"] * BATCH
    assert outcomes[unfinished] == "DEFERRED"  # its original is still in its queue
    assert stack.get(unfinished) is not None and stack.get(unfinished_copy) is not None
    # One FULL read per parked copy, one look at the only original the listing still held:
    # no GetTask per restore for its original.
    assert spent["GetTask"] == BATCH + 1 + 1, spent
    assert spent["ListTasks"] >= 2  # the parking queue, then the origin queue
    assert_each_ran_once_more(stack, "/rl/p")


def test_a_busy_origin_queue_means_a_look_per_restore(stack: Stack, tmp_path: Path) -> None:
    """The listing is skipped where it would cost more pages than it saves GetTasks: it stops
    after the pages the batch pays for, and each restore looks for its original itself."""
    origin, env, parked = parked_batch(stack, "rl-busy", "b", tmp_path)
    # More waiting tasks than one page: listing them would cost 2 pages, which BATCH restores
    # do not pay for.
    assert BATCH // GETS_PER_LISTED_PAGE < 2
    for i in range(PAGE_SIZE + 1):
        stack.task(origin, f"waiting-{i}", "/rl/waiting", schedule_in_s=86400)

    before = stack.emu.control.call_counts()
    outcomes = by_task(restore_cli(env, origin))
    spent = stack.emu.control.call_counts()
    assert [outcomes[task] for task in parked] == ["RESTORED"] * BATCH
    assert spent["GetTask"] - before.get("GetTask", 0) == 2 * BATCH
    # The parking queue, then the one origin page the batch pays for (it was not the last).
    assert spent["ListTasks"] - before.get("ListTasks", 0) == 2


def test_a_failed_origin_listing_falls_back_to_a_look_per_restore(
    stack: Stack, tmp_path: Path
) -> None:
    origin, env, parked = parked_batch(stack, "rl-fault", "f", tmp_path)

    before = stack.emu.control.call_counts()
    # The parking queue's listing (ListTasks #0) answers; the origin queue's fails every time.
    stack.emu.control.fail("ListTasks", grpc.StatusCode.UNAVAILABLE, times=-1, after=1)
    try:
        outcomes = by_task(restore_cli(env, origin))
    finally:
        stack.emu.control.clear()
    spent = stack.emu.control.call_counts()
    assert [outcomes[task] for task in parked] == ["RESTORED"] * BATCH
    assert spent["GetTask"] - before.get("GetTask", 0) == 2 * BATCH


def test_a_deploy_restores_a_batch_through_the_function(stack: Stack, tmp_path: Path) -> None:
    """The same, as production runs it: a deploy signal to handle_signal restores every parked
    task of the queue, with the listing; the target gets each restored task once."""
    origin, env, parked = parked_batch(stack, "rl-deploy", "d", tmp_path)

    before = stack.emu.control.call_counts()
    with function_server("handle_signal", "cloudevent", env, tmp_path / "deploy.log") as fn:
        answer = post_signal(fn, deploy(origin), "rl-deploy-1", now_rfc3339())
        assert answer.status_code == 200, fn.outcomes()
        restored = {x["task"] for x in fn.outcomes(outcome="RESTORED")}
    spent = stack.emu.control.call_counts()
    assert restored == set(parked)
    assert spent["GetTask"] - before.get("GetTask", 0) == BATCH
    assert_each_ran_once_more(stack, "/rl/d")
