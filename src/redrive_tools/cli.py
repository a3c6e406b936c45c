"""The `redrive` command line (click; rich for people, --json for machines).

Every command reads the same settings as the functions (REDRIVE_* and CLOUD_TASKS_EMULATOR_HOST
from the environment); options override them. With CLOUD_TASKS_EMULATOR_HOST set the commands talk
to the emulator, otherwise to Google with Application Default Credentials.

Operator commands always run in direct mode (no redrive queue): the operator is the trigger, and
`--rate` is the throttle. The queue allowlist (REDRIVE_ALLOWED_QUEUES) still applies, so a typo
cannot re-drive the wrong queue; `--allow-any-queue` allows exactly the queues (or the task's
queue) named on the command line, nothing else.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NoReturn

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3

EXIT_CODES_HELP = """\b
Exit codes:
  0  done (dispatched, dry run, or a guard's reasoned skip: the outcome says which)
  1  a task or queue FAILED (transient fault, quota) or PERMISSION_DENIED
  2  usage or bad input: bad option, malformed name, bad REDRIVE_* setting,
     a queue that does not exist or is not allowed (see --allow-any-queue)
  3  not finished: a sweep's --budget ran out before every page was swept, or the
     task is DEFERRED (an attempt is in flight, or an earlier forced run's outcome
     is not known yet): run the same command again later"""

_FAILED = {"FAILED", "PERMISSION_DENIED"}
_USAGE = {"INVALID_SIGNAL", "SKIPPED_NOT_ALLOWED"}
_LATER = {"DEFERRED"}


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(package_name="redrive")
def main() -> None:
    """Force-run failed Cloud Tasks tasks safely, once a fix is deployed."""


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def emulator(args: tuple[str, ...]) -> None:
    """Run the local Cloud Tasks (and Cloud Run Admin) emulator until interrupted.

    The options are those of the standalone `cloudtasks-emulator` command (see --help).
    """
    from cloudtasks_emulator.__main__ import main as emulator_main

    emulator_main(list(args), prog="redrive emulator")


# ---------------------------------------------------------------------------------------------
# shared plumbing


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"redrive: {message}", err=True)
    sys.exit(code)


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from redrive.core.config import parse_time

    try:
        return parse_time(value)
    except ValueError:
        _fail(f"{option}: not an RFC 3339 time: {value!r}")


def _queue(value: str) -> Any:
    from redrive.core.names import InvalidName, QueueName

    try:
        return QueueName.parse(value)
    except InvalidName as err:
        _fail(str(err))


class _Records:
    """Collects outcome records; with `echo` set, also prints each one as a JSON line."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.records: list[dict[str, Any]] = []
        self.keep = True

    def emit(self, record: Mapping[str, Any]) -> None:
        if self.keep:
            self.records.append(dict(record))
        if self.echo:
            click.echo(json.dumps(record, default=str))


def _runtime(records: _Records, **overrides: Any) -> Any:
    from redrive.adapters.log import OutcomeLog
    from redrive.core.config import ConfigError, Settings
    from redrive.runtime import Runtime

    class CliLog(OutcomeLog):
        def __init__(self) -> None:
            super().__init__(io.StringIO())

        def emit(self, record: Mapping[str, Any]) -> None:
            records.emit(record)

    # Operators act in direct mode, whatever the functions' REDRIVE_QUEUE says.
    overrides.update(redrive_queue=None, job_url=None)
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as err:
        _fail(str(err))
    return Runtime(settings, log=CliLog())


def _allow(names: list[Any]) -> Any:
    from redrive.core.config import QueueAllowlist

    return QueueAllowlist(frozenset(str(q) for q in names))


def _console(json_output: bool) -> Any:
    from rich.console import Console

    # Machine output owns stdout; people-facing text then goes to stderr.
    return Console(stderr=json_output, highlight=False, soft_wrap=False)


# ---------------------------------------------------------------------------------------------
# redrive run


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("task_name")
@click.option("--dry-run", is_flag=True, help="Decide and report, but never call RunTask.")
@click.option(
    "--fix-check",
    type=click.Choice(["none", "static", "revision"]),
    default=None,
    help="How to tell the fix is live (default: REDRIVE_FIX_CHECK; `static` when "
    "--deployed-at is given).",
)
@click.option(
    "--deployed-at",
    metavar="TIME",
    default=None,
    help="RFC 3339 time the fix went live (the static fix check).",
)
@click.option(
    "--allow-any-queue",
    is_flag=True,
    help="Allow the task's queue even if REDRIVE_ALLOWED_QUEUES does not list it.",
)
@click.option("--json", "json_output", is_flag=True, help="Print the outcome record as JSON.")
def run(
    task_name: str,
    *,
    dry_run: bool,
    fix_check: str | None,
    deployed_at: str | None,
    allow_any_queue: bool,
    json_output: bool,
) -> None:
    """One guarded forced run of TASK_NAME (projects/P/locations/L/queues/Q/tasks/T).

    The same guards as the functions: not found, in flight, not failing, fix not deployed;
    then RunTask, and the outcome is printed.
    """
    from redrive import pipeline
    from redrive.core.decide import Failure, SignalRef
    from redrive.core.names import InvalidName, TaskName

    try:
        task = TaskName.parse(task_name)
    except InvalidName as err:
        _fail(str(err))
    overrides: dict[str, Any] = {}
    when = _parse_time(deployed_at, "--deployed-at")
    if when is not None:
        overrides["fix_deployed_at"] = when
        overrides["fix_check"] = fix_check or "static"
    elif fix_check is not None:
        overrides["fix_check"] = fix_check
    if dry_run:
        overrides["dry_run"] = True
    if allow_any_queue:
        overrides["allowed_queues"] = _allow([task.queue_name])
    records = _Records(echo=json_output)
    rt = _runtime(records, **overrides)
    failure = Failure(task, rt.clock(), SignalRef("cli", "operator"))
    started = time.monotonic()
    request = pipeline.Request(failure, pipeline.Act.RUN, owner=f"cli:{uuid.uuid4().hex}")
    result = pipeline.process(request, rt)
    pipeline.record(
        rt, result, failure=failure, signal=failure.signal, entry_point="cli", started=started
    )
    record = records.records[-1]
    if not json_output:
        _print_record(_console(json_output), record)
    outcome = result.outcome.value
    if outcome in _FAILED:
        sys.exit(EXIT_FAILED)
    if outcome in _USAGE:
        sys.exit(EXIT_USAGE)
    if outcome in _LATER:
        sys.exit(EXIT_INCOMPLETE)


_STYLES = {
    "DISPATCHED": "bold green",
    "DRY_RUN": "cyan",
    "QUEUED": "green",
    "NOT_FOUND": "yellow",
    "FAILED": "bold red",
    "PERMISSION_DENIED": "bold red",
    "INVALID_SIGNAL": "red",
}


def _style(outcome: str) -> str:
    return _STYLES.get(outcome, "yellow" if outcome.startswith("SKIPPED") else "white")


def _print_record(console: Any, record: Mapping[str, Any]) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    outcome = str(record["outcome"])
    table.add_row("outcome", f"[{_style(outcome)}]{outcome}[/]")
    table.add_row("task", str(record.get("task")))
    table.add_row("reason", str(record.get("reason")))
    state = record.get("task_state") or {}
    if state:
        table.add_row(
            "task state",
            f"attempts {state.get('dispatch_count')}, last {state.get('last_status') or '-'} "
            f"at {state.get('last_dispatch_time') or '-'}",
        )
    fix = record.get("fix") or {}
    if fix:
        table.add_row(
            "fix",
            f"{fix.get('strategy')}: live since {fix.get('live_since') or '-'}"
            + (f" ({fix.get('service')})" if fix.get("service") else ""),
        )
    run_info = record.get("run") or {}
    if run_info:
        table.add_row("run", f"dispatch count now {run_info.get('dispatch_count_after')}")
    if record.get("dry_run"):
        table.add_row("dry run", "yes")
    console.print(table)


# ---------------------------------------------------------------------------------------------
# redrive sweep


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
@click.option(
    "--deployed-at",
    metavar="TIME",
    required=True,
    help="RFC 3339 time the fix went live: tasks whose last attempt failed before it are "
    "re-driven.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="RunTask calls per second (the project quota is about 1/s).",
)
@click.option("--dry-run", is_flag=True, help="Select and decide, but never call RunTask.")
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop cleanly after this many seconds (exit 3; run again to resume). Default: none.",
)
@click.option(
    "--allow-any-queue",
    is_flag=True,
    help="Allow the named queues even if REDRIVE_ALLOWED_QUEUES does not list them.",
)
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Print every outcome record, then the SWEEP record, as JSON lines.",
)
def sweep(
    queues: tuple[str, ...],
    *,
    deployed_at: str,
    rate: float,
    dry_run: bool,
    budget: float | None,
    allow_any_queue: bool,
    json_output: bool,
) -> None:
    """Re-drive every task of QUEUE... whose last attempt failed before --deployed-at.

    Queues are full names (projects/P/locations/L/queues/Q). Tasks in flight, never attempted,
    or dispatched again since the deploy are left alone; each selected task gets the guarded
    decision and one RunTask, at --rate per second. Safe to run again: tasks already re-driven
    are no longer selected.
    """
    from redrive.core.decide import SignalRef
    from redrive.core.selection import SweepPlan
    from redrive.sweep import Sweeper

    names = tuple(dict.fromkeys(_queue(q) for q in queues))
    when = _parse_time(deployed_at, "--deployed-at")
    assert when is not None
    overrides: dict[str, Any] = {"direct_rate_per_s": rate}
    if dry_run:
        overrides["dry_run"] = True
    if allow_any_queue:
        overrides["allowed_queues"] = _allow(list(names))
    records = _Records(echo=json_output)
    records.keep = False  # per-task records stream out; only counters stay in memory
    rt = _runtime(records, **overrides)
    plan = SweepPlan(names, when, SignalRef("cli", "operator"), "command line")
    console = _console(json_output)
    totals = _task_totals(rt, names)
    progress_bar, on_progress = _progress(console, totals, quiet=json_output)
    sweeper = Sweeper(
        rt,
        budget_s=budget if budget is not None else 1e12,
        entry_point="cli",
        on_progress=on_progress,
        owner=f"cli:{uuid.uuid4().hex}",
    )
    with progress_bar:
        report = sweeper.run(plan)
    if not json_output:
        _print_sweep(console, report.record())
    sys.exit(_sweep_exit(report))


