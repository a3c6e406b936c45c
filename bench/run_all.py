"""Every benchmark in one run, one table: ratios side by side, not absolute targets.

P1 one signal end to end over HTTP vs the raw GetTask + RunTask (bench_e2e.py)
P2 sweep planning throughput and memory (sweep_bench.py)
P3 storm rate accuracy: RunTask calls per 60 s window vs the limit (bench_storm.py)
P4 cold import of main.py vs functions_framework + google.cloud.tasks_v2 (bench_import.py)
P5 emulator throughput (emulator_bench.py)
P6 redrive sweep vs a `gcloud tasks run` loop (sweep_bench.py)
P7 re-create re-drive vs RunTask: rate against the queue's limit, calls, memory (recreate_bench.py)
P8 parking: a restore against the origin queue's limit, `redrive parked list` memory
   (parking_bench.py)
P9 a bulk re-drive's plan: its ETA against the measured duration (plan_bench.py)

    python bench/run_all.py [--quick] [--only P7,P8] [--p7-memory 10000,100000] [--update-docs]

--quick runs every part at a small size (a smoke run: the figures are not meaningful);
--update-docs writes the table and the machine into docs/benchmarks.md ("Benchmark table"); with
--only, the rows of the parts that ran replace theirs and every other part keeps its rows and
the line that says when and how they were measured.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Benchmark table"

Row = tuple[str, str, str, str]
"""(part and measure, result, target, notes)"""

P7_MEMORY = [10_000, 100_000]
"""P7's memory sizes by default (--p7-memory)."""


@dataclass(frozen=True)
class Options:
    quick: bool = False
    p7_memory: list[int] = field(default_factory=lambda: list(P7_MEMORY))


def p1(opts: Options) -> list[Row]:
    import bench_e2e

    r = bench_e2e.run(10 if opts.quick else 200)
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


def p2(opts: Options) -> list[Row]:
    import sweep_bench

    from redrive.adapters.jobqueue import CONCURRENCY

    rows: list[Row] = []
    sizes = [1000, 2000] if opts.quick else [10_000, 100_000]
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


def p3(opts: Options) -> list[Row]:
    import bench_storm

    rows: list[Row] = []
    for r in bench_storm.run(60 if opts.quick else 300):
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


def p4(opts: Options) -> list[Row]:
    import bench_import

    r = bench_import.run(3 if opts.quick else 11)
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


def p5(opts: Options) -> list[Row]:
    import emulator_bench
    from google.cloud import tasks_v2beta3

    from cloudtasks_emulator import tasks_client

    seconds = 1.0 if opts.quick else 4.0
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
        n = 500 if opts.quick else 4000
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


def p6(opts: Options) -> list[Row]:
    import sweep_bench

    n = 5 if opts.quick else 100
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


def _calls(spent: dict[str, int], n: int) -> str:
    """Calls per task by method, most first: "GetTask 2.0, CreateTask 2.0, ..."."""
    return ", ".join(
        f"{method} {count / n:.{3 if count < n / 10 else 1}f}"
        for method, count in sorted(spent.items(), key=lambda item: -item[1])
    )


def p7(opts: Options) -> list[Row]:
    import recreate_bench

    n, sample = (300, 20) if opts.quick else (10_000, 600)
    sizes = [300, 1000] if opts.quick else opts.p7_memory
    r = recreate_bench.run(n, sample, sizes)
    rc, rt = r["recreate"], r["runtask"]
    limit = recreate_bench.RATE_PER_S
    rate = rc["n"] / rc["seconds"]
    rows: list[Row] = [
        (
            f"P7 re-create re-drive, {n:,} tasks / the queue's limit",
            f"{rate / limit:.2f}x",
            f"~1x ({limit}/s)",
            f"{rate:,.0f} tasks/s: {rc['redriven']:,} re-created tasks dispatched again and "
            f"answered 200 in {rc['seconds']:.1f} s from the sweep's start ({n / limit:.1f} s at "
            f"the queue's {limit}/s; the sweep's own calls took {rc['sweep_seconds']:.1f} s); "
            f"direct-mode deploy sweep, emulator at real speed, the target in a process of its "
            "own; " + ", ".join(f"{k}={v:,}" for k, v in sorted(rc["counts"].items())),
        ),
        (
            "P7 Cloud Tasks calls per re-created task",
            f"{rc['calls_per_task']:.2f}",
            "",
            f"{_calls(rc['calls'], n)} (the emulator's counters over the sweep)",
        ),
        (
            f"P7 RunTask re-drive / re-create, {n:,} tasks",
            f"{r['speedup']:,.0f}x",
            "",
            f"RunTask at 80% of the 60-a-minute quota: {rt['redriven']} tasks took "
            f"{rt['emulated_seconds']:,.0f} s emulated (time x{recreate_bench.RUN_TIME_SCALE:g}), "
            f"scaled to {n:,}: {rt['seconds_for_n'] / 3600:.1f} h against re-create's "
            f"{rc['seconds']:.1f} s",
        ),
    ]
    peaks = {m["n"]: m["peak_bytes"] for m in r["memory"]}
    if len(peaks) >= 2:
        small, large = min(peaks), max(peaks)
        rows.append(
            (
                f"P7 re-create sweep memory {large:,} / {small:,}",
                f"{peaks[large] / peaks[small]:.2f}x",
                "<= 1.1x",
                f"tracemalloc peaks of a re-create sweep, each size in a fresh process (time "
                f"x{recreate_bench.MEMORY_TIME_SCALE:g}): {peaks[small] / 2**20:.1f} MiB and "
                f"{peaks[large] / 2**20:.1f} MiB"
                + (
                    ""
                    if opts.quick or large >= 100_000
                    else "; 100,000 only with --p7-memory 10000,100000"
                ),
            )
        )
    return rows


