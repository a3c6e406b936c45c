"""P9: a bulk re-drive's plan and ETA against the measured duration, on 1,000 failed tasks.

One queue holds N tasks whose first attempt failed; the fix is deployed (the target answers 200
from then on) and a deploy sweep re-drives them. The sweep logs its plan first (`redrive.plan`:
the method, the rate that bounds it, the ETA); measured is the time from that line until the
target has answered 200 to every task's re-run. Three re-drives, each on a fresh emulator at real
speed in its own process (quotas lifted: the rates below are redrive's settings and the queues'
own, so that 1,000 tasks take seconds, not the 17 minutes of the 60-a-minute quota):

- direct mode, RunTask, REDRIVE_DIRECT_RATE_PER_S=50 (the bound: 50/s);
- direct mode, re-create, the queue dispatching at 100/s after REDRIVE_RECREATE_DELAY_S=5;
- queued mode, RunTask, the redrive queue dispatching at 50/s to run_job served by
  functions-framework (main.py), which force-runs each task.

Prints a table: the plan's ETA, the measured duration and their ratio (target: within 20%).

    PYTHONPATH=src python bench/plan_bench.py [--n 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from emulator_bench import stop_emulator  # noqa: E402
from recreate_bench import FlakyTarget, emulator_now, failed_queue  # noqa: E402
from sweep_bench import PARENT, start_emulator  # noqa: E402

from cloudtasks_emulator import tasks_client  # noqa: E402

RUN_RATE_PER_S = 50.0
RECREATE_RATE_PER_S = 100.0
RECREATE_DELAY_S = 5.0
WITHIN = 0.2
"""The target: the plan's ETA within 20% of the measured duration."""


class PlanLog:
    """An outcome log that keeps the plan line and when it was written (time.monotonic())."""

    def __init__(self) -> None:
        from redrive.adapters.log import OutcomeLog

        self._log = OutcomeLog(io.StringIO())
        self.plan: dict[str, Any] | None = None
        self.plan_at = 0.0

    def emit(self, record: Mapping[str, Any]) -> None:
        if record.get("event") == "redrive.plan":
            self.plan, self.plan_at = dict(record), time.monotonic()
        self._log.emit(record)


def settings_env(grpc_target: str, queue: str, claims: str, **env: str) -> dict[str, str]:
    return {
        "CLOUD_TASKS_EMULATOR_HOST": grpc_target,
        "REDRIVE_ALLOWED_QUEUES": queue,
        "REDRIVE_CLAIMS_QUEUE": claims,
        "REDRIVE_FIX_CHECK": "none",
        # Throughput of the re-drive itself: canaries would add their wait (docs/sweep.md).
        "REDRIVE_CANARIES": "0",
        "REDRIVE_SWEEP_BUDGET_S": "3600",
        "REDRIVE_RUN_QUOTA_PER_MIN": "60000",  # lifted: the bound is the rate named per case
        **env,
    }


def paused_queue(client: Any, queue_id: str) -> str:
    name = f"{PARENT}/queues/{queue_id}"
    client.create_queue(request={"parent": PARENT, "queue": {"name": name}})
    client.pause_queue(request={"name": name})
    return name


def set_rate(client: Any, queue: str, rate_per_s: float) -> None:
    client.update_queue(
        request={
            "queue": {"name": queue, "rate_limits": {"max_dispatches_per_second": rate_per_s}},
            "update_mask": {"paths": ["rate_limits.max_dispatches_per_second"]},
        }
    )


