"""Every benchmark in one run, one table: ratios side by side, not absolute targets.

P1 one signal end to end over HTTP vs the raw GetTask + RunTask (bench_e2e.py)
P2 sweep planning throughput and memory (sweep_bench.py)
P3 storm rate accuracy: RunTask calls per 60 s window vs the limit (bench_storm.py)
P4 cold import of main.py vs functions_framework + google.cloud.tasks_v2 (bench_import.py)
P5 emulator throughput (emulator_bench.py)
P6 redrive sweep vs a `gcloud tasks run` loop (sweep_bench.py)
P8 a bulk re-drive's plan: its ETA against the measured duration (plan_bench.py)

    python bench/run_all.py [--quick] [--update-docs]

--quick runs every part at a small size (a smoke run: the figures are not meaningful);
--update-docs writes the table and the machine into docs/benchmarks.md ("Benchmark table").
A part that cannot run (a script missing, gcloud absent) prints "n/a" with the reason.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Benchmark table"

Row = tuple[str, str, str, str]
"""(part and measure, result, target, notes)"""


def p1(quick: bool) -> list[Row]:
    import bench_e2e

    r = bench_e2e.run(10 if quick else 200)
    return [
        (
            "P1 signal end to end / raw RPCs",
            f"{r['ratio']:.2f}x",
            "<= 1.25x",
            f"median {r['e2e_ms']:.1f} ms (HTTP → functions-framework → GetTask, RunTask, log) "
            f"vs {r['raw_ms']:.1f} ms (GetTask + RunTask from the client); n={r['n']:.0f}",
        ),
        (
            "P1 floor: raw RPCs + an empty function over HTTP",
            f"{r['floor_ratio']:.2f}x",
            "",
            f"the same POST to a CloudEvent function that does nothing takes "
            f"{r['floor_ms']:.2f} ms: no function served by functions-framework gets below this "
            "ratio at emulator speed",
        ),
        (
            f"P1 same, RPCs at {r['rpc_latency_ms']:.0f} ms",
            f"{r['slow_ratio']:.2f}x",
            "<= 1.25x",
            f"median {r['slow_e2e_ms']:.1f} ms vs {r['slow_raw_ms']:.1f} ms: the emulator delays "
            "every GetTask and RunTask, as a regional API round trip does",
        ),
        (
            "P1 claims: signal with claims / without",
            f"{r['claims_ratio']:.2f}x",
            "",
            f"median {r['claims_ms']:.1f} ms vs {r['e2e_ms']:.1f} ms at emulator speed; "
            f"{r['calls_per_redrive']:.1f} Cloud Tasks calls per re-drive with claims "
            "(GetTask, the claim's GetTask and two CreateTask, RunTask)",
        ),
        (
            f"P1 claims, RPCs at {r['rpc_latency_ms']:.0f} ms",
            f"{r['slow_claims_ratio']:.2f}x",
            "",
            f"median {r['slow_claims_ms']:.1f} ms vs {r['slow_e2e_ms']:.1f} ms: a claim adds "
            f"{r['slow_claims_ms'] - r['slow_e2e_ms']:.0f} ms to a signal at "
            f"{r['rpc_latency_ms']:.0f} ms a call (three calls, made one after another)",
        ),
    ]


def p2(quick: bool) -> list[Row]:
    import sweep_bench

    from redrive.adapters.jobqueue import CONCURRENCY

    rows: list[Row] = []
    sizes = [1000, 2000] if quick else [10_000, 100_000]
    peaks: dict[int, tuple[int, int]] = {}
    for n in sizes:
        r = sweep_bench.measure_size(n, CONCURRENCY)
        run = r["run"]
        peaks[n] = (r["peak_bytes"], r["rss_kib"])
        rows.append(
            (
                f"P2 sweep planning, {n:,} tasks",
                f"{n / run['seconds']:,.0f} tasks/s",
                ">= 2,000/s",
                f"listed, selected, {n:,} jobs enqueued in {run['seconds']:.1f} s (median of "
                f"{len(run['all_seconds'])} sweeps: "
                + ", ".join(f"{x:.1f}" for x in run["all_seconds"])
                + " s); "
                f"peak {r['peak_bytes'] / 2**20:.1f} MiB (tracemalloc), "
                f"{r['rss_kib'] / 1024:.0f} MiB resident (VmHWM); listing and selection "
                f"alone {n / r['dry']['seconds']:,.0f}/s; CreateTask alone "
                f"{r['ceiling']:,.0f}/s",
            )
        )
    small, large = min(peaks), max(peaks)
    rows.append(
        (
            f"P2 sweep memory {large:,} / {small:,}",
            f"{peaks[large][0] / peaks[small][0]:.2f}x",
            "<= 1.1x",
            "tracemalloc peaks of the two sweeps; peak resident set (VmHWM) "
            f"{peaks[large][1] / peaks[small][1]:.2f}x",
        )
    )
    return rows


def p3(quick: bool) -> list[Row]:
    import bench_storm

    rows: list[Row] = []
    for r in bench_storm.run(60 if quick else 300):
        rows.append(
            (
                f"P3 storm, redrive queue at {r['queue_share']:.0%} of the limit",
                f"{r['max_in_window']} / {r['limit_per_min']}",
                "<= limit",
                f"most RunTask calls in any 60 s window (emulated time, x{r['time_scale']:g}); "
                f"{r['tasks']} tasks, each run once: {r['once_each']}; "
                f"signals took {r['signal_s']:.1f} s real",
            )
        )
    return rows


def p4(quick: bool) -> list[Row]:
    import bench_import

    r = bench_import.run(3 if quick else 11)
    heavy = ", ".join(f"{name} {ms:.0f} ms" for name, ms in r["heaviest"][:3])
    return [
        (
            "P4 cold import main.py / baseline",
            f"{r['ratio']:.2f}x",
            "<= 1.2x",
            f"median {r['main_ms']:.0f} ms vs {r['baseline_ms']:.0f} ms "
            f"(functions_framework + google.cloud.tasks_v2), fresh interpreters, "
            f"{r['reps']} runs; top imports: {heavy}",
        )
    ]


def p5(quick: bool) -> list[Row]:
    import emulator_bench
    from google.cloud import tasks_v2beta3

    from cloudtasks_emulator import tasks_client

    seconds = 1.0 if quick else 4.0
    target = emulator_bench.Target()
    target.start()
    proc, grpc_target = emulator_bench.start_emulator(1.0)
    try:
        client = tasks_client(grpc_target, "v2beta3")
        parent = emulator_bench.LOCATION
        queue = client.create_queue(
            parent=parent,
            queue={"name": f"{parent}/queues/p5", "retry_config": {"max_attempts": -1}},
        ).name
        client.pause_queue(name=queue)
        url = f"http://127.0.0.1:{target.port}/fail"
        task = client.create_task(parent=queue, task={"http_request": {"url": url}}).name
        view = tasks_v2beta3.Task.View.BASIC
        get_rate = emulator_bench.per_second(
            lambda: client.get_task(request={"name": task, "response_view": view}), seconds, 4
        )
        n = 500 if quick else 4000
        dispatch = emulator_bench.dispatch_rate(grpc_target, target, n, "p5-dispatch")
    finally:
        emulator_bench.stop_emulator(proc)
        target.stop()
    return [
        ("P5 emulator GetTask over gRPC", f"{get_rate:,.0f}/s", ">= 1,500/s", "4 client threads"),
        (
            "P5 emulator HTTP dispatches, one queue",
            f"{dispatch:,.0f}/s",
            ">= 500/s",
            f"{n} tasks, queue limit 500/s",
        ),
    ]


def p6(quick: bool) -> list[Row]:
    import sweep_bench

    n = 5 if quick else 100
    r = sweep_bench.redrive_vs_gcloud(n, True)
    rows: list[Row] = [
        (
            f"P6 redrive sweep, {n} failed tasks",
            f"{r['redrive_s']:.2f} s",
            "",
            f"CLI in a fresh process, direct mode, rate limit lifted; "
            f"{r['redrive_dispatched']} DISPATCHED",
        )
    ]
    if "gcloud_s" in r:
        rows.append(
            (
                f"P6 gcloud tasks run loop / redrive, {n} tasks",
                f"{r['gcloud_s'] / r['redrive_s']:.0f}x",
                "",
                f"{r['gcloud_s']:.1f} s, one gcloud process per task on the REST port"
                + ("" if r["gcloud_ok"] else " (a call FAILED)"),
            )
        )
    else:
        rows.append(("P6 gcloud tasks run loop", "n/a", "", "gcloud not installed"))
    return rows


def p8(quick: bool) -> list[Row]:
    import plan_bench

    n = 100 if quick else 1000
    return [
        (
            f"P8 plan ETA / measured, {r['case']}, {n:,} tasks",
            f"{r['ratio']:.2f}",
            "0.80-1.20",
            f"ETA {r['eta_s']:.1f} s, measured {r['measured_s']:.1f} s (plan line to the last "
            f"re-run answered); {r['method']}, bound by {r['limited_by']}; "
            f"{r['redriven']:,} re-run",
        )
        for r in plan_bench.run(n)
    ]


PARTS: list[tuple[str, Callable[[bool], list[Row]]]] = [
    ("P1", p1),
    ("P2", p2),
    ("P3", p3),
    ("P4", p4),
    ("P5", p5),
    ("P6", p6),
    ("P8", p8),
]


def machine() -> str:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )


def table(rows: list[Row]) -> str:
    out = ["| measure | result | target | notes |", "|---|---|---|---|"]
    out += [f"| {m} | {r} | {t} | {n.replace('|', '/')} |" for m, r, t, n in rows]
    return "\n".join(out)


def update_docs(text: str) -> None:
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{text}\n\n"
    if pattern.search(current):
        current = pattern.sub(lambda _: block, current)
    else:
        current = current.rstrip("\n") + "\n\n" + block
    DOCS.write_text(current.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated parts, e.g. P1,P4")
    parser.add_argument("--update-docs", action="store_true", help=f"write {DOCS.name}")
    args = parser.parse_args()
    only = {p.strip().upper() for p in args.only.split(",")} if args.only else None
    rows: list[Row] = []
    for name, part in PARTS:
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            got = part(args.quick)
        except ImportError as err:
            got = [(name, "n/a", "", f"script missing: {err}")]
        except Exception as err:
            traceback.print_exc(file=sys.stderr)
            got = [(name, "n/a", "", f"failed: {type(err).__name__}: {str(err)[:200]}")]
        rows.extend(got)
        print(f"{name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    mode = "quick smoke run (sizes too small to mean much)" if args.quick else "full run"
    text = "\n".join(
        [
            f"Command: `python bench/run_all.py{' --quick' if args.quick else ''}` ({mode}).",
            f"Machine: {machine()}.",
            f"gcloud: {'installed' if shutil.which('gcloud') else 'not installed'}.",
            "",
            table(rows),
        ]
    )
    print(text)
    if args.update_docs:
        update_docs(text)


if __name__ == "__main__":
    main()
