"""P8: parking at scale on the emulator. Prints one JSON object (bench/run_all.py makes the rows).

1. Restore at the origin queue's speed. An origin queue (max_dispatches_per_second 500,
   max_attempts 2, a day's backoff) holds N tasks whose first attempt failed, so that their next
   attempt would be their last. A patrol (redrive.sweep.Sweeper, purpose "patrol", direct mode)
   parks every one of them through the runtime's own pipeline: each original read with the FULL
   view, its failure claimed, its parked copy created in the paused parking queue, the original
   deleted. The fix is then deployed (the target answers 200 from then on) and a deploy sweep of
   the origin queue (a SweepPlan with the deploy's time, as handle_signal makes for a deploy
   signal) restores them: the restore that `redrive parked restore --queue` runs too
   (`Sweeper._restore_parked` with a RestoreScope). Measured: the time from the deploy sweep's
   start until every restored task has been dispatched by the origin queue and answered 200 (the
   target counts them), as tasks/s against the queue's 500/s; the Cloud Tasks calls the restore
   made (the emulator's counters) per restored task; the CPU the emulator and redrive used over
   it; and, in the same run on the same emulator, the origin queue dispatching N due tasks with
   nothing of redrive in the loop (what the queue itself manages on this machine at that
   moment). The target answers from a process of its own (recreate_bench.TargetProcess), as a
   production target is another service: in this one its answers would take the GIL from the
   restore.
2. `redrive parked list` in flat memory. A paused parking queue holds N parked copies, each built
   by the runtime's own adapter (`CloudTasks.create_parked`, on a capturing client) from a real
   failed task read with the FULL view (renamed per copy) and sent with the async client, many
   CreateTask calls in flight. Each size is then listed in a fresh process: the CLI command
   itself (`redrive parked list --json`, click in-process, its output to /dev/null), once to time
   it and once under tracemalloc (after a warm-up listing of a small queue, so that lazily
   imported modules are not counted), with its peak resident set (VmHWM).

The emulator runs in its own process at real speed (time_scale 1, production quotas); redrive runs
in this one (the listings in child processes), the restore's target in a child process, the other
targets in this one.

    PYTHONPATH=src python bench/parking_bench.py [--restore 10000] [--list 10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

from emulator_bench import stop_emulator  # noqa: E402
from recreate_bench import (  # noqa: E402
    RATE_PER_S,
    FlakyTarget,
    TargetProcess,
    call_counts,
    fast_queue,
    spent_since,
)
from sweep_bench import PARENT, peak_rss_kib, start_emulator  # noqa: E402

from cloudtasks_emulator import tasks_client  # noqa: E402

FILL_CONCURRENCY = 64
"""CreateTask calls in flight while parked copies are made for the listing part."""
WARM_COPIES = 20
"""Parked copies in the small queue a listing child lists first (imports, caches)."""
BODY = json.dumps({"invoice": 441, "lines": [{"sku": "A-1", "qty": 2}] * 4}).encode()


# --- queues ----------------------------------------------------------------------------------


def origin_queue(client: Any, queue_id: str, *, max_attempts: int) -> str:
    """A queue at Cloud Tasks' maximum rate whose retries are a day apart."""
    return fast_queue(client, queue_id, max_attempts=max_attempts)


def paused_queue(client: Any, queue_id: str) -> str:
    name = f"{PARENT}/queues/{queue_id}"
    client.create_queue(request={"parent": PARENT, "queue": {"name": name}})
    client.pause_queue(request={"name": name})
    return name


