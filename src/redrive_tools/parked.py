"""`redrive parked ...`: the tasks redrive parked before their last attempt, for operators.

- `list`: a table (or JSON lines) of the parking queue, page by page in bounded memory;
- `show`: one parked task's origin, failure and request (its headers' values and body only with
  --body);
- `restore`: created again in their origin queues, due now, through the same guarded path as a
  deploy's restore (claims, allowlist), with progress and a summary;
- `purge`: delete parked tasks (their work is then lost), after a confirmation.

The parking queue is REDRIVE_PARKING_QUEUE, or --parking-queue.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, NoReturn

import click

from redrive_tools.cli import (
    ALLOW_HINT,
    EXIT_CODES_HELP,
    EXIT_USAGE,
    _allow,
    _call_failed,
    _console,
    _fail,
    _print_reasons,
    _progress,
    _queue,
    _Records,
    _runtime,
    _short,
    _style,
    _sweep_exit,
    _sweep_failed,
    _waiting,
    _Watch,
)

_ROWS_PER_TABLE = 500
"""Rows printed per table: the listing streams, one page of tasks in memory at a time."""


def _parking_queue_option(fn: Any) -> Any:
    return click.option(
        "--parking-queue",
        "parking_queue",
        metavar="QUEUE",
        default=None,
        envvar="REDRIVE_PARKING_QUEUE",
        help="The parking queue (full name). Default: REDRIVE_PARKING_QUEUE.",
    )(fn)


def _selection_options(fn: Any) -> Any:
    for option in (
        click.option("--all", "everything", is_flag=True, help="Every parked task."),
        click.option(
            "--task",
            "tasks",
            multiple=True,
            metavar="TASK",
            help="A parked task, by its origin's full name or the parked copy's (repeatable).",
        ),
        click.option(
            "--queue",
            "queues",
            multiple=True,
            metavar="QUEUE",
            help="The tasks parked from this origin queue (repeatable).",
        ),
    ):
        fn = option(fn)
    return fn


@click.group(epilog=EXIT_CODES_HELP)
def parked() -> None:
    """Tasks parked before their last attempt (the parking queue, REDRIVE_PARKING_QUEUE)."""


def _parking_name(value: str | None) -> Any:
    if not value:
        _fail("no parking queue: set REDRIVE_PARKING_QUEUE or pass --parking-queue")
    return _queue(value)


def _reader(watch: _Watch) -> Any:
    """A runtime for reading the parking queue (no claims needed, whatever the environment)."""
    return _runtime(_Records(echo=False), watch, parking_queue=None)


def _fail_call(err: Exception, what: str, watch: _Watch) -> NoReturn:
    from redrive.core import errors

    if isinstance(err, errors.NotFoundError):
        _fail(f"{what}: not found ({err})")
    _call_failed(what, err, watch)


def _selection(queues: tuple[str, ...], tasks: tuple[str, ...], everything: bool) -> Any:
    from redrive.core.names import InvalidName, TaskName
    from redrive.core.parking import RestoreScope

    if not (queues or tasks or everything):
        _fail("say which parked tasks: --queue QUEUE, --task TASK or --all")
    for task in tasks:
        try:
            TaskName.parse(task)
        except InvalidName as err:
            _fail(str(err))
    return RestoreScope(
        queues=frozenset(_queue(q) for q in queues),
        tasks=frozenset(tasks),
        everything=everything,
    )


def _row(state: Any, parked: Any, retention: timedelta, now: datetime) -> dict[str, Any]:
    from redrive.core.records import iso

    expires = parked.expires_at(state.create_time, retention)
    first = parked.first_attempt_at or parked.origin_created_at
    return {
        "origin": str(parked.origin),
        "origin_queue": str(parked.origin.queue_name),
        "task_id": parked.origin.task,
        "copy": str(state.name),
        "parked_at": iso(parked.parked_at),
        "why": parked.why.value,
        "last_status": parked.status,
        "attempts": parked.dispatch_count,
        "failed_at": iso(parked.failed_at),
        "age_s": round((now - first).total_seconds()) if first else None,
        "expires_at": iso(expires),
        "days_left": round((expires - now).total_seconds() / 86400, 1),
    }


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60}m" if hours else f"{rest // 60}m"


def _table(first: bool) -> Any:
    from rich import box
    from rich.table import Table

    # One table per _ROWS_PER_TABLE rows, the header on the first only: they read as one.
    table = Table(show_header=first, box=box.SIMPLE, pad_edge=False)
    for column, justify in (
        ("origin queue", "left"),
        ("task", "left"),
        ("parked at", "left"),
        ("last status", "left"),
        ("attempts", "right"),
        ("age", "right"),
        ("days left", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    return table


def _copies(rt: Any, parking_queue: Any) -> Iterator[tuple[Any, Any]]:
    from redrive.sweep import parked_copies

    return parked_copies(rt.tasks, parking_queue, rt.settings.retry_deadline_s)


def _queue_info(rt: Any, parking_queue: Any, watch: _Watch) -> Any:
    """The parking queue's state and retention, the spinner on while it is read."""
    from redrive.core import errors

    try:
        with _waiting(watch).spinner():
            return rt.tasks.queue_info(parking_queue, fresh=True)
    except errors.RedriveError as err:
        _fail_call(err, f"reading the parking queue {parking_queue}", watch)


