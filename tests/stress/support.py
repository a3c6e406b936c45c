"""Helpers shared by the stress tests (no fixtures here: those live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redrive_tools.devserver import free_port
from tests.integration.helpers import FunctionServer, Stack


def ok_runs(stack: Stack, task: str) -> int:
    """RunTask calls the emulator answered OK (each one started a dispatch) for `task`."""
    return sum(1 for r in stack.emu.control.run_log() if r.task == task and r.code.name == "OK")


def outcomes_of(server: FunctionServer, message_id: str) -> list[dict[str, Any]]:
    return server.outcomes(signal__message_id=message_id)


def run_calls(stack: Stack, task: str) -> int:
    """Every RunTask call that reached the emulator for `task`, whatever it answered."""
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


@contextmanager
def direct_and_queued_servers(
    direct_env: dict[str, str], queued_env: dict[str, str], redrive_queue: str, logs: Path
) -> Iterator[dict[str, FunctionServer]]:
    """handle_signal in direct mode ("direct") and in queued mode ("queued"), and the run_job
    server that the queued mode's jobs are addressed to ("run_job"); all stopped on exit."""
    job_port = free_port()
    queued = {
        **queued_env,
        "REDRIVE_QUEUE": redrive_queue,
        "REDRIVE_JOB_URL": f"http://127.0.0.1:{job_port}/",
    }
    started: dict[str, FunctionServer] = {}
    try:
        started["direct"] = FunctionServer(
            "handle_signal", "cloudevent", direct_env, logs / "direct.log"
        )
        started["queued"] = FunctionServer(
            "handle_signal", "cloudevent", queued, logs / "queued.log"
        )
        started["run_job"] = FunctionServer(
            "run_job", "http", queued, logs / "run_job.log", port=job_port
        )
        yield started
    finally:
        for server in started.values():
            server.stop()
