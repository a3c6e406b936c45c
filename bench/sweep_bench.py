"""Sweep benchmarks on the emulator. Prints a table.

1. Planning throughput: a queue holding N tasks whose first attempt failed; one queued-mode deploy
   sweep lists them (ListTasks, 1000 a page), selects them and enqueues one named redrive job each
   in a paused redrive queue. Rate = N / sweep wall time, the median of three sweeps (each into its
   own redrive queue). Each size runs in a fresh subprocess that reports its peak memory twice:
   tracemalloc's peak of Python allocations (a later sweep run, into another redrive queue,
   because tracemalloc slows the process) and its peak resident set (VmHWM, whole process:
   interpreter, imported libraries, gRPC).
2. Re-driving 100 failed tasks: `redrive sweep` (the CLI, one process, direct mode, --rate 1000
   i.e. the rate limit lifted) against a shell loop of `gcloud tasks run` (one process per task),
   on the same emulator (REST port for gcloud). Skipped when gcloud is not installed.

The emulator runs in its own process (time_scale 20 so the failing first attempts of 100,000 tasks
are dispatched quickly; the retry delay of a day keeps them waiting); the failing HTTP target runs
in this one.

    PYTHONPATH=src python bench/sweep_bench.py [--sizes 10000,100000] [--redrive 100] [--no-gcloud]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from emulator_bench import Target, stop_emulator  # noqa: E402

from cloudtasks_emulator import tasks_client  # noqa: E402
from redrive_tools.devserver import free_port  # noqa: E402

PARENT = "projects/bench/locations/local"
TIME_SCALE = 20.0
TIMED_RUNS = 3
"""Each size is swept this many times; the median is reported."""


def start_emulator(
    lift_quotas: bool = False, time_scale: float = TIME_SCALE
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The emulator in its own process group; returns (process, gRPC host:port, REST URL)."""
    grpc_port, rest_port = free_port(), free_port()
    code = (
        "from cloudtasks_emulator import Quotas, serve; "
        f"serve(host='127.0.0.1', grpc_port={grpc_port}, rest_port={rest_port}, "
        f"time_scale={time_scale}, quotas={'Quotas.lifted()' if lift_quotas else 'Quotas()'})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        if raw.startswith(b"export CLOUD_TASKS_EMULATOR_HOST="):
            return proc, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"
    raise RuntimeError("emulator did not start")


def failed_queue(client: Any, target: Target, queue_id: str, n: int) -> str:
    """A queue of `n` tasks whose first attempt failed (500) and whose retry is a day away."""
    name = f"{PARENT}/queues/{queue_id}"
    client.create_queue(
        request={
            "parent": PARENT,
            "queue": {
                "name": name,
                "rate_limits": {
                    "max_dispatches_per_second": 500,
                    "max_concurrent_dispatches": 1000,
                },
                "retry_config": {
                    "max_attempts": -1,
                    "min_backoff": "86400s",
                    "max_backoff": "86400s",
                },
            },
        }
    )
    url = f"http://127.0.0.1:{target.port}/fail"
    before = target.count

    def create(i: int) -> None:
        task = {"name": f"{name}/tasks/t{i:07d}", "http_request": {"url": url}}
        client.create_task(request={"parent": name, "task": task})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    deadline = time.monotonic() + 600
    while target.count - before < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {target.count - before} of {n} first attempts dispatched")
        time.sleep(0.05)
    time.sleep(0.5)  # let the emulator record the last answers
    return name


def emulated_now(client: Any, queue: str) -> str:
    """The emulator's clock (it runs x20): a probe task's create time, plus a second."""
    probe = client.create_task(
        request={
            "parent": queue,
            "task": {
                "name": f"{queue}/tasks/probe",
                "http_request": {"url": "http://127.0.0.1:9/never"},
                "schedule_time": {"seconds": int(time.time() + 10 * 86400)},
            },
        }
    )
    when = probe.create_time + timedelta(seconds=1)
    return str(when.isoformat().replace("+00:00", "Z"))


def paused_queue(client: Any, queue_id: str) -> str:
    name = f"{PARENT}/queues/{queue_id}"
    client.create_queue(request={"parent": PARENT, "queue": {"name": name}})
    client.pause_queue(request={"name": name})
    return name


def create_rate(grpc_target: str, queue: str, n: int, concurrency: int) -> float:
    """CreateTask/s on this emulator with no sweep around it (the sweep's own JobQueue, the same
    concurrency): the ceiling for enqueueing."""
    from redrive.adapters.jobqueue import JobQueue
    from redrive.core.config import Settings
    from redrive.core.jobs import JobTask
    from redrive.core.names import QueueName

    creator = JobQueue(
        Settings.from_env({"CLOUD_TASKS_EMULATOR_HOST": grpc_target}), concurrency=concurrency
    )
    url = "http://127.0.0.1:9/"
    jobs = [JobTask(f"{queue}/tasks/c{i:07d}", url, b"{}", None) for i in range(n)]
    try:
        start = time.perf_counter()
        answers = creator.create_all(QueueName.parse(queue), jobs)
        seconds = time.perf_counter() - start
    finally:
        creator.close()
    assert answers == [True] * n
    return n / seconds


# --- the child: one sweep, measured -------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    import tracemalloc

    from redrive.adapters.log import OutcomeLog
    from redrive.core.config import Settings, parse_time
    from redrive.core.decide import SignalRef
    from redrive.core.names import QueueName
    from redrive.core.selection import SweepPlan
    from redrive.runtime import Runtime
    from redrive.sweep import Sweeper

    def sweep(redrive_queue: str, dry_run: bool = False) -> dict[str, Any]:
        settings = Settings.from_env(
            {
                "CLOUD_TASKS_EMULATOR_HOST": args.emulator,
                "REDRIVE_ALLOWED_QUEUES": args.queue,
                "REDRIVE_QUEUE": redrive_queue,
                "REDRIVE_JOB_URL": "http://127.0.0.1:9/run_job",
                "REDRIVE_FIX_CHECK": "none",
                # Throughput of the re-drive itself: canaries would add their wait (docs/sweep.md).
                "REDRIVE_CANARIES": "0",
                "REDRIVE_DRY_RUN": "true" if dry_run else "false",
            }
        )
        with open(os.devnull, "w") as sink:
            rt = Runtime(settings, log=OutcomeLog(sink))
            plan = SweepPlan(
                (QueueName.parse(args.queue),),
                parse_time(args.deployed_at),
                SignalRef("deploy", "bench", "bench-1"),
                "signal",
            )
            start = time.perf_counter()
            report = Sweeper(rt, concurrency=args.concurrency).run(plan)
            seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "seen": report.tasks_seen,
            "selected": report.selected,
            "counts": dict(report.counts),
            "complete": report.complete,
        }

    # The machine is shared and noisy: the same sweep three times (each into its own empty
    # redrive queue), reported by its median.
    *timed_queues, traced_queue = args.redrive_queues
    runs = sorted((sweep(q) for q in timed_queues), key=lambda r: r["seconds"])
    first = runs[len(runs) // 2]
    first["all_seconds"] = [r["seconds"] for r in runs]
    rss_kib = peak_rss_kib()
    dry = sweep(traced_queue, dry_run=True)  # the same minus CreateTask
    tracemalloc.start()
    traced = sweep(traced_queue)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        json.dumps(
            {"run": first, "dry": dry, "traced": traced, "peak_bytes": peak, "rss_kib": rss_kib}
        )
    )


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries ru_maxrss over
    fork and exec, so a child would report its parent's peak (the parent here holds 100,000
    freshly created tasks' worth of client objects)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_size(n: int, concurrency: int) -> dict[str, Any]:
    target = Target()
    target.start()
    proc, grpc_target, _ = start_emulator()
    try:
        client = tasks_client(grpc_target, "v2beta3")
        built = time.monotonic()
        queue = failed_queue(client, target, f"work-{n}", n)
        setup_s = time.monotonic() - built
        at = emulated_now(client, queue)
        redrive = [paused_queue(client, f"redrive-{n}-{i}") for i in range(TIMED_RUNS + 1)]
        ceiling_queue = paused_queue(client, f"ceiling-{n}")
        ceiling = create_rate(grpc_target, ceiling_queue, min(n, 5000), concurrency)
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--emulator",
                grpc_target,
                "--queue",
                queue,
                "--deployed-at",
                at,
                "--concurrency",
                str(concurrency),
                "--redrive-queues",
                ",".join(redrive),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"sweep child failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["setup_s"] = setup_s
        result["ceiling"] = ceiling
        return result
    finally:
        stop_emulator(proc)
        target.stop()