@parked.command("list", epilog=EXIT_CODES_HELP)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="QUEUE",
    help="Only the tasks parked from this origin queue (repeatable).",
)
@_parking_queue_option
@click.option("--json", "json_output", is_flag=True, help="One JSON line per parked task.")
def list_parked(queues: tuple[str, ...], parking_queue: str | None, json_output: bool) -> None:
    """Every parked task: origin queue, task, parked at, last status, attempts, age (since its
    first attempt), and days left before Cloud Tasks' retention limit deletes the parked copy.

    Streams page by page: memory stays flat however many tasks are parked."""
    from redrive.core import errors

    origins = {_queue(q) for q in queues}
    pq = _parking_name(parking_queue)
    watch = _Watch()
    rt = _reader(watch)
    console = _console(json_output)
    info = _queue_info(rt, pq, watch)
    now = rt.clock()
    warn_days = rt.settings.parked_warn_s / 86400
    count = expiring = 0
    table: Any = None
    try:
        with _waiting(watch).spinner():  # rows print above it as the pages come
            for state, parked in _copies(rt, pq):
                if origins and parked.origin.queue_name not in origins:
                    continue
                row = _row(state, parked, info.retention, now)
                count += 1
                expiring += row["days_left"] < warn_days
                if json_output:
                    click.echo(json.dumps(row))
                    continue
                if table is None:
                    table = _table(first=count == 1)
                days = f"{row['days_left']:.1f}"
                table.add_row(
                    parked.origin.queue,
                    row["task_id"],
                    _short(row["parked_at"]),
                    f"[red]{row['last_status'] or '-'}[/]",
                    str(row["attempts"]),
                    _age(row["age_s"]),
                    f"[bold red]{days}[/]" if row["days_left"] < warn_days else days,
                )
                if table.row_count >= _ROWS_PER_TABLE:
                    console.print(table)
                    table = None
    except errors.RedriveError as err:
        _fail_call(err, f"listing {pq}", watch)
    if table is not None:
        console.print(table)
    note = f"{count} parked task(s) in {pq}"
    if expiring:
        note += (
            f"; {expiring} with less than {warn_days:g} days left (REDRIVE_PARKED_WARN_S): "
            "restore or purge them before Cloud Tasks deletes them"
        )
    if info.state != "PAUSED":
        note += f"; the parking queue is {info.state}: pause it"
    if json_output:
        click.echo(f"redrive: {note}", err=True)
    else:
        console.print(note)


