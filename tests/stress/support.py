"""Helpers shared by the stress tests (no fixtures here: those live in conftest.py)."""

from __future__ import annotations

from typing import Any

from tests.integration.helpers import FunctionServer, Stack


def ok_runs(stack: Stack, task: str) -> int:
    """RunTask calls the emulator answered OK (each one started a dispatch) for `task`."""
    return sum(1 for r in stack.emu.control.run_log() if r.task == task and r.code.name == "OK")


def outcomes_of(server: FunctionServer, message_id: str) -> list[dict[str, Any]]:
    return server.outcomes(signal__message_id=message_id)


def run_calls(stack: Stack, task: str) -> int:
    """Every RunTask call that reached the emulator for `task`, whatever it answered."""
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)