def create_tasks(client: Any, queue: str, url: str, n: int, prefix: str = "t") -> None:
    """`n` HTTP tasks with a full request (method, headers, body) to `url`, 8 calls at a time."""

    def create(i: int) -> None:
        task = {
            "name": f"{queue}/tasks/{prefix}{i:07d}",
            "http_request": {
                "url": f"{url}?invoice={i}",
                "http_method": "PUT",
                "headers": {"Content-Type": "application/json", "X-Tenant": "bench"},
                "body": BODY,
            },
        }
        client.create_task(request={"parent": queue, "task": task})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(done: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- 1. restore ------------------------------------------------------------------------------


def _runtime(grpc_target: str, origin: str, parking: str, claims: str, sink: Any) -> Any:
    """A direct-mode runtime with parking, its outcome lines written to `sink`."""
    from redrive.adapters.log import OutcomeLog
    from redrive.core.config import Settings
    from redrive.runtime import Runtime

    settings = Settings.from_env(
        {
            "CLOUD_TASKS_EMULATOR_HOST": grpc_target,
            "REDRIVE_ALLOWED_QUEUES": origin,
            "REDRIVE_CLAIMS_QUEUE": claims,
            "REDRIVE_PARKING_QUEUE": parking,
            "REDRIVE_FIX_CHECK": "none",
            # Throughput of the re-drive itself: canaries would add their wait (docs/sweep.md).
            "REDRIVE_CANARIES": "0",
            "REDRIVE_SWEEP_BUDGET_S": "3600",
        }
    )
    return Runtime(settings, log=OutcomeLog(sink))


def _sweep(rt: Any, plan: Any) -> dict[str, Any]:
    """One sweep of `plan`; its SWEEP record."""
    from redrive.sweep import Sweeper

    return dict(Sweeper(rt).run(plan).record())


def restore_run(n: int) -> dict[str, Any]:
    """Park N tasks with a patrol, restore them with a deploy; timed until all answered 200."""
    from redrive.core.decide import SignalRef
    from redrive.core.names import QueueName
    from redrive.core.selection import SweepPlan

    target = TargetProcess()
    target.start()
    proc, grpc_target, rest_url = start_emulator(time_scale=1.0)
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        client = tasks_client(grpc_target, "v2beta3")
        origin = origin_queue(client, "p8-origin", max_attempts=2)
        parking = paused_queue(client, "p8-parking")
        claims = paused_queue(client, "p8-claims")
        url = f"http://127.0.0.1:{target.port}/invoices"
        built = time.monotonic()
        create_tasks(client, origin, url, n)
        wait_until(lambda: target.failures >= n, f"{n} failed first attempts", 900)
        time.sleep(0.5)  # the emulator records the last answers
        failed_s = time.monotonic() - built

        rt = _runtime(grpc_target, origin, parking, claims, sink)
        queue = QueueName.parse(origin)
        started = time.monotonic()
        patrol = _sweep(
            rt,
            SweepPlan(
                (queue,),
                None,
                SignalRef("patrol", "bench", "p8-patrol"),
                "allowlist",
                purpose="patrol",
            ),
        )
        park_s = time.monotonic() - started
        parked = patrol["counts"].get("PARKED", 0)
        if parked != n:
            raise RuntimeError(f"the patrol parked {parked} of {n}: {patrol['counts']}")

        target.fixed = True
        before = call_counts(rest_url)
        deploy = SweepPlan(
            (queue,), rt.clock(), SignalRef("deploy", "bench", "p8-deploy"), "signal"
        )
        cpu_before = (cpu_s(proc.pid), time.process_time())
        started = time.monotonic()
        record = _sweep(rt, deploy)
        sweep_s = time.monotonic() - started
        spent = spent_since(before, rest_url)
        wait_until(lambda: target.successes >= n, f"{n} restored tasks answered 200", 900)
        restore_s = time.monotonic() - started
        cpu = {
            "emulator_s": cpu_s(proc.pid) - cpu_before[0],
            "bench_s": time.process_time() - cpu_before[1],
            "cpus": os.cpu_count() or 1,
        }
        restored = record["counts"].get("RESTORED", 0)
        left = len(list(client.list_tasks(request={"parent": parking})))

        ceiling = queue_alone(client, target, url, n)
        return {
            "n": n,
            "setup_s": failed_s,
            "park_s": park_s,
            "restored": restored,
            "counts": record["counts"],
            "parking": record["parking"],
            "left_parked": left,
            "sweep_s": sweep_s,
            "restore_s": restore_s,
            "rate": n / restore_s,
            "calls": spent,
            "calls_per_task": sum(spent.values()) / n,
            "cpu": cpu,
            "queue_alone_rate": ceiling,
            "limit": RATE_PER_S,
        }
    finally:
        sink.close()
        stop_emulator(proc)
        target.stop()


def queue_alone(client: Any, target: FlakyTarget | TargetProcess, url: str, n: int) -> float:
    """N due tasks dispatched by a queue like the origin (500/s) with no redrive in the loop:
    created while it is paused, then resumed; dispatches/s until all answered 200."""
    queue = origin_queue(client, "p8-alone", max_attempts=2)
    client.pause_queue(request={"name": queue})
    create_tasks(client, queue, url, n, prefix="a")
    before = target.successes
    started = time.monotonic()
    client.resume_queue(request={"name": queue})
    wait_until(lambda: target.successes - before >= n, f"{n} dispatches", 900)
    return n / (time.monotonic() - started)


# --- 2. listing ------------------------------------------------------------------------------


class _Capture:
    """A client whose CreateTask only keeps the request: `CloudTasks.create_parked` builds a
    parked copy exactly as the runtime does, and the bench sends it."""

    def __init__(self) -> None:
        self.request: Any = None

    def create_task(self, request: Any = None, **_: Any) -> Any:
        self.request = request
        return None


def template_original(client: Any, target: FlakyTarget, grpc_target: str) -> Any:
    """A real task whose first attempt failed, read as the runtime reads it to park it."""
    from redrive.adapters.cloudtasks import CloudTasks
    from redrive.core.gone import Gone
    from redrive.core.names import TaskName

    queue = origin_queue(client, "p8-template", max_attempts=2)
    url = f"http://127.0.0.1:{target.port}/invoices"
    before = target.failures
    create_tasks(client, queue, url, 1)
    wait_until(lambda: target.failures > before, "the template's failed attempt", 60)
    time.sleep(0.3)
    tasks = CloudTasks(tasks_client(grpc_target, "v2beta3"))
    original = tasks.read_original(TaskName.parse(f"{queue}/tasks/t0000000"))
    assert not isinstance(original, Gone) and original.dispatch_count == 1, original
    return original


def parked_requests(
    template: Any, parking: str, origin: str, n: int, prefix: str
) -> Iterator[dict[str, Any]]:
    """CreateTask requests of `n` parked copies, built by `CloudTasks.create_parked` from the
    template renamed t0000000, t0000001, ... in `origin` (a task parked from that queue)."""
    from redrive.adapters.cloudtasks import CloudTasks
    from redrive.core.names import QueueName, TaskName
    from redrive.core.parking import PARKED_SCHEDULE_AHEAD, Parked, Why, parked_name
    from redrive.core.state import TaskState

    capture = _Capture()
    adapter = CloudTasks(capture)  # type: ignore[arg-type]
    parking_queue = QueueName.parse(parking)
    now = datetime.now(UTC)  # the emulator runs at real speed: its clock is this one
    base = Parked.of(
        TaskState.from_task(template), why=Why.LAST_ATTEMPT, api="v2beta3", at=now, owner="p8"
    )
    for i in range(n):
        original = type(template)()
        original.CopyFrom(template)
        original.name = f"{origin}/tasks/{prefix}{i:07d}"
        name = TaskName.parse(original.name)
        parked = replace(base, origin=name, owner=f"msg:p8-{i}")
        copy = parked_name(parking_queue, name, original.dispatch_count, 1)
        adapter.create_parked(original, copy, parked.url(), now + PARKED_SCHEDULE_AHEAD)
        yield capture.request


def fill(grpc_target: str, requests: Iterator[dict[str, Any]], concurrency: int) -> int:
    """Send CreateTask requests with the async client, `concurrency` in flight; how many."""
    import grpc
    from google.cloud import tasks_v2beta3
    from google.cloud.tasks_v2beta3.services.cloud_tasks.transports import (
        CloudTasksGrpcAsyncIOTransport,
    )

    async def main() -> int:
        channel = grpc.aio.insecure_channel(grpc_target)
        client: Any = tasks_v2beta3.CloudTasksAsyncClient(
            transport=CloudTasksGrpcAsyncIOTransport(channel=channel)
        )
        made = 0

        async def worker() -> None:
            nonlocal made
            for request in requests:  # one shared iterator: each request taken once
                await client.create_task(request=request, retry=None, timeout=60)
                made += 1

        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await client.transport.close()
        return made

    return asyncio.run(main())


def list_child(args: argparse.Namespace) -> None:
    """In a fresh process: `redrive parked list --json` of the warm-up queue, then of the
    measured one twice (timed, then under tracemalloc); prints one JSON line."""
    import tracemalloc

    from redrive_tools.commands import main

    os.environ["CLOUD_TASKS_EMULATOR_HOST"] = args.emulator

    def listing(queue: str) -> tuple[float, str]:
        err = io.StringIO()
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(err),
        ):
            start = time.perf_counter()
            try:
                main(
                    ["parked", "list", "--json", "--parking-queue", queue],
                    prog_name="redrive",
                    standalone_mode=False,
                )
            finally:
                seconds = time.perf_counter() - start
        return seconds, err.getvalue()

    listing(args.warm)
    seconds, summary = listing(args.queue)
    tracemalloc.start()
    traced_s, traced_summary = listing(args.queue)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "traced_seconds": traced_s,
                "summary": summary.strip().splitlines()[-1],
                "traced_summary": traced_summary.strip().splitlines()[-1],
                "peak_bytes": peak,
                "rss_kib": peak_rss_kib(),
            }
        )
    )