@parked.command("show", epilog=EXIT_CODES_HELP)
@click.argument("task")
@_parking_queue_option
@click.option("--body", is_flag=True, help="Also print the request's header values and body.")
@click.option("--json", "json_output", is_flag=True, help="Print it as one JSON object.")
def show(task: str, parking_queue: str | None, body: bool, json_output: bool) -> None:
    """One parked task, by the parked copy's full name or its origin's: where it came from, how
    it failed, and its request (method, URL without its query, header names, body size; the
    query, header values and body only with --body)."""
    from urllib.parse import urlsplit

    from redrive.core import errors
    from redrive.core.names import InvalidName, TaskName
    from redrive.core.redact import redact_urls

    try:
        name = TaskName.parse(task)
    except InvalidName as err:
        _fail(str(err))
    pq = _parking_name(parking_queue)
    watch = _Watch()
    rt = _reader(watch)
    info = _queue_info(rt, pq, watch)
    try:
        with _waiting(watch).spinner():
            copy = name if name.queue_name == pq else _find(rt, pq, name)
            read = rt.tasks.read_parked(copy) if copy is not None else None
    except errors.RedriveError as err:
        _fail_call(err, f"reading {task}", watch)
    if read is None:
        _fail(f"no parked task {task} in {pq}")
    state, parked, original = read
    row = _row(state, parked, info.retention, rt.clock())
    request, target = _request_of(original)
    status = original.last_attempt.response_status if original.HasField("last_attempt") else None
    row["last_status_message"] = redact_urls(status.message)[:500] if status is not None else None
    row["request"] = {
        "kind": target,
        "method": request.get("method"),
        "url": request.get("url") if body else _without_query(request.get("url"), urlsplit),
        "headers": request["headers"] if body else sorted(request["headers"]),
        "body_bytes": len(request["body"]),
    }
    if body:
        row["request"]["body"] = _text(request["body"])
    if json_output:
        click.echo(json.dumps(row))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, key in (
        ("origin", "origin"),
        ("parked copy", "copy"),
        ("parked at", "parked_at"),
        ("why", "why"),
        ("last status", "last_status"),
        ("status message", "last_status_message"),
        ("attempts", "attempts"),
        ("failed at", "failed_at"),
        ("expires at", "expires_at"),
        ("days left", "days_left"),
    ):
        table.add_row(label, escape(str(row.get(key) if row.get(key) is not None else "-")))
    req = row["request"]
    table.add_row("request", escape(f"{req['kind']} {req['method']} {req['url']}"))
    headers = req["headers"]
    shown = (
        ", ".join(f"{k}: {v}" for k, v in sorted(headers.items()))
        if isinstance(headers, dict)
        else ", ".join(headers)
    )
    table.add_row("headers", escape(shown or "-"))
    table.add_row("body", escape(req.get("body", f"{req['body_bytes']} bytes (--body shows it)")))
    _console(False).print(table)


def _find(rt: Any, parking_queue: Any, origin: Any) -> Any:
    """The parked copy of `origin` (the most recently parked one)."""
    found: tuple[datetime, Any] | None = None
    for state, parked in _copies(rt, parking_queue):
        if parked.origin == origin and (found is None or parked.parked_at > found[0]):
            found = (parked.parked_at, state.name)
    return found[1] if found else None


def _request_of(original: Any) -> tuple[dict[str, Any], str]:
    """The original's request: method, URL (or App Engine relative URI), headers, body."""
    app_engine = original.HasField("app_engine_http_request")
    req = original.app_engine_http_request if app_engine else original.http_request
    method = type(req).DESCRIPTOR.fields_by_name["http_method"].enum_type
    return (
        {
            "method": method.values_by_number[req.http_method].name,
            "url": req.relative_uri if app_engine else req.url,
            "headers": dict(req.headers),
            "body": bytes(req.body),
        },
        "App Engine" if app_engine else "HTTP",
    )


