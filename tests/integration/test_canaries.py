"""Canaries first, then the rest — through the real servers: deploy messages reach handle_signal
under functions-framework, which sweeps the emulator's queue in direct mode, or (queued mode)
creates canary jobs and a gate job that run_job (its own functions-framework) judges and then
releases or halts. The target answers 200 once fixed, 500 while not."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from redrive.core.decide import SignalRef
from redrive.core.redrives import redrive_id
from redrive_tools.cli import main
from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import FunctionServer, Stack, now_rfc3339, post_signal

N = 8
CANARIES = 3
_ids = itertools.count()


class World:
    """One queue of N failed tasks, handle_signal and (queued) run_job serving main.py."""

    def __init__(self, stack: Stack, logs: Path, *, queued: bool, **env: str) -> None:
        tag = next(_ids)
        self.stack = stack
        self._sent: dict[str, tuple[bytes, str]] = {}
        self.queue = stack.queue(f"cn-{tag}")
        self.paths = [f"/cn-{tag}/{i}" for i in range(N)]
        self.tasks = [
            stack.failed_task(self.queue, f"t-{i}", path) for i, path in enumerate(self.paths)
        ]
        self.redrive = stack.queue(f"redrive-cn-{tag}", min_backoff_s=0.5) if queued else None
        job_port = free_port()
        base = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": self.queue,
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_RETRY_DEADLINE_S": "2",
            "REDRIVE_RUN_QUOTA_PER_MIN": "6000",
            "REDRIVE_DIRECT_RATE_PER_S": "100",
            "REDRIVE_METHOD": "run",
            "REDRIVE_CLAIMS_QUEUE": stack.claims(f"claims-cn-{tag}"),
            "REDRIVE_CANARY_TIMEOUT_S": "30",
            **env,
        }
        if self.redrive is not None:
            base |= {
                "REDRIVE_QUEUE": self.redrive,
                "REDRIVE_JOB_URL": f"http://127.0.0.1:{job_port}/",
            }
        self.job = (
            FunctionServer("run_job", "http", base, logs / "run_job.log", port=job_port)
            if queued
            else None
        )
        self.signal = FunctionServer("handle_signal", "cloudevent", base, logs / "signal.log")

    def stop(self) -> None:
        self.signal.stop()
        if self.job is not None:
            self.job.stop()

    def fix(self) -> None:
        for path in self.paths:
            self.stack.target.statuses[path] = 200

    def deploy(self, message_id: str) -> int:
        """Publish a deploy message; the same id again is a redelivery: the same payload."""
        if message_id not in self._sent:
            deployed = {"deployed": {"queues": [self.queue], "at": now_rfc3339()}}
            self._sent[message_id] = (json.dumps(deployed).encode(), now_rfc3339())
        payload, published = self._sent[message_id]
        return post_signal(self.signal, payload, message_id, published).status_code

    def forced(self) -> dict[str, int]:
        """Task → RunTask calls that dispatched it."""
        runs = [r for r in self.stack.emu.control.run_log() if r.code == grpc.StatusCode.OK]
        return {t: sum(1 for r in runs if r.task == t) for t in self.tasks}

    def attempts(self) -> list[str]:
        """The target's requests for this queue's paths, in order of arrival."""
        return [p for p, _, _ in self.stack.target.requests if p in self.paths]

    def lines(self, event: str, server: FunctionServer | None = None) -> list[dict[str, Any]]:
        return [x for x in (server or self.signal).lines() if x.get("event") == event]

    def halted(self, server: FunctionServer | None = None) -> list[dict[str, Any]]:
        return [x for x in self.lines("redrive.outcome", server) if x.get("outcome") == "HALTED"]

    def waiting_jobs(self) -> list[str]:
        assert self.redrive is not None
        return [t.name for t in self.stack.client.list_tasks(request={"parent": self.redrive})]


@pytest.fixture
def make_world(stack: Stack, tmp_path: Path) -> Iterator[Any]:
    made: list[World] = []

    def make(*, queued: bool, **env: str) -> World:
        logs = tmp_path / f"w{len(made)}"
        logs.mkdir()
        world = World(stack, logs, queued=queued, **env)
        made.append(world)
        return world

    try:
        yield make
    finally:
        for world in made:
            world.stop()


def test_direct_fix_works_canaries_first_then_the_rest(make_world):
    world = make_world(queued=False)
    world.fix()
    assert world.deploy("cn-works") == 200
    assert world.forced() == dict.fromkeys(world.tasks, 1)  # every task forced once
    wait_for(lambda: all(world.stack.gone(t) for t in world.tasks), "every task to succeed")
    # The canaries are the first three forced attempts, all answered before any other.
    attempts = world.attempts()
    first = [r.task for r in world.stack.emu.control.run_log()][:CANARIES]
    assert set(attempts[:CANARIES]) == {world.paths[world.tasks.index(t)] for t in first}
    (sweep,) = world.lines("redrive.sweep")
    canaries = sweep["canaries"][world.queue]
    assert canaries["verdict"] == "release" and canaries["succeeded"] == CANARIES
    assert [c["watch"] for c in canaries["canaries"]] == first
    assert sweep["severity"] == "INFO" and sweep["counts"] == {"DISPATCHED": N}
    assert not world.halted()


def test_direct_fix_does_not_work_halts_after_the_canaries(make_world):
    world = make_world(queued=False)  # never fixed: every attempt answers 500
    assert world.deploy("cn-broken") == 200  # acknowledged: delivering it again would not help
    forced = world.forced()
    assert sum(forced.values()) == CANARIES and set(forced.values()) == {0, 1}
    untouched = [t for t, n in forced.items() if n == 0]
    for task in untouched:
        assert world.stack.get(task).dispatch_count == 1  # only its own first attempt
    (halt,) = world.halted()
    assert halt["severity"] == "ERROR" and halt["queue"] == world.queue
    assert "INTERNAL (HTTP 500)" in halt["message"] and halt["left"] == N - CANARIES
    assert halt["canaries"]["failed_again"] >= 1  # canaries launched before the wait
    (sweep,) = world.lines("redrive.sweep")
    assert sweep["severity"] == "ERROR" and "HALTED" in sweep["message"]
    assert sweep["redrive_id"] == redrive_id(SignalRef("deploy", "deploy", "cn-broken"))

    # The same message again (Pub/Sub delivers at least once): the halt holds.
    assert world.deploy("cn-broken") == 200
    assert world.forced() == forced
    assert "earlier delivery" in world.halted()[-1]["message"]

    # redrive status reads it back from the function's log: halted, what it left alone.
    result = CliRunner().invoke(
        main, ["status", "--log", str(world.signal.log_path), "--json"], env=world.stack.emu.env()
    )
    assert result.exit_code == 0, result.output
    (status,) = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    assert (status["state"], status["halted"], status["dispatched"]) == ("halted", 5, 3)
    assert status["halted_queues"] == [world.queue] and status["failed_again"] == 3


def test_direct_a_hanging_target_is_not_flooded(make_world):
    world = make_world(queued=False, REDRIVE_CANARY_TIMEOUT_S="3")
    for path in world.paths:
        world.stack.target.statuses[path] = "hang"
    assert world.deploy("cn-hang") == 200
    assert sum(world.forced().values()) == CANARIES
    (halt,) = world.halted()
    assert "no canary answered within" in halt["message"]
    world.stack.target.release()


def test_queued_fix_works_gate_releases_the_rest(make_world):
    world = make_world(queued=True)
    world.fix()
    assert world.deploy("cn-q-works") == 200
    gated = [x for x in world.lines("redrive.outcome") if x.get("outcome") == "GATED"]
    assert len(gated) == 1 and gated[0]["queue"] == world.queue
    queued = [x for x in world.lines("redrive.outcome") if x.get("outcome") == "QUEUED"]
    assert len(queued) == CANARIES  # the rest waits for the gate
    assert world.job is not None
    wait_for(lambda: all(world.stack.gone(t) for t in world.tasks), "every task to succeed")
    assert world.forced() == dict.fromkeys(world.tasks, 1)
    gates = world.lines("redrive.gate", world.job)
    assert gates and gates[-1]["canaries"]["verdict"] == "release"
    # The release's own SWEEP line, in run_job: the other tasks' jobs.
    released = world.lines("redrive.sweep", world.job)
    assert (
        released
        and released[-1]["counts"].get("QUEUED", 0)
        + released[-1]["counts"].get("SKIPPED_DUPLICATE", 0)
        >= N - CANARIES
    )
    wait_for(lambda: not world.waiting_jobs(), "the redrive queue to drain")


def test_queued_fix_does_not_work_gate_halts(make_world):
    world = make_world(queued=True)
    assert world.deploy("cn-q-broken") == 200
    assert world.job is not None
    wait_for(lambda: world.halted(world.job), "the gate to halt")
    (halt,) = world.halted(world.job)
    assert halt["severity"] == "ERROR" and "INTERNAL (HTTP 500)" in halt["message"]
    assert halt["left"] == N - CANARIES
    wait_for(lambda: not world.waiting_jobs(), "the gate job to be done")
    forced = world.forced()
    assert sum(forced.values()) == CANARIES
    # A redelivered deploy message: no new canary job, no second gate.
    assert world.deploy("cn-q-broken") == 200
    assert world.forced() == forced and not world.waiting_jobs()


def test_queued_gate_under_redelivery_and_faults(make_world):
    world = make_world(queued=True)
    world.fix()
    control = world.stack.emu.control
    assert world.redrive is not None
    world.stack.client.pause_queue(request={"name": world.redrive})
    # The gate job's CreateTask (after the three canary jobs') fails: FAILED, delivered again.
    control.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, times=-1, after=CANARIES)
    try:
        assert world.deploy("cn-q-faults") == 500
    finally:
        control.clear()
    failed = [x for x in world.lines("redrive.outcome") if x.get("outcome") == "FAILED"]
    assert failed and "gate job" in failed[-1]["reason"]
    assert world.deploy("cn-q-faults") == 200
    jobs = world.waiting_jobs()
    assert len(jobs) == CANARIES + 1 and sum("/tasks/gate-" in j for j in jobs) == 1
    # Delivered again while the gate waits: the same jobs, no second gate.
    assert world.deploy("cn-q-faults") == 200
    assert sorted(world.waiting_jobs()) == sorted(jobs)
    # The gate's first looks at its canaries meet faults; it comes back and releases once.
    control.fail("GetTask", grpc.StatusCode.UNAVAILABLE, times=6)
    world.stack.client.resume_queue(request={"name": world.redrive})
    assert world.job is not None
    wait_for(lambda: all(world.stack.gone(t) for t in world.tasks), "every task to succeed")
    assert world.forced() == dict.fromkeys(world.tasks, 1)
    released = [x for x in world.lines("redrive.gate", world.job) if "release" in x["message"]]
    assert released


def test_direct_recreate_watches_the_copies_and_halts(make_world):
    world = make_world(
        queued=False,
        REDRIVE_METHOD="recreate",
        REDRIVE_RECREATE_DELAY_S="1",
    )
    assert world.deploy("cn-rc-broken") == 200
    recreated = [x for x in world.lines("redrive.outcome") if x.get("outcome") == "RECREATED"]
    assert len(recreated) == CANARIES
    (halt,) = world.halted()
    assert "INTERNAL (HTTP 500)" in halt["message"]
    copies = {x["run"]["copy"] for x in recreated}
    (sweep,) = world.lines("redrive.sweep")
    assert {c["watch"] for c in sweep["canaries"][world.queue]["canaries"]} == copies
    # The originals of the other tasks are untouched: still there, one attempt each.
    others = [t for t in world.tasks if t not in {x["task"] for x in recreated}]
    assert len(others) == N - CANARIES
    for task in others:
        assert world.stack.get(task).dispatch_count == 1


def test_direct_below_the_threshold_releases(make_world):
    world = make_world(queued=False, REDRIVE_CANARY_FAILURES="2")
    world.fix()
    world.stack.target.statuses[world.paths[0]] = 500  # the first canary fails again
    assert world.deploy("cn-threshold") == 200
    assert world.forced() == dict.fromkeys(world.tasks, 1)
    (sweep,) = world.lines("redrive.sweep")
    verdict = sweep["canaries"][world.queue]
    assert verdict["verdict"] == "release" and verdict["failed_again"] == 1
    assert not world.halted()


def test_no_canaries_when_the_queue_holds_no_more_than_them(make_world):
    world = make_world(queued=False, REDRIVE_CANARIES=str(N))
    assert world.deploy("cn-small") == 200  # never fixed, yet nothing is left to protect
    assert world.forced() == dict.fromkeys(world.tasks, 1)
    (sweep,) = world.lines("redrive.sweep")
    assert sweep["canaries"] is None and not world.halted()