def p8(opts: Options) -> list[Row]:
    import parking_bench

    n = 200 if opts.quick else 10_000
    sizes = [500, 2000] if opts.quick else [10_000, 100_000]
    r = parking_bench.run(n, sizes)
    rs = r["restore"]
    limit = rs["limit"]
    rows: list[Row] = [
        (
            f"P8 restore of {n:,} parked tasks / the queue's limit",
            f"{rs['rate'] / limit:.2f}x",
            f"~1x ({limit}/s)",
            f"{rs['rate']:,.0f} tasks/s: {rs['restored']:,} restored by a deploy sweep, "
            f"dispatched by the origin queue and answered 200 in {rs['restore_s']:.1f} s "
            f"({n / limit:.1f} s at its {limit}/s; the restore's own calls took "
            f"{rs['sweep_s']:.1f} s); the same queue dispatching {n:,} due tasks alone: "
            f"{rs['queue_alone_rate']:,.0f}/s (restore / that: "
            f"{rs['rate'] / rs['queue_alone_rate']:.2f}x); parked beforehand by a patrol at "
            f"{n / rs['park_s']:,.0f}/s; {rs['left_parked']} left parked; the target answers "
            "from a process of its own",
        ),
        (
            "P8 Cloud Tasks calls per restored task",
            f"{rs['calls_per_task']:.2f}",
            "",
            f"{_calls(rs['calls'], n)} (the emulator's counters over the restore); CPU over the "
            f"restore: emulator {rs['cpu']['emulator_s']:.1f} s, redrive "
            f"{rs['cpu']['bench_s']:.1f} s, of {rs['cpu']['cpus']} CPUs x {rs['restore_s']:.1f} s",
        ),
    ]
    listed = {int(k): v for k, v in r["list"]["sizes"].items()}
    for size, one in sorted(listed.items()):
        rows.append(
            (
                f"P8 redrive parked list, {size:,} parked copies",
                f"{one['peak_bytes'] / 2**20:.1f} MiB",
                "",
                f"peak Python allocations of `redrive parked list --json` (tracemalloc, fresh "
                f"process, after a warm-up listing); {one['rss_kib'] / 1024:.0f} MiB resident "
                f"(VmHWM); listed at {size / one['seconds']:,.0f} copies/s; copies made at "
                f"{one['fill_rate']:,.0f}/s",
            )
        )
    small, large = min(listed), max(listed)
    rows.append(
        (
            f"P8 parked list memory {large:,} / {small:,}",
            f"{listed[large]['peak_bytes'] / listed[small]['peak_bytes']:.2f}x",
            "flat (~1x)",
            "tracemalloc peaks of the two listings; peak resident set (VmHWM) "
            f"{listed[large]['rss_kib'] / listed[small]['rss_kib']:.2f}x",
        )
    )
    return rows


def p9(opts: Options) -> list[Row]:
    import plan_bench

    n = 100 if opts.quick else 1000
    return [
        (
            f"P9 plan ETA / measured, {r['case']}, {n:,} tasks",
            f"{r['ratio']:.2f}",
            "0.80-1.20",
            f"ETA {r['eta_s']:.1f} s, measured {r['measured_s']:.1f} s (plan line to the last "
            f"re-run answered); {r['method']}, bound by {r['limited_by']}; "
            f"{r['redriven']:,} re-run",
        )
        for r in plan_bench.run(n)
    ]


