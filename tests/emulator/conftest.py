"""Shared fixtures for the emulator tests: a running emulator, clients, a recording HTTP target."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudtasks_emulator import Emulator, tasks_client

from .target import TargetServer

LOCATION = "projects/demo-project/locations/europe-west1"


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with custom arguments (time_scale, dedup_window_s, ...), stopped after."""
    started: list[Emulator] = []

    def make(**kwargs: Any) -> Emulator:
        emu = Emulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A running emulator on free loopback ports, real-time clock."""
    return make_emulator()


@pytest.fixture
def target() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


def client(emu: Emulator, api: str) -> Any:
    return tasks_client(emu.grpc_target, api=api, transport="grpc")


def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.01
) -> bool:
    """Poll `predicate` until true or timeout (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()
