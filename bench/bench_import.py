"""P4: cold import of main.py vs importing functions_framework and google.cloud.tasks_v2 alone.

Each measurement is a fresh interpreter (`python -c ...`) timed from the outside, so it includes
the interpreter's own start-up in both columns; `main` also builds its runtime (reads settings,
sets up the structured log handler), as a cold start does. Median of `reps` runs each.

    python bench/bench_import.py [--reps 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import functions_framework, google.cloud.tasks_v2"
MAIN = "import main"


def cold(code: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDRIVE_", "CLOUD_"))}
    env.pop("PYTHONPATH", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def heaviest_imports(top: int = 8) -> list[tuple[str, float]]:
    """`python -X importtime -c 'import main'`: the top-level imports main.py pulls in, by cost."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", MAIN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if not name.startswith("  "):  # direct children of the top level only
                rows.append((name.strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def run(reps: int) -> dict[str, Any]:
    base, main = [], []
    for _ in range(reps):  # interleaved, so drift in machine load hits both alike
        base.append(cold(BASELINE))
        main.append(cold(MAIN))
    base_ms, main_ms = statistics.median(base) * 1000, statistics.median(main) * 1000
    return {
        "reps": reps,
        "baseline_ms": base_ms,
        "main_ms": main_ms,
        "ratio": main_ms / base_ms,
        "heaviest": heaviest_imports(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=9)
    print(json.dumps(run(parser.parse_args().reps)))


if __name__ == "__main__":
    main()
