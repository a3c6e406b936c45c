"""`python bench/run_all.py --quick` keeps working: every part runs and prints its row.

No figure is asserted (benchmarks are not tests); a part that fails shows as "n/a ... failed" in
the table, and that is what this test catches.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.helpers import ROOT


@pytest.mark.slow
def test_run_all_quick_prints_every_part():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| P")]
    assert {row[2:4] for row in rows} == {"P1", "P2", "P3", "P4", "P5", "P6", "P8"}, done.stdout
    failed = [row for row in rows if "failed:" in row or "script missing" in row]
    assert not failed, failed
