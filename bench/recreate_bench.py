"""P7: re-drive the failed tasks of one queue after a deploy, by re-create and by RunTask.

One queue (rate limit 500/s) holds N tasks whose first attempt failed; the fix is deployed (the
target answers 200 from then on) and a direct-mode deploy sweep re-drives them. Measured: the time
from the sweep's start until every selected task has been dispatched again and answered 200 (the
target counts them), with production quotas enforced by the emulator.

- re-create (REDRIVE_METHOD=recreate): N tasks on an emulator at real speed (its queues dispatch at
  their real 500/s); also the Cloud Tasks calls spent per task (the emulator's counters);
- RunTask (REDRIVE_METHOD=run, at 80% of the 60-a-minute quota, as the Terraform module's redrive
  queue runs): a sample of `run_sample` tasks on an emulator whose time runs `RUN_TIME_SCALE` times
  faster (quotas and rates scale with it), its emulated duration scaled to N (the quota makes it
  linear);
- peak memory of a re-create sweep at two sizes (tracemalloc, each in a fresh process, emulated
  time x4 so the copies are dispatched quickly).

    PYTHONPATH=src python bench/recreate_bench.py [--n 10000] [--run-sample 600] \
        [--memory 10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from emulator_bench import Target, answer_each, stop_emulator  # noqa: E402
from sweep_bench import PARENT, start_emulator  # noqa: E402

from cloudtasks_emulator import tasks_client  # noqa: E402
from redrive_tools.devserver import free_port  # noqa: E402

RUN_TIME_SCALE = 60.0
RUN_SHARE = 0.8
"""RunTask at 80% of the quota (the Terraform module's redrive queue rate, 0.8/s)."""
MEMORY_TIME_SCALE = 4.0
RATE_PER_S = 500
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the outcome lines' sink, for the process


class FlakyTarget(Target):
    """The bench's asyncio target: 500 on /flaky until `fixed`, then 200; counts the 200s."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed = False
        self.failures = 0
        self.successes = 0

    def _status(self, head: bytes) -> bytes:
        if self.fixed:
            self.successes += 1
            return b"200 OK"
        self.failures += 1
        return b"500 Internal Server Error"


class TargetProcess:
    """A FlakyTarget in a process of its own, as production's target is another service: the
    HTTP answers then take none of the measured process's CPU (its GIL) from the re-drive.
    Same interface as FlakyTarget (`port`, `fixed`, `failures`, `successes`); stopped by its
    process (never by name)."""

    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
        self._fixed = context.Value("b", 0)
        self._failures = context.Value("q", 0)
        self._successes = context.Value("q", 0)
        self._ready = context.Event()
        self.port = free_port()
        self._process = context.Process(
            target=_serve_shared,
            args=(self.port, self._fixed, self._failures, self._successes, self._ready),
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()
        if not self._ready.wait(30):
            raise RuntimeError("the target process did not start")

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(10)

    @property
    def fixed(self) -> bool:
        return bool(self._fixed.value)

    @fixed.setter
    def fixed(self, value: bool) -> None:
        self._fixed.value = int(value)

    @property
    def failures(self) -> int:
        return int(self._failures.value)

    @property
    def successes(self) -> int:
        return int(self._successes.value)


def _serve_shared(port: int, fixed: Any, failures: Any, successes: Any, ready: Any) -> None:
    """TargetProcess's child: FlakyTarget's answers, counted in shared memory."""

    def status_of(head: bytes) -> bytes:
        counter, status = (
            (successes, b"200 OK") if fixed.value else (failures, b"500 Internal Server Error")
        )
        with counter.get_lock():
            counter.value += 1
        return status

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer, status_of)

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def fast_queue(client: Any, queue_id: str, *, max_attempts: int = -1) -> str:
    """A queue at Cloud Tasks' maximum rate (500/s) whose retries are a day apart."""
    name = f"{PARENT}/queues/{queue_id}"
    client.create_queue(
        request={
            "parent": PARENT,
            "queue": {
                "name": name,
                "rate_limits": {
                    "max_dispatches_per_second": RATE_PER_S,
                    "max_concurrent_dispatches": 1000,
                },
                "retry_config": {
                    "max_attempts": max_attempts,
                    "min_backoff": "86400s",
                    "max_backoff": "86400s",
                },
            },
        }
    )
    return name


def failed_queue(client: Any, target: FlakyTarget | TargetProcess, queue_id: str, n: int) -> str:
    """A queue (500/s) of `n` tasks whose first attempt failed; their retry is a day away."""
    name = fast_queue(client, queue_id)
    url = f"http://127.0.0.1:{target.port}/flaky"

    def create(i: int) -> None:
        task = {"name": f"{name}/tasks/t{i:07d}", "http_request": {"url": url}}
        client.create_task(request={"parent": name, "task": task})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    deadline = time.monotonic() + 900
    while target.failures < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {target.failures} of {n} first attempts failed")
        time.sleep(0.05)
    time.sleep(0.5)  # the emulator records the last answers
    return name


def emulator_now(client: Any, queue: str) -> datetime:
    """The emulator's clock: a probe task's create time (scheduled far ahead, never run)."""
    probe = client.create_task(
        request={
            "parent": queue,
            "task": {
                "http_request": {"url": "http://127.0.0.1:9/never"},
                "schedule_time": datetime.now(UTC) + timedelta(days=20),
            },
        }
    )
    created: datetime = probe.create_time
    client.delete_task(request={"name": probe.name})
    return created + timedelta(seconds=1)


def call_counts(rest_url: str) -> dict[str, int]:
    """Cloud Tasks calls by method so far (the plain names: no version-qualified duplicates, no
    Cloud Run calls)."""
    import httpx

    counts = httpx.get(f"{rest_url}/_emulator/calls", timeout=10).json()["calls"]
    return {k: int(v) for k, v in counts.items() if "." not in k}


def spent_since(before: dict[str, int], rest_url: str) -> dict[str, int]:
    """The calls made since `before` (call_counts), by method."""
    after = call_counts(rest_url)
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def calls(rest_url: str) -> int:
    return sum(call_counts(rest_url).values())


def redrive(
    grpc_target: str, queue: str, method: str, deployed_at: datetime, **env: str
) -> dict[str, Any]:
    """One direct-mode deploy sweep of `queue` with `method`; its SWEEP record."""
    from redrive.adapters.log import OutcomeLog
    from redrive.core.config import Settings
    from redrive.core.decide import SignalRef
    from redrive.core.names import QueueName
    from redrive.core.selection import SweepPlan
    from redrive.runtime import Runtime
    from redrive.sweep import Sweeper

    client = tasks_client(grpc_target, "v2beta3")
    claims = f"{PARENT}/queues/claims-{method}"
    client.create_queue(request={"parent": PARENT, "queue": {"name": claims}})
    client.pause_queue(request={"name": claims})
    settings = Settings.from_env(
        {
            "CLOUD_TASKS_EMULATOR_HOST": grpc_target,
            "REDRIVE_ALLOWED_QUEUES": queue,
            "REDRIVE_CLAIMS_QUEUE": claims,
            "REDRIVE_FIX_CHECK": "none",
            # Throughput of the re-drive itself: canaries would add their wait (docs/sweep.md).
            "REDRIVE_CANARIES": "0",
            "REDRIVE_METHOD": method,
            "REDRIVE_SWEEP_BUDGET_S": "3600",
            **env,
        }
    )
    # Outcome lines go to /dev/null: kept in memory (a StringIO), 10,000 of them would be most
    # of what tracemalloc counts.
    rt = Runtime(settings, log=OutcomeLog(_DEVNULL))
    plan = SweepPlan(
        (QueueName.parse(queue),), deployed_at, SignalRef("bench", "plain", f"p7-{method}"), "bench"
    )
    return Sweeper(rt).run(plan).record()


def recreate_run(n: int) -> dict[str, Any]:
    """Re-create N tasks at real speed: time until all have been dispatched again, calls/task.
    The target answers from a process of its own, as a production target is another service."""
    target = TargetProcess()
    target.start()
    proc, grpc_target, rest_url = start_emulator(time_scale=1.0)
    try:
        client = tasks_client(grpc_target, "v2beta3")
        queue = failed_queue(client, target, "p7-recreate", n)
        deployed_at = emulator_now(client, queue)
        target.fixed = True
        before = call_counts(rest_url)
        start = time.monotonic()
        sweep = redrive(grpc_target, queue, "recreate", deployed_at, REDRIVE_RECREATE_DELAY_S="1")
        swept_s = time.monotonic() - start
        spent = spent_since(before, rest_url)
        for own in ("CreateQueue", "PauseQueue"):  # the bench's claims queue, made in redrive()
            spent.pop(own, None)
        while target.successes < n and time.monotonic() - start < 600:
            time.sleep(0.02)
        total_s = time.monotonic() - start
        return {
            "n": n,
            "seconds": total_s,
            "sweep_seconds": swept_s,
            "redriven": target.successes,
            "counts": sweep["counts"],
            "calls": spent,
            "calls_per_task": sum(spent.values()) / n,
        }
    finally:
        stop_emulator(proc)
        target.stop()


def runtask_run(sample: int, n: int) -> dict[str, Any]:
    """RunTask on a sample, in emulated time x60; its emulated duration scaled to N tasks."""
    target = FlakyTarget()
    target.start()
    proc, grpc_target, _ = start_emulator(time_scale=RUN_TIME_SCALE)
    try:
        client = tasks_client(grpc_target, "v2beta3")
        queue = failed_queue(client, target, "p7-run", sample)
        deployed_at = emulator_now(client, queue)
        target.fixed = True
        rate = RUN_SHARE * 60 / 60 * RUN_TIME_SCALE  # RunTask calls per real second
        start = time.monotonic()
        sweep = redrive(
            grpc_target, queue, "run", deployed_at, REDRIVE_DIRECT_RATE_PER_S=f"{rate:g}"
        )
        while target.successes < sample and time.monotonic() - start < 600:
            time.sleep(0.02)
        emulated_s = (time.monotonic() - start) * RUN_TIME_SCALE
        return {
            "sample": sample,
            "redriven": target.successes,
            "counts": sweep["counts"],
            "emulated_seconds": emulated_s,
            "seconds_for_n": emulated_s / sample * n,
        }
    finally:
        stop_emulator(proc)
        target.stop()


def memory_child(n: int) -> None:
    """In a fresh process: a re-create sweep of N tasks under tracemalloc; prints its peak."""
    import tracemalloc

    target = FlakyTarget()
    target.start()
    proc, grpc_target, _ = start_emulator(time_scale=MEMORY_TIME_SCALE)
    try:
        client = tasks_client(grpc_target, "v2beta3")
        queue = failed_queue(client, target, "p7-memory", n)
        deployed_at = emulator_now(client, queue)
        target.fixed = True
        tracemalloc.start()
        sweep = redrive(grpc_target, queue, "recreate", deployed_at)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(json.dumps({"n": n, "peak_bytes": peak, "counts": sweep["counts"]}))
    finally:
        stop_emulator(proc)
        target.stop()


def memory(n: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=3600,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(n: int, run_sample: int, memory_sizes: list[int]) -> dict[str, Any]:
    recreate = recreate_run(n)
    runtask = runtask_run(run_sample, n)
    peaks = [memory(size) for size in memory_sizes]
    return {
        "recreate": recreate,
        "runtask": runtask,
        "speedup": runtask["seconds_for_n"] / recreate["seconds"],
        "queue_limit_seconds": n / RATE_PER_S,
        "memory": peaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--run-sample", type=int, default=600)
    parser.add_argument("--memory", default="10000,100000")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    sizes = [int(x) for x in args.memory.split(",") if x]
    print(json.dumps(run(args.n, args.run_sample, sizes)))


if __name__ == "__main__":
    main()