def one(case: str, n: int) -> dict[str, Any]:
    """One re-drive of N failed tasks: the plan's ETA and the measured duration."""
    from redrive.core.config import Settings
    from redrive.core.decide import SignalRef
    from redrive.core.names import QueueName
    from redrive.core.selection import SweepPlan
    from redrive.runtime import Runtime
    from redrive.sweep import Sweeper
    from redrive_tools.devserver import FunctionServer, free_port

    target = FlakyTarget()
    target.start()
    proc, grpc_target, _ = start_emulator(lift_quotas=True, time_scale=1.0)
    job_server: FunctionServer | None = None
    try:
        client = tasks_client(grpc_target, "v2beta3")
        queue = failed_queue(client, target, f"p8-{case}", n)
        claims = paused_queue(client, f"p8-claims-{case}")
        env: dict[str, str] = {}
        if case == "direct-run":
            env = {"REDRIVE_METHOD": "run", "REDRIVE_DIRECT_RATE_PER_S": f"{RUN_RATE_PER_S:g}"}
        elif case == "direct-recreate":
            set_rate(client, queue, RECREATE_RATE_PER_S)
            env = {
                "REDRIVE_METHOD": "recreate",
                "REDRIVE_RECREATE_DELAY_S": f"{RECREATE_DELAY_S:g}",
            }
        else:
            redrive = f"{PARENT}/queues/p8-redrive"
            client.create_queue(
                request={
                    "parent": PARENT,
                    "queue": {
                        "name": redrive,
                        "rate_limits": {
                            "max_dispatches_per_second": RUN_RATE_PER_S,
                            "max_concurrent_dispatches": 100,
                        },
                        "retry_config": {"max_attempts": -1, "min_backoff": "1s"},
                    },
                }
            )
            port = free_port()
            env = {
                "REDRIVE_METHOD": "run",
                "REDRIVE_QUEUE": redrive,
                "REDRIVE_JOB_URL": f"http://127.0.0.1:{port}/",
            }
            logs = Path(tempfile.mkdtemp(prefix="p8-"))
            job_server = FunctionServer(
                "run_job",
                "http",
                settings_env(grpc_target, queue, claims, **env),
                logs / "run_job.log",
                source=ROOT / "main.py",
                port=port,
            )
        deployed_at = emulator_now(client, queue)
        target.fixed = True
        log = PlanLog()
        settings = Settings.from_env(settings_env(grpc_target, queue, claims, **env))
        rt = Runtime(settings, log=log)  # type: ignore[arg-type]
        plan = SweepPlan(
            (QueueName.parse(queue),),
            deployed_at,
            SignalRef("bench", "plain", f"p8-{case}"),
            "bench",
        )
        report = Sweeper(rt).run(plan)
        deadline = time.monotonic() + 900
        while target.successes < n and time.monotonic() < deadline:
            time.sleep(0.01)
        done_at = time.monotonic()
        assert log.plan is not None
        measured = done_at - log.plan_at
        eta = float(log.plan["eta_s"])
        (per,) = log.plan["per_queue"]
        return {
            "case": case,
            "n": n,
            "selected": log.plan["selected"],
            "method": per["method"],
            "limited_by": per["limited_by"],
            "eta_s": eta,
            "measured_s": measured,
            "ratio": eta / measured if measured else 0.0,
            "redriven": target.successes,
            "counts": dict(report.counts),
        }
    finally:
        if job_server is not None:
            job_server.stop()
        stop_emulator(proc)
        target.stop()


CASES = ("direct-run", "direct-recreate", "queued-run")


def run(n: int = 1000, cases: tuple[str, ...] = CASES) -> list[dict[str, Any]]:
    return [one(case, n) for case in cases]


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| re-drive | tasks | method, bound | plan ETA | measured | ETA / measured | within 20% |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ok = abs(r["ratio"] - 1.0) <= WITHIN and r["redriven"] == r["n"]
        rows.append(
            f"| {r['case']} | {r['n']:,} ({r['redriven']:,} re-run) | {r['method']}, "
            f"{r['limited_by']} | {r['eta_s']:.1f} s | {r['measured_s']:.1f} s | "
            f"{r['ratio']:.2f} | {'yes' if ok else 'NO'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", action="store_true", help="one JSON object per re-drive")
    args = parser.parse_args()
    results = run(args.n, tuple(c for c in args.cases.split(",") if c))
    if args.json:
        for r in results:
            print(json.dumps(r))
    else:
        print(table(results))


if __name__ == "__main__":
    main()
