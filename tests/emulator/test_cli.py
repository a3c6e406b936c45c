"""The standalone emulator (`python -m cloudtasks_emulator`, as `cloudtasks-emulator` and
`redrive emulator` run it): every setting the command line takes, through the official client.

Each emulator runs in its own process group and is stopped by that group's id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from cloudtasks_emulator import tasks_client

from .conftest import LOCATION, wait_until
from .target import TargetServer

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_cli() -> Iterator[Callable[..., str]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> str:
        grpc_port, rest_port = free_port(), free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudtasks_emulator", "--grpc-port", str(grpc_port),
             "--rest-port", str(rest_port), *args],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        for raw in proc.stdout:
            if raw.startswith(b"export CLOUD_TASKS_EMULATOR_HOST="):
                return raw.decode().strip().split("=", 1)[1]
        raise AssertionError("the emulator did not start")

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_quota_app_engine_host_dedup_window_and_queue_reuse_from_the_command_line(
    start_cli: Callable[..., str], target: TargetServer
) -> None:
    address = start_cli(
        "--time-scale", "100", "--quota-run-per-min", "2", "--app-engine-host", target.url,
        "--dedup-window", "30", "--queue-reuse-delay", "60",
    )  # fmt: skip
    c = tasks_client(address, "v2")
    target.script("/gae", 500, 500, 500)  # the task stays, failing, for the forced runs
    q = c.create_queue(
        parent=LOCATION,
        queue={"name": f"{LOCATION}/queues/cli", "retry_config": {"min_backoff": "3600s"}},
    ).name
    c.pause_queue(name=q)
    task = c.create_task(
        parent=q,
        task={"name": f"{q}/tasks/gae", "app_engine_http_request": {"relative_uri": "/gae"}},
    )
    # --quota-run-per-min 2: the third forced run of the minute is refused
    c.run_task(name=task.name)
    with pytest.raises(gexc.ResourceExhausted, match="Force run requests"):
        for _ in range(2):
            c.run_task(name=task.name)
    # --app-engine-host: App Engine tasks reach it
    assert target.wait_for(1, "/gae")
    # --dedup-window 30 (emulated seconds): a deleted task's name is free again soon after
    c.create_task(parent=q, task={"name": f"{q}/tasks/d", "http_request": {"url": target.url}})
    c.delete_task(name=f"{q}/tasks/d")
    with pytest.raises(gexc.AlreadyExists):
        c.create_task(parent=q, task={"name": f"{q}/tasks/d", "http_request": {"url": target.url}})

    def recreated(make: Callable[[], object], refusal: type[Exception]) -> bool:
        try:
            make()
        except refusal:
            return False
        return True

    assert wait_until(
        lambda: recreated(
            lambda: c.create_task(
                parent=q, task={"name": f"{q}/tasks/d", "http_request": {"url": target.url}}
            ),
            gexc.AlreadyExists,
        )
    )
    # --queue-reuse-delay 60: a deleted queue's name is taken for a minute, then free
    c.delete_queue(name=q)
    with pytest.raises(gexc.FailedPrecondition):
        c.create_queue(parent=LOCATION, queue={"name": q})
    assert wait_until(
        lambda: recreated(
            lambda: c.create_queue(parent=LOCATION, queue={"name": q}), gexc.FailedPrecondition
        )
    )


def test_lift_quotas_from_the_command_line(start_cli: Callable[..., str]) -> None:
    c = tasks_client(start_cli("--lift-quotas"), "v2beta3")
    q = c.create_queue(
        parent=LOCATION,
        queue={"name": f"{LOCATION}/queues/lifted", "retry_config": {"min_backoff": "3600s"}},
    ).name
    c.pause_queue(name=q)
    task = c.create_task(parent=q, task={"http_request": {"url": "http://127.0.0.1:9/"}})
    for _ in range(70):
        c.run_task(name=task.name)
    assert c.get_task(name=task.name).dispatch_count == 70


def test_production_quota_by_default_from_the_command_line(start_cli: Callable[..., str]) -> None:
    c = tasks_client(start_cli(), "v2")
    q = c.create_queue(
        parent=LOCATION,
        queue={"name": f"{LOCATION}/queues/prod", "retry_config": {"min_backoff": "3600s"}},
    ).name
    c.pause_queue(name=q)
    task = c.create_task(parent=q, task={"http_request": {"url": "http://127.0.0.1:9/"}})
    for _ in range(60):
        c.run_task(name=task.name)
    with pytest.raises(gexc.ResourceExhausted):
        c.run_task(name=task.name)