def _task_totals(rt: Any, names: tuple[Any, ...]) -> int | None:
    """Tasks in the queues, for the progress bar (v2beta3 queue stats; None when unknown)."""
    if rt.settings.tasks_api != "v2beta3":
        return None
    total = 0
    try:
        for name in names:
            queue = rt.tasks.client.get_queue(
                request={"name": str(name), "read_mask": {"paths": ["name", "stats"]}}
            )
            total += int(queue.stats.tasks_count)
    except Exception:
        return None  # only a nicety: the sweep itself reports what it finds
    return total


def _progress(
    console: Any, total: int | None, *, quiet: bool
) -> tuple[Any, Callable[[Any], None] | None]:
    from contextlib import nullcontext

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if quiet:
        return nullcontext(), None
    bar = Progress(
        TextColumn("[bold]sweeping[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks seen · {task.fields[line]}"),
        console=console,
        transient=False,
    )
    task_id = bar.add_task("sweep", total=total, line="")

    def update(p: Any) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(p.counts.items()))
        line = f"{p.selected} selected" + (f" · {counts}" if counts else "")
        bar.update(task_id, completed=p.tasks_seen, line=line)

    return bar, update


def _print_sweep(console: Any, record: Mapping[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="redrive sweep", show_lines=False)
    table.add_column("decision")
    table.add_column("tasks", justify="right")
    for outcome, count in sorted(Counter(record["counts"]).items()):
        table.add_row(f"[{_style(outcome)}]{outcome}[/]", str(count))
    for why, count in sorted(Counter(record["skipped"]).items()):
        table.add_row(f"[dim]not selected: {why.lower().replace('_', ' ')}[/]", str(count))
    for queue, outcome in sorted(record["queue_outcomes"].items()):
        table.add_row(f"[{_style(outcome)}]queue {outcome}[/]", queue)
    table.caption = (
        f"{record['tasks_seen']} tasks seen in {record['pages']} page(s), "
        f"{record['selected']} selected, {record['duration_ms'] / 1000:.1f} s"
        + ("" if record["complete"] else " — INCOMPLETE: budget spent, run again to resume")
        + (" — DRY RUN" if record["dry_run"] else "")
    )
    console.print(table)


def _sweep_exit(report: Any) -> int:
    queue_outcomes = set(report.queue_outcomes.values())
    if any(report.counts[o] for o in _FAILED) or queue_outcomes & _FAILED:
        return EXIT_FAILED
    if queue_outcomes & {"NOT_FOUND", "SKIPPED_NOT_ALLOWED"}:
        return EXIT_USAGE
    if not report.complete or any(report.counts[o] for o in _LATER):
        return EXIT_INCOMPLETE
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# redrive inspect


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("queue")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Rows to show."
)
@click.option("--json", "json_output", is_flag=True, help="One JSON line per failing task.")
def inspect(queue: str, limit: int, json_output: bool) -> None:
    """Table of QUEUE's failing tasks, the most recently failed first.

    Columns: attempts (dispatch count), last status, last attempt, next schedule. Reads only;
    the allowlist does not apply.
    """
    from redrive.core import errors
    from redrive.sweep import failing_tasks

    name = _queue(queue)
    rt = _runtime(_Records(echo=False))
    try:
        states, seen, failing = failing_tasks(rt.tasks, name, limit, rt.settings.retry_deadline_s)
    except errors.NotFoundError as err:
        _fail(f"queue not found: {err}")
    except errors.PermissionDeniedError as err:
        _fail(str(err), EXIT_FAILED)
    except errors.RedriveError as err:
        _fail(f"listing {name} failed: {err}", EXIT_FAILED)
    rows = [_inspect_row(s) for s in states]
    if json_output:
        for row in rows:
            click.echo(json.dumps(row))
        return
    from rich.table import Table

    table = Table(title=f"failing tasks of {name}")
    for column, justify in (
        ("task", "left"),
        ("attempts", "right"),
        ("last status", "left"),
        ("last attempt", "left"),
        ("next schedule", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row["task_id"],
            str(row["attempts"]),
            f"[red]{row['last_status']}[/]",
            _short(row["last_attempt"]),
            _short(row["next_schedule"]),
        )
    shown = f"showing {len(rows)}" if failing > len(rows) else "all shown"
    table.caption = f"{failing} failing of {seen} tasks ({shown})"
    _console(False).print(table)


def _short(iso: str | None) -> str:
    """2026-11-29T08:15:02.314Z → 2026-11-29 08:15:02Z (tables only; JSON keeps full times)."""
    if not iso:
        return "-"
    return iso[:19].replace("T", " ") + "Z"


def _inspect_row(state: Any) -> dict[str, Any]:
    summary = state.summary()
    return {
        "task": str(state.name),
        "task_id": state.name.task,
        "attempts": state.dispatch_count,
        "last_status": state.last_status,
        "last_status_message": summary["last_status_message"],
        "last_attempt": summary["last_dispatch_time"],
        "next_schedule": summary["schedule_time"],
        "in_flight": state.in_flight,
    }


# ---------------------------------------------------------------------------------------------
# redrive demo


@main.command(epilog=EXIT_CODES_HELP)
@click.option("--json", "json_output", is_flag=True, help="Print the outcome records as JSON.")
def demo(json_output: bool) -> None:
    """A real local re-drive, start to finish, in well under a minute.

    Starts the emulator, a target service that fails until "fixed", and handle_signal under
    functions-framework; tasks fail, an alert finds the fix not deployed, a deploy is announced
    and the failed tasks are re-driven and complete; a late duplicate alert finds nothing.
    """
    from redrive_tools.demo import run_demo

    sys.exit(run_demo(json_output=json_output))
