"""One re-drive, one id, a status to poll, a cancel button — through the real servers: two deploy
messages reach handle_signal under functions-framework (queued mode) and start two re-drives
whose jobs wait side by side in the emulator's redrive queue; run_job (its own
functions-framework) runs some of each; `redrive status` reads both back from Cloud Tasks and the
functions' log files; `redrive cancel` deletes one re-drive's waiting jobs while the other goes
on to the end."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from redrive.core.decide import SignalRef
from redrive.core.jobs import Job
from redrive.core.redrives import redrive_id
from redrive_tools.cli import main
from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import ROOT, FunctionServer, Stack, now_rfc3339, post_signal

N = 4


class World:
    def __init__(self, stack: Stack, logs: Path, tag: str) -> None:
        self.stack = stack
        self.logs = logs
        self.a = self.failing(f"rs-a{tag}", fixed=N)
        self.b = self.failing(f"rs-b{tag}", fixed=N - 1)  # one of b's tasks stays broken
        # Paused: the jobs wait; the queue retries a refused job quickly.
        self.redrive = stack.queue(f"redrive-rs{tag}", min_backoff_s=0.2, paused=True)
        job_port = free_port()
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": f"{self.a[0]},{self.b[0]}",
            "REDRIVE_QUEUE": self.redrive,
            "REDRIVE_JOB_URL": f"http://127.0.0.1:{job_port}/",
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_RETRY_DEADLINE_S": "2",
            "REDRIVE_RUN_QUOTA_PER_MIN": "600",
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            # Every job waits side by side (no gate): canaries are test_canaries.py's.
            "REDRIVE_CANARIES": "0",
        }
        self.job = FunctionServer("run_job", "http", env, logs / "run_job.log", port=job_port)
        self.signal = FunctionServer("handle_signal", "cloudevent", env, logs / "signal.log")

    def failing(self, queue_id: str, fixed: int) -> tuple[str, list[str]]:
        queue = self.stack.queue(queue_id)
        tasks = []
        for i in range(N):
            path = f"/{queue_id}/{i}"
            self.stack.target.statuses[path] = 500
            tasks.append(self.stack.failed_task(queue, f"t-{i}", path))
            if i < fixed:
                self.stack.target.statuses[path] = 200  # the fix
        return queue, tasks

    def stop(self) -> None:
        self.signal.stop()
        self.job.stop()

    def cli(self, *args: str) -> Result:
        env = {**self.stack.emu.env(), "REDRIVE_QUEUE": self.redrive}
        return CliRunner().invoke(main, list(args), env=env)

    def log_args(self, *extra: Path) -> list[str]:
        paths = [self.logs / "signal.log", self.logs / "run_job.log", *extra]
        return [arg for p in paths if p.exists() for arg in ("--log", str(p))]

    def status(self, *extra: Path) -> dict[str, dict[str, Any]]:
        result = self.cli("status", *self.log_args(*extra), "--json")
        assert result.exit_code == 0, result.output
        return {x["redrive_id"]: x for x in map(json.loads, result.output.splitlines())}

    def jobs(self) -> dict[str, str | None]:
        """Job name → its re-drive id, for the jobs waiting in the redrive queue."""
        listed = self.stack.client.list_tasks(
            request={"parent": self.redrive, "response_view": "FULL"}
        )
        return {t.name: Job.parse(t.http_request.body).redrive for t in listed}

    def run_jobs(self) -> list[dict[str, Any]]:
        return self.job.outcomes(entry_point="run_job")


_worlds = itertools.count()


@pytest.fixture
def world(stack: Stack, tmp_path: Path) -> Iterator[World]:
    w = World(stack, tmp_path, str(next(_worlds)))
    try:
        yield w
    finally:
        w.stop()


def deploy(queue: str) -> bytes:
    return json.dumps({"deployed": {"queues": [queue], "at": now_rfc3339()}}).encode()


def runs_of(stack: Stack, task: str) -> int:
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


def test_two_interleaved_redrives_status_and_cancel_one_while_the_other_goes_on(world):
    stack = world.stack
    (qa, ta), (qb, tb) = world.a, world.b
    assert post_signal(world.signal, deploy(qa), "rs-deploy-a", now_rfc3339()).status_code == 200
    assert post_signal(world.signal, deploy(qb), "rs-deploy-b", now_rfc3339()).status_code == 200
    rid_a = redrive_id(SignalRef("deploy", "deploy", "rs-deploy-a"))
    rid_b = redrive_id(SignalRef("deploy", "deploy", "rs-deploy-b"))
    assert rid_a and rid_b and rid_a != rid_b
    events = ("redrive.plan", "redrive.outcome", "redrive.sweep")
    by_id = {x.get("redrive_id") for x in world.signal.lines() if x.get("event") in events}
    assert by_id == {rid_a, rid_b}  # every plan, outcome and SWEEP line carries its re-drive
    assert sorted(world.jobs().values()) == sorted([rid_a] * N + [rid_b] * N)

    # A redelivered message is the same re-drive: same id, no new job.
    post_signal(world.signal, deploy(qa), "rs-deploy-a", now_rfc3339())
    again = world.signal.outcomes(signal__message_id="rs-deploy-a")[N:]
    assert {x["outcome"] for x in again} == {"SKIPPED_DUPLICATE"}
    assert {x["redrive_id"] for x in again} == {rid_a} and len(world.jobs()) == 2 * N

    # The redrive queue runs one job of each (forced, so which ones is known).
    first = {rid_a: None, rid_b: None}
    for name, rid in world.jobs().items():
        if rid in first and first[rid] is None:
            first[rid] = name
            stack.client.run_task(request={"name": name})
    wait_for(lambda: len(world.run_jobs()) == 2, "run_job's first two runs")
    for line in world.run_jobs():
        assert line["outcome"] == "DISPATCHED" and line["redrive_id"] in (rid_a, rid_b)
        assert line["claim"]["owner"].endswith("@" + line["redrive_id"])  # the claim's owner
    wait_for(lambda: len(world.jobs()) == 2 * N - 2, "the two jobs to be done")

    status = world.status()
    for rid in (rid_a, rid_b):
        s = status[rid]
        assert (s["state"], s["mode"], s["selected"], s["queued"]) == (
            "in progress",
            "queued",
            N,
            N,
        )
        assert (s["dispatched"], s["remaining"]) == (1, N - 1)
        assert s["eta_s"] is not None
    # ...and as a table.
    table = world.cli("status", *world.log_args())
    assert table.exit_code == 0 and rid_a in table.output and "in progress" in table.output

    # Cancel re-drive a: only its waiting jobs go.
    cancelled_log = world.logs / "cancel.log"
    done = world.cli("cancel", rid_a, "--log", str(cancelled_log), "--json")
    assert done.exit_code == 0, done.output
    (line,) = map(json.loads, done.output.splitlines())
    assert line["outcome"] == "CANCELLED" and line["deleted"] == N - 1 and line["failed"] == 0
    assert line["severity"] == "WARNING" and line["redrive_id"] == rid_a
    assert set(world.jobs().values()) == {rid_b} and len(world.jobs()) == N - 1

    # Re-drive b goes on to the end.
    stack.client.resume_queue(request={"name": world.redrive})
    wait_for(lambda: len(world.run_jobs()) == 1 + N, "run_job's runs of re-drive b")
    wait_for(lambda: all(stack.gone(t) for t in tb[: N - 1]), "b's fixed tasks to complete")
    assert [runs_of(stack, t) for t in tb] == [1] * N
    # a: the one job run before the cancel, nothing after.
    assert sum(runs_of(stack, t) for t in ta) == 1
    assert sum(1 for t in ta if stack.get(t) is not None) == N - 1

    def settled() -> bool:
        s = world.status(cancelled_log)[rid_b]
        return bool(s["state"] == "finished")

    wait_for(settled, "re-drive b to be finished, its broken task answered")
    status = world.status(cancelled_log)
    a, b = status[rid_a], status[rid_b]
    assert (a["state"], a["dispatched"], a["succeeded"], a["remaining"]) == ("cancelled", 1, 1, 0)
    assert (b["dispatched"], b["succeeded"], b["failed_again"], b["remaining"]) == (N, N - 1, 1, 0)
    assert b["eta_s"] == 0.0


def test_status_watch_refreshes_and_cancel_refuses_a_bad_id(world):
    result = world.cli("cancel", "rd-nothing", "--json")
    assert result.exit_code == 2 and "not a re-drive id" in result.output
    nothing = world.cli("cancel", "rd-000000000000", "--json")
    assert nothing.exit_code == 0 and json.loads(nothing.output)["deleted"] == 0
    assert world.cli("status").exit_code == 0  # REDRIVE_QUEUE is set: the queue alone will do
    post_signal(world.signal, deploy(world.a[0]), "rs-watch", now_rfc3339())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDRIVE_", "CLOUD_"))}
    env.update(world.stack.emu.env(), PYTHONPATH=str(ROOT / "src"), REDRIVE_QUEUE=world.redrive)
    command = [
        sys.executable,
        "-c",
        "from redrive_tools.cli import main; main(prog_name='redrive')",
    ]
    watching = subprocess.Popen(
        [*command, "status", *world.log_args(), "--watch", "--interval", "0.2", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert watching.stdout is not None
        seen = [json.loads(watching.stdout.readline()) for _ in range(2)]
    finally:
        os.killpg(watching.pid, signal.SIGTERM)
        watching.wait(10)
    rid = redrive_id(SignalRef("deploy", "deploy", "rs-watch"))
    assert [x["redrive_id"] for x in seen] == [rid, rid]  # the same re-drive, shown twice
    assert world.status()[rid]["remaining"] == N
