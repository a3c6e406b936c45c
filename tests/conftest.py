"""Autouse isolation for every test: no REDRIVE_* settings leak in, no runtime leaks out."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The package is used from the working tree (as the deployed function does), installed or not.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from redrive.core.config import ENV_VARS  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Only the registry's variables: test toggles such as REDRIVE_REQUIRE_PUBSUB stay visible.
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    from redrive import runtime

    runtime.reset_runtime()
    yield
    runtime.reset_runtime()


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