def list_run(sizes: list[int]) -> dict[str, Any]:
    target = FlakyTarget()
    target.start()
    proc, grpc_target, _ = start_emulator(time_scale=1.0)
    try:
        client = tasks_client(grpc_target, "v2beta3")
        template = template_original(client, target, grpc_target)
        origin = f"{PARENT}/queues/p8-template"
        warm = paused_queue(client, "p8-list-warm")
        fill(grpc_target, parked_requests(template, warm, origin, WARM_COPIES, "w"), 8)
        out: dict[str, Any] = {"sizes": {}}
        for n in sizes:
            parking = paused_queue(client, f"p8-list-{n}")
            started = time.monotonic()
            made = fill(
                grpc_target, parked_requests(template, parking, origin, n, "t"), FILL_CONCURRENCY
            )
            fill_s = time.monotonic() - started
            assert made == n, (made, n)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--list-child",
                    "--emulator",
                    grpc_target,
                    "--queue",
                    parking,
                    "--warm",
                    warm,
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                capture_output=True,
                text=True,
                check=False,
                timeout=3600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"listing child failed:\n{done.stderr[-3000:]}")
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            expected = f"{n} parked task(s) in {parking}"
            for key in ("summary", "traced_summary"):
                if expected not in result[key]:
                    raise RuntimeError(f"the listing said {result[key]!r}, not {expected!r}")
            result["fill_s"] = fill_s
            result["fill_rate"] = n / fill_s
            out["sizes"][str(n)] = result
            client.purge_queue(request={"name": parking})  # the emulator's memory, for the next
        return out
    finally:
        stop_emulator(proc)
        target.stop()


def run(restore_n: int, list_sizes: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if restore_n:
        out["restore"] = restore_run(restore_n)
    if list_sizes:
        out["list"] = list_run(list_sizes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restore", type=int, default=10_000, help="parked tasks to restore")
    parser.add_argument("--list", default="10000,100000", help="parked copies to list, per size")
    parser.add_argument("--list-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--warm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list_child:
        list_child(args)
        return
    sizes = [int(x) for x in args.list.split(",") if x]
    print(json.dumps(run(args.restore, sizes)))


if __name__ == "__main__":
    main()
