"""Fixtures of the Terraform tests: Terraform core driven against the stand-in providers.

Where `terraform` is not installed these tests skip with a reason; CI sets
REDRIVE_REQUIRE_TERRAFORM=1, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
EXAMPLE = MODULE / "examples" / "complete"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE_VARS = {"project_id": "acme-prod", "notification_email": "oncall@example.com"}


def require_terraform() -> str:
    path = shutil.which("terraform")
    if path is None:
        if os.environ.get("REDRIVE_REQUIRE_TERRAFORM") == "1":
            pytest.fail("REDRIVE_REQUIRE_TERRAFORM=1 but terraform is not on PATH")
        pytest.skip("terraform is not on PATH: the stand-in needs Terraform core to plan")
    return path


@pytest.fixture(scope="session")
def terraform() -> str:
    return require_terraform()