# --- redrive sweep vs gcloud tasks run ----------------------------------------------------------


def redrive_vs_gcloud(n: int, use_gcloud: bool) -> dict[str, Any]:
    """P6: the same N forced runs by one redrive sweep and by a gcloud loop. The tools' own speed
    is measured, so the emulator's quotas are lifted (at production's 60 RunTask calls a minute
    both would wait on the quota, and the second would fail on it)."""
    target = Target()
    target.start()
    proc, grpc_target, rest_url = start_emulator(lift_quotas=True)
    out: dict[str, Any] = {"n": n}
    try:
        client = tasks_client(grpc_target, "v2beta3")
        queues = [failed_queue(client, target, f"cmp-{which}", n) for which in ("cli", "gcloud")]
        at = emulated_now(client, queues[0])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDRIVE_", "CLOUD_"))}
        env.update(
            CLOUD_TASKS_EMULATOR_HOST=grpc_target,
            PYTHONPATH=str(ROOT / "src"),
            REDRIVE_FIX_CHECK="none",
            REDRIVE_CANARIES="0",
        )
        command = [
            sys.executable,
            "-c",
            "from redrive_tools.cli import main; main(prog_name='redrive')",
            "sweep",
            queues[0],
            "--deployed-at",
            at,
            "--rate",
            "1000",
            "--allow-any-queue",
            "--json",
        ]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        out["redrive_s"] = time.perf_counter() - start
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        out["redrive_dispatched"] = summary["counts"].get("DISPATCHED", 0)
        gcloud = shutil.which("gcloud")
        if use_gcloud and gcloud:
            out.update(gcloud_loop(gcloud, rest_url, queues[1], n))
    finally:
        stop_emulator(proc)
        target.stop()
    return out


