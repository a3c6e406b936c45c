"""Shared fixtures of the stress tests: one emulator stack per module, helpers to read its logs.

The servers are the real ones (the emulator in-process, functions-framework as a subprocess per
entry point); everything they start is stopped by the fixture that started it.
"""

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
