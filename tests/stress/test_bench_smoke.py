"""`python bench/run_all.py --quick` keeps working: every part runs and prints its row; and
`--update-docs --only ...` replaces only the rows of the parts it ran.

No figure is asserted (benchmarks are not tests); a part that fails shows as "n/a ... failed" in
the table, and that is what this test catches.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.helpers import ROOT

PARTS = {f"P{i}" for i in range(1, 10)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_all_quick_prints_every_part():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| P")]
    assert {row[2:4] for row in rows} == PARTS, done.stdout
    failed = [row for row in rows if "failed:" in row or "script missing" in row]
    assert not failed, failed
    # P7 and P8 print every measure the issue asks for.
    for measure in (
        "P7 re-create re-drive, 300 tasks / the queue's limit",
        "P7 Cloud Tasks calls per re-created task",
        "P7 RunTask re-drive / re-create, 300 tasks",
        "P7 re-create sweep memory 1,000 / 300",
        "P8 restore of 200 parked tasks / the queue's limit",
        "P8 Cloud Tasks calls per restored task",
        "P8 redrive parked list, 2,000 parked copies",
        "P8 parked list memory 2,000 / 500",
    ):
        assert any(row.startswith(f"| {measure} |") for row in rows), (measure, done.stdout)


@pytest.mark.slow
def test_parking_bench_runs_at_tiny_sizes():
    import json

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "parking_bench.py"),
            "--restore",
            "50",
            "--list",
            "30,120",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    restore = result["restore"]
    assert restore["restored"] == 50 and restore["left_parked"] == 0, restore
    assert restore["calls"]["DeleteTask"] == 50, restore["calls"]
    assert set(result["list"]["sizes"]) == {"30", "120"}


def _run_all() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("run_all")
    finally:
        sys.path.remove(str(ROOT / "bench"))


OLD_SECTION = """## Benchmark table

Command: `python bench/run_all.py` (full run).
Machine: 2 CPUs (Some CPU), Python 3.11.7, Linux 6; 2026-11-29 06:08 UTC.
gcloud: installed.

| measure | result | target | notes |
|---|---|---|---|
| P1 signal end to end / raw RPCs | 1.77x | <= 1.25x | n=200 |
| P1 floor | 1.35x |  | floor |
| P2 sweep planning, 10,000 tasks | 2,308 tasks/s | >= 2,000/s | sweep |
| P6 redrive sweep, 100 failed tasks | 0.70 s |  | cli |

## Reading the table

Notes.
"""


def test_update_docs_with_only_keeps_the_other_parts():
    run_all = _run_all()
    new = {"P8": [("P8 restore", "0.9x", "~1x", "new")]}
    block = run_all.merged_block(OLD_SECTION, new, "`python bench/run_all.py --only P8` (x); now")
    lines = block.splitlines()
    assert "| P1 signal end to end / raw RPCs | 1.77x | <= 1.25x | n=200 |" in lines
    assert "| P2 sweep planning, 10,000 tasks | 2,308 tasks/s | >= 2,000/s | sweep |" in lines
    assert "| P8 restore | 0.9x | ~1x | new |" in lines
    parts = [line[2:4] for line in lines if line.startswith("| P")]
    assert parts == ["P1", "P1", "P2", "P6", "P8"]
    runs = [line for line in lines if line.startswith("- ")]
    assert runs == [
        "- P1, P2, P6: `python bench/run_all.py` (full run); 2 CPUs (Some CPU), Python 3.11.7, "
        "Linux 6; 2026-11-29 06:08 UTC; gcloud installed",
        "- P8: `python bench/run_all.py --only P8` (x); now",
    ]

    # Read back in its new form: a second partial run replaces its own part's rows only.
    section = "## Benchmark table\n\n" + block + "\n\n## Reading the table\n"
    again = run_all.merged_block(
        section, {"P1": [("P1 signal", "1.1x", "", "")], "P2": []}, "later"
    ).splitlines()
    assert [line for line in again if line.startswith("| P")] == [
        "| P1 signal | 1.1x |  |  |",
        "| P6 redrive sweep, 100 failed tasks | 0.70 s |  | cli |",
        "| P8 restore | 0.9x | ~1x | new |",
    ]
    assert [line for line in again if line.startswith("- ")] == [
        "- P1, P2: later",
        "- P6: `python bench/run_all.py` (full run); 2 CPUs (Some CPU), Python 3.11.7, "
        "Linux 6; 2026-11-29 06:08 UTC; gcloud installed",
        "- P8: `python bench/run_all.py --only P8` (x); now",
    ]
