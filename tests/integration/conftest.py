"""Shared fixtures of the integration tests (real emulator, real functions-framework)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.helpers import Stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    world = Stack()
    try:
        yield world
    finally:
        world.stop()