def gcloud_loop(gcloud: str, rest_url: str, queue: str, n: int) -> dict[str, Any]:
    project, location, queue_id = queue.split("/")[1], queue.split("/")[3], queue.split("/")[5]
    with tempfile.TemporaryDirectory(prefix="gcloud-bench-") as config:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
        env.update(
            CLOUDSDK_CONFIG=config,
            CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
            CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
            CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        )
        for prop, value in (
            ("api_endpoint_overrides/cloudtasks", f"{rest_url}/"),
            ("auth/disable_credentials", "true"),
            ("core/project", project),
        ):
            subprocess.run(
                [gcloud, "config", "set", prop, value], env=env, capture_output=True, check=True
            )
        ids = " ".join(f"t{i:07d}" for i in range(n))
        script = (
            f'for t in {ids}; do {shlex.quote(gcloud)} tasks run "$t" '
            f"--queue={queue_id} --location={location} --quiet >/dev/null || exit 1; done"
        )
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=False)
        seconds = time.perf_counter() - start
    return {"gcloud_s": seconds, "gcloud_ok": done.returncode == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redrive", type=int, default=100)
    parser.add_argument("--no-gcloud", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--deployed-at", help=argparse.SUPPRESS)
    parser.add_argument("--redrive-queues", type=lambda s: s.split(","), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    rows: list[tuple[str, str, str]] = []
    peaks: dict[int, tuple[int, int]] = {}
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure_size(n, args.concurrency)
        run = r["run"]
        assert run["complete"] and run["seen"] == n + 1 and run["counts"] == {"QUEUED": n}, run
        rows.append(
            (
                f"sweep planning, {n:,} failed tasks",
                f"{n / run['seconds']:,.0f} tasks/s",
                f"{run['seconds']:.1f} s (median of {len(run['all_seconds'])}): listed, selected, "
                f"{n:,} jobs enqueued "
                f"({args.concurrency} CreateTask calls in flight); set-up {r['setup_s']:.0f} s",
            )
        )
        dry = r["dry"]
        rows.append(
            (
                "  of which listing + selection",
                f"{n / dry['seconds']:,.0f} tasks/s",
                "the same sweep in dry run (no CreateTask)",
            )
        )
        rows.append(
            (
                "  emulator CreateTask ceiling",
                f"{r['ceiling']:,.0f} tasks/s",
                f"CreateTask alone, {args.concurrency} in flight, {min(n, 5000):,} tasks, no sweep",
            )
        )
        peaks[n] = (r["peak_bytes"], r["rss_kib"])
        rows.append(
            (
                f"  peak memory, {n:,}",
                f"{r['peak_bytes'] / 2**20:,.1f} MiB",
                f"tracemalloc peak (Python allocations); "
                f"peak RSS (VmHWM) {r['rss_kib'] / 1024:,.0f} MiB",
            )
        )
    if len(peaks) >= 2:
        small, large = min(peaks), max(peaks)
        rows.append(
            (
                f"  memory ratio {large:,} / {small:,}",
                f"{peaks[large][0] / peaks[small][0]:.2f}x",
                f"tracemalloc; peak RSS {peaks[large][1] / peaks[small][1]:.2f}x (target <= 1.1x)",
            )
        )
    cmp = redrive_vs_gcloud(args.redrive, not args.no_gcloud)
    rows.append(
        (
            f"redrive sweep, {cmp['n']} failed tasks",
            f"{cmp['redrive_s']:.2f} s",
            f"CLI in a fresh process, direct mode, --rate 1000; {cmp['redrive_dispatched']} "
            "DISPATCHED",
        )
    )
    if "gcloud_s" in cmp:
        rows.append(
            (
                f"gcloud tasks run loop, {cmp['n']} tasks",
                f"{cmp['gcloud_s']:.1f} s",
                "one gcloud process per task, REST port"
                + ("" if cmp["gcloud_ok"] else " (a call FAILED)"),
            )
        )
        rows.append(("  ratio gcloud / redrive", f"{cmp['gcloud_s'] / cmp['redrive_s']:.0f}x", ""))
    else:
        rows.append(("gcloud tasks run loop", "skipped", "gcloud not installed or --no-gcloud"))

    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'result'.rjust(vwidth)}  notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value.rjust(vwidth)}  {note}")


if __name__ == "__main__":
    main()