def _without_query(url: str | None, split: Any) -> str | None:
    if not url:
        return url
    parts = split(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


@parked.command("restore", epilog=EXIT_CODES_HELP)
@_selection_options
@_parking_queue_option
@click.option("--dry-run", is_flag=True, help="Select and report, but restore nothing.")
@click.option(
    "--again",
    is_flag=True,
    help="Restore even a task an earlier restore may have created over an hour ago (its "
    "result can no longer be told): only once you know that restore did not run.",
)
@click.option(
    "--allow-any-queue",
    is_flag=True,
    help="Allow the named --queue origins even if REDRIVE_ALLOWED_QUEUES does not list them.",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop cleanly after this many seconds (exit 3; run again to resume). Default: none.",
)
@click.option("--json", "json_output", is_flag=True, help="Every outcome line, then the summary.")
def restore(
    *,
    queues: tuple[str, ...],
    tasks: tuple[str, ...],
    everything: bool,
    parking_queue: str | None,
    dry_run: bool,
    again: bool,
    allow_any_queue: bool,
    budget: float | None,
    json_output: bool,
) -> None:
    """Restore parked tasks: each is created again in its origin queue, due now (a new name and
    fresh retry counters; the original request), then its parked copy deleted.

    Needs REDRIVE_CLAIMS_QUEUE (two restores of one task never both create it) and an allowed
    origin queue. Safe to run again: restored tasks are no longer parked."""
    from dataclasses import replace

    from redrive.core.decide import SignalRef
    from redrive.core.selection import SweepPlan
    from redrive.sweep import Sweeper

    scope = replace(_selection(queues, tasks, everything), again=again)
    pq = _parking_name(parking_queue)
    overrides: dict[str, Any] = {"parking_queue": pq}
    if dry_run:
        overrides["dry_run"] = True
    if allow_any_queue:
        overrides["allowed_queues"] = _allow(list(scope.queues))
    records = _Records(echo=json_output)
    records.keep = False
    watch = _Watch()
    rt = _runtime(records, watch, **overrides)
    plan = SweepPlan(
        (), None, SignalRef("cli", "operator"), "command line", purpose="restore", restore=scope
    )
    waiting = _waiting(watch)
    progress_bar, on_progress, _ = _progress(waiting, "restoring")
    sweeper = Sweeper(
        rt,
        budget_s=budget if budget is not None else 1e12,
        entry_point="cli",
        on_progress=on_progress,
        owner=f"cli:{uuid.uuid4().hex}",
    )
    with progress_bar:
        report = sweeper.run(plan)
    gave_up = watch.gave_up() if _sweep_failed(report) else None
    record = report.record()
    refused = bool(report.counts.get("SKIPPED_NOT_ALLOWED"))
    code = _sweep_exit(report)
    if refused and code == 0:
        code = EXIT_USAGE  # an origin queue that is not allowed, as `run` and `sweep` say
    if json_output:
        if gave_up:
            click.echo(f"redrive: {gave_up}", err=True)
        if refused:
            click.echo(f"redrive: an origin queue is not allowed: {ALLOW_HINT}", err=True)
        sys.exit(code)
    console = _console(False)
    from rich.table import Table

    table = Table(title="redrive parked restore")
    table.add_column("decision", overflow="fold")
    table.add_column("tasks", justify="right")
    for outcome, count in sorted(Counter(record["counts"]).items()):
        if count > 0:
            table.add_row(f"[{_style(outcome)}]{outcome}[/]", str(count))
    console.print(table)
    stats = record.get("parking") or {}
    console.print(
        f"{stats.get('seen', 0)} parked task(s) looked at, {stats.get('restore_selected', 0)} "
        f"selected, {record['duration_ms'] / 1000:.1f} s"
        + ("" if report.complete else " — [bold]INCOMPLETE[/]: budget spent, run again")
        + (" — DRY RUN" if record["dry_run"] else "")
    )
    _print_reasons(console, records)
    if gave_up:
        console.print(f"[bold red]gave up:[/] {gave_up}")
    if refused:
        console.print(f"[yellow]hint:[/] {ALLOW_HINT}")
    sys.exit(code)


@parked.command("purge", epilog=EXIT_CODES_HELP)
@_selection_options
@_parking_queue_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "json_output", is_flag=True, help="One JSON line per purged task.")
def purge(
    *,
    queues: tuple[str, ...],
    tasks: tuple[str, ...],
    everything: bool,
    parking_queue: str | None,
    yes: bool,
    json_output: bool,
) -> None:
    """Delete parked tasks: their work is then gone for good. Asks first (unless --yes) with the
    number of tasks; only the tasks counted then are deleted."""
    from redrive.core import errors
    from redrive.core.records import iso

    scope = _selection(queues, tasks, everything)
    pq = _parking_name(parking_queue)
    watch = _Watch()
    rt = _reader(watch)
    asked_at = rt.clock()
    try:
        with _waiting(watch).spinner():
            count = sum(1 for state, parked in _copies(rt, pq) if scope.takes(parked, state.name))
    except errors.RedriveError as err:
        _fail_call(err, f"listing {pq}", watch)
    if count == 0:
        click.echo(f"no parked task in {pq} matches", err=json_output)
        return
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"{count} parked task(s) would be deleted: pass --yes to confirm", EXIT_USAGE)
        click.confirm(
            f"Delete {count} parked task(s) from {pq}? Their work is lost.", abort=True, err=True
        )
    purged = gone = 0
    try:
        with _waiting(watch).spinner():
            for state, parked in _copies(rt, pq):
                created = state.create_time or parked.parked_at
                if not scope.takes(parked, state.name) or created > asked_at:
                    continue
                deleted = rt.tasks.delete(state.name)
                if deleted.value == "was_gone":
                    gone += 1
                    continue
                purged += 1
                if json_output:
                    line = {
                        "event": "redrive.purge",
                        "copy": str(state.name),
                        "origin": str(parked.origin),
                        "parked_at": iso(parked.parked_at),
                    }
                    click.echo(json.dumps(line))
    except errors.RedriveError as err:
        _fail_call(err, f"purging {pq} (after {purged} deleted)", watch)
    note = f"purged {purged} parked task(s) from {pq}"
    if gone:
        note += f" ({gone} were gone already: restored or purged meanwhile)"
    click.echo(note, err=json_output)