PARTS: list[tuple[str, Callable[[Options], list[Row]]]] = [
    ("P1", p1),
    ("P2", p2),
    ("P3", p3),
    ("P4", p4),
    ("P5", p5),
    ("P6", p6),
    ("P7", p7),
    ("P8", p8),
    ("P9", p9),
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
    out = [TABLE_HEAD, "|---|---|---|---|"]
    out += [table_line(row) for row in rows]
    return "\n".join(out)


TABLE_HEAD = "| measure | result | target | notes |"
_PART = re.compile(r"^\| (P\d+)\b")
_RUN_LINE = re.compile(r"^- (P\d+(?:(?:-|, )P\d+)*): (.+)$")
_OLD_HEADER = re.compile(r"^Command: (`[^`]*`) \((.*)\)\.$")


def table_line(row: Row) -> str:
    m, r, t, n = row
    return f"| {m} | {r} | {t} | {n.replace('|', '/')} |"


def _part_number(part: str) -> int:
    return int(part[1:])


def _parts_of(label: str) -> list[str]:
    """ "P1-P6" or "P7, P8" (or both mixed) → ["P1", ..., "P6"]."""
    parts: list[str] = []
    for piece in label.split(", "):
        first, _, last = piece.partition("-")
        stop = _part_number(last or first)
        parts += [f"P{i}" for i in range(_part_number(first), stop + 1)]
    return parts


def _label(parts: list[str]) -> str:
    """["P1", "P2", "P3", "P7"] → "P1-P3, P7"."""
    numbers = sorted(_part_number(p) for p in parts)
    runs: list[list[int]] = []
    for i in numbers:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(
        f"P{r[0]}-P{r[-1]}" if len(r) > 2 else ", ".join(f"P{i}" for i in r) for r in runs
    )


def read_block(block: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The table lines of each part in a "Benchmark table" section, and how each part was
    measured (the section's run lines; an older section's Command/Machine/gcloud header applies
    to every part of its table)."""
    rows: dict[str, list[str]] = {}
    runs: dict[str, str] = {}
    old: dict[str, str] = {}
    for line in block.splitlines():
        if (part := _PART.match(line)) is not None:
            rows.setdefault(part.group(1), []).append(line)
        elif (run := _RUN_LINE.match(line)) is not None:
            for part_name in _parts_of(run.group(1)):
                runs[part_name] = run.group(2)
        elif (header := _OLD_HEADER.match(line)) is not None:
            old["command"] = f"{header.group(1)} ({header.group(2)})"
        elif line.startswith("Machine: "):
            old["machine"] = line.removeprefix("Machine: ").rstrip(".")
        elif line.startswith("gcloud: "):
            old["gcloud"] = "gcloud " + line.removeprefix("gcloud: ").rstrip(".")
    if old:
        said = "; ".join(old[k] for k in ("command", "machine", "gcloud") if k in old)
        for part_name in rows:
            runs.setdefault(part_name, said)
    return rows, runs


def merged_block(current: str, ran: dict[str, list[Row]], how: str) -> str:
    """The section's text: the parts that ran with their new rows and `how`, every other part
    with the rows and run line it had."""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(current)
    rows, runs = read_block(found.group(0) if found else "")
    for part_name, got in ran.items():
        rows[part_name] = [table_line(row) for row in got]
        runs[part_name] = how
    order = sorted(rows, key=_part_number)
    groups: dict[str, list[str]] = {}
    for part_name in order:
        groups.setdefault(runs.get(part_name, "not recorded"), []).append(part_name)
    lines = [
        "Each line says which parts it measured, with what command, on what machine and when "
        "(`--update-docs` with `--only` replaces only the rows of the parts it ran):",
        "",
        *(f"- {_label(parts)}: {said}" for said, parts in groups.items()),
        "",
        TABLE_HEAD,
        "|---|---|---|---|",
        *(line for part_name in order for line in rows[part_name]),
    ]
    return "\n".join(lines)


def update_docs(ran: dict[str, list[Row]], how: str) -> None:
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{merged_block(current, ran, how)}\n\n"
    if pattern.search(current):
        current = pattern.sub(lambda _: block, current)
    else:
        current = current.rstrip("\n") + "\n\n" + block
    DOCS.write_text(current.rstrip("\n") + "\n")


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated parts, e.g. P1,P4")
    parser.add_argument(
        "--p7-memory",
        type=_sizes,
        default=P7_MEMORY,
        help="P7's memory sizes (each a re-create sweep in a fresh process), default "
        + ",".join(str(n) for n in P7_MEMORY),
    )
    parser.add_argument("--update-docs", action="store_true", help=f"write {DOCS.name}")
    args = parser.parse_args()
    only = {p.strip().upper() for p in args.only.split(",")} if args.only else None
    opts = Options(quick=args.quick, p7_memory=args.p7_memory)
    ran: dict[str, list[Row]] = {}
    for name, part in PARTS:
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            got = part(opts)
        except ImportError as err:
            got = [(name, "n/a", "", f"script missing: {err}")]
        except Exception as err:
            traceback.print_exc(file=sys.stderr)
            got = [(name, "n/a", "", f"failed: {type(err).__name__}: {str(err)[:200]}")]
        ran[name] = got
        print(f"{name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    flags = " --quick" if args.quick else ""
    if only:
        flags += f" --only {','.join(sorted(only, key=_part_number))}"
    if args.p7_memory != P7_MEMORY and (not only or "P7" in only):
        flags += f" --p7-memory {','.join(str(n) for n in args.p7_memory)}"
    mode = "quick smoke run: sizes too small to mean much" if args.quick else "full sizes"
    gcloud = f"gcloud {'installed' if shutil.which('gcloud') else 'not installed'}"
    how = f"`python bench/run_all.py{flags}` ({mode}); {machine()}; {gcloud}"
    rows = [row for got in ran.values() for row in got]
    print("\n".join([f"Run: {how}.", "", table(rows)]))
    if args.update_docs:
        update_docs(ran, how)


if __name__ == "__main__":
    main()
