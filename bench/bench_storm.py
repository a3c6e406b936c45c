"""P3: storm rate accuracy. N failing tasks signalled within seconds in queued mode; the most
RunTask calls in any 60-second window of emulated time vs the RunTask limit, with the redrive
queue at 80% of the limit (the recommended headroom) and at 100% (for comparison).

    python bench/bench_storm.py [--tasks 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.stress.storm import run_storm  # noqa: E402

LIMIT_PER_MIN = 60


def run(tasks: int, shares: tuple[float, ...] = (0.8, 1.0)) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for share in shares:
        result = run_storm(
            tasks,
            limit_per_min=LIMIT_PER_MIN,
            queue_share=share,
            logs=Path(tempfile.mkdtemp(prefix="bench-storm-")),
        )
        rows.append(
            {
                "tasks": tasks,
                "queue_share": share,
                "limit_per_min": LIMIT_PER_MIN,
                "max_in_window": result.max_in_window,
                "once_each": set(result.runs_per_task.values()) == {1}
                and len(result.runs_per_task) == tasks,
                "time_scale": result.time_scale,
                "signal_s": result.signal_s,
                "redrive_s": result.redrive_s,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=300)
    print(json.dumps(run(parser.parse_args().tasks)))


if __name__ == "__main__":
    main()
