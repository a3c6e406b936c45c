"""The `redrive` command line (click; rich for people, --json for machines).

Every command reads the same settings as the functions (REDRIVE_* and CLOUD_TASKS_EMULATOR_HOST
from the environment); options override them. With CLOUD_TASKS_EMULATOR_HOST set the commands talk
to the emulator, otherwise to Google with Application Default Credentials.

Operator commands always run in direct mode (no redrive queue): the operator is the trigger, and
`--rate` is the throttle. The queue allowlist (REDRIVE_ALLOWED_QUEUES) still applies, so a typo
cannot re-drive the wrong queue; `--allow-any-queue` allows exactly the queues (or the task's
queue) named on the command line, nothing else.

Nobody is left guessing: while a call waits (a retried call against an endpoint that does not
answer can take REDRIVE_RETRY_DEADLINE_S), a spinner on stderr says what is waited for when stderr
is a terminal, else one line on stderr says it is retrying; stdout holds only the result (the
records with --json). A setup problem (no credentials, a port taken) is one line and exit 4.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from redrive_tools.quiet import quiet_grpc

# Before gRPC starts: nothing above imports it, and every client is created lazily.
quiet_grpc()

import click  # noqa: E402

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_SETUP = 4
EXIT_HALTED = 5
EXIT_INTERRUPTED = 130
INTERRUPTED = (
    "interrupted (Ctrl-C): what was done stays done (each task's outcome is its own); run the "
    "same command again to go on: tasks already re-driven are no longer selected"
)

EXIT_CODES_HELP = """\b
Exit codes:
  0  done (dispatched, dry run, or a guard's reasoned skip: the outcome says which);
     `status --watch` stopped with Ctrl-C
  1  a task or queue FAILED (transient fault, quota) or PERMISSION_DENIED
  2  usage or bad input: bad option, malformed name or time, a --deployed-at in
     the future, bad REDRIVE_* setting, a queue that does not exist or is not
     allowed (see --allow-any-queue)
  3  not finished: a sweep's --budget ran out before every page was swept, or the
     task is DEFERRED (an attempt is in flight, or an earlier forced run's outcome
     is not known yet): run the same command again later
  4  setup problem: no Google credentials (and no CLOUD_TASKS_EMULATOR_HOST), or
     a port `redrive emulator` needs is already in use
  5  halted: a sweep's canaries failed again (or none answered) in a queue, and
     the rest of that queue was left alone (HALTED): the fix does not work yet
  130  interrupted (Ctrl-C), but for `status --watch` (0)"""

_FAILED = {"FAILED", "PERMISSION_DENIED"}
_USAGE = {"INVALID_SIGNAL", "SKIPPED_NOT_ALLOWED"}
_LATER = {"DEFERRED"}
_DONE = {"DISPATCHED", "DRY_RUN", "QUEUED"}

NO_CREDENTIALS = (
    "no Google credentials found: run `gcloud auth application-default login` (or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a key file); to use the local emulator instead, set "
    "CLOUD_TASKS_EMULATOR_HOST (and CLOUD_RUN_EMULATOR_HOST for the revision fix check)"
)
ALLOW_HINT = (
    "to act on it, add it to REDRIVE_ALLOWED_QUEUES, or pass --allow-any-queue to allow the "
    "queue(s) named on this command line"
)


def _setup_problem(err: BaseException) -> str | None:
    """One line saying what to do, for an error that is the machine's setup, not the work."""
    try:
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:  # pragma: no cover - google-auth comes with the clients
        return None
    if isinstance(err, DefaultCredentialsError):
        return NO_CREDENTIALS
    return None


class _Main(click.Group):
    """The command group: a setup problem ends in one line and exit 4, not a traceback; Ctrl-C
    in one line and exit 130 (not click's "Aborted!" and exit 1, which means FAILED here)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _fail(INTERRUPTED, EXIT_INTERRUPTED)
        except Exception as err:
            problem = _setup_problem(err)
            if problem is None:
                raise
            _fail(problem, EXIT_SETUP)


@click.group(cls=_Main, epilog=EXIT_CODES_HELP)
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

    The options are those of the standalone `cloudtasks-emulator` command (see --help). A port
    already in use ends it with exit 4.
    """
    from cloudtasks_emulator.__main__ import main as emulator_main

    emulator_main(list(args), prog="redrive emulator")


# ---------------------------------------------------------------------------------------------
# shared plumbing


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"redrive: {message}", err=True)
    sys.exit(code)


def _call_failed(what: str, err: BaseException, watch: _Watch, code: int = EXIT_FAILED) -> NoReturn:
    """One line: what failed and, when a call was retried without an answer, what was given up
    on (the call, how long, the attempts, the last answer, what to check) instead of the
    client's own text."""
    gave_up = watch.gave_up()
    _fail(f"{what} failed: {gave_up or err}", code)


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    from redrive.core.config import parse_time

    try:
        return parse_time(value)
    except ValueError:
        _fail(f"{option}: not an RFC 3339 time: {value!r}")


def _refuse_future(when: datetime, option: str) -> None:
    """A fix cannot be live before it is deployed: a time ahead of the clock (by more than
    REDRIVE_CLOCK_SKEW_S) is a typo, refused as the functions refuse it."""
    from redrive.core.config import ConfigError, Settings
    from redrive.core.records import iso

    try:
        settings = Settings.from_env(
            fix_check="none", fix_deployed_at=None, redrive_queue=None, job_url=None
        )
    except ConfigError as err:
        _fail(str(err))
    now = settings.now()
    if settings.is_future(when, now):
        clock = "the emulator's clock" if settings.emulator_clock else "this machine's clock"
        _fail(
            f"{option} {iso(when)} is in the future ({clock} says {iso(now)}; more than "
            f"REDRIVE_CLOCK_SKEW_S={settings.clock_skew_s:g}s ahead): a fix cannot be live "
            "before it is deployed"
        )


def _queue(value: str) -> Any:
    from redrive.core.names import InvalidName, QueueName

    try:
        return QueueName.parse(value)
    except InvalidName as err:
        _fail(str(err))


class _Records:
    """Collects outcome records; with `echo` set, also prints each one as a JSON line.

    With `keep` off (a sweep) only the reasons of what did not go through stay: grouped by
    outcome and reason, bounded, for the human table.
    """

    MAX_REASONS = 500

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.records: list[dict[str, Any]] = []
        self.keep = True
        self.reasons: Counter[tuple[str, str]] = Counter()
        """(outcome, reason) → tasks, for outcomes other than DISPATCHED/DRY_RUN/QUEUED."""
        self.examples: dict[tuple[str, str], str] = {}
        """(outcome, reason) → one task it happened to."""
        self.queues: dict[str, tuple[str, str]] = {}
        """Queue → (outcome, reason) for the queues a sweep could not list."""
        self.plan: dict[str, Any] | None = None
        """A sweep's plan line."""

    def emit(self, record: Mapping[str, Any]) -> None:
        if record.get("event") == "redrive.plan":
            self.plan = dict(record)
        if self.keep:
            self.records.append(dict(record))
        else:
            self._note(record)
        if self.echo:
            click.echo(json.dumps(record, default=str))

    def _note(self, record: Mapping[str, Any]) -> None:
        outcome, reason = str(record.get("outcome")), str(record.get("reason") or "")
        if record.get("event") != "redrive.outcome" or outcome in _DONE:
            return
        if record.get("queue") and not record.get("task"):
            self.queues[str(record["queue"])] = (outcome, reason)
            return
        key = (outcome, reason)
        if key not in self.reasons and len(self.reasons) >= self.MAX_REASONS:
            key = (outcome, "(other reasons: see --json)")
        self.reasons[key] += 1
        self.examples.setdefault(key, str(record.get("task") or ""))


def _runtime(records: _Records, watch: _Watch | None = None, **overrides: Any) -> Any:
    from redrive.adapters.cloudrun import CloudRun
    from redrive.adapters.cloudtasks import CloudTasks
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
    if watch is None:
        return Runtime(settings, log=CliLog())
    watch.retry_deadline_s, watch.rpc_timeout_s = settings.retry_deadline_s, settings.rpc_timeout_s
    # The runtime's own adapters, on clients that report every attempt to the watch (built on
    # first use, as the runtime builds them).
    tasks = CloudTasks(
        _watched_tasks_client(settings, watch),
        api_version=settings.tasks_api,
        response_view=settings.response_view,
        retry_deadline_s=settings.retry_deadline_s,
        call_timeout_s=settings.rpc_timeout_s,
    )
    services, revisions = _watched_run_clients(settings, watch)
    cloudrun = CloudRun(
        services,
        revisions,
        retry_deadline_s=settings.retry_deadline_s,
        call_timeout_s=settings.rpc_timeout_s,
    )
    return Runtime(settings, tasks=tasks, cloudrun=cloudrun, log=CliLog())


def _allow(names: list[Any]) -> Any:
    from redrive.core.config import QueueAllowlist

    return QueueAllowlist(frozenset(str(q) for q in names))


def _console(json_output: bool) -> Any:
    from rich.console import Console

    # Machine output owns stdout; people-facing text then goes to stderr.
    return Console(stderr=json_output, highlight=False, soft_wrap=False)


def _err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _live_ok(console: Any) -> bool:
    """A live display (spinner, progress bar) only on a real terminal."""
    return bool(console.is_terminal and not console.is_dumb_terminal)


# ---------------------------------------------------------------------------------------------
# what the command waits for: every call to Cloud Tasks and Cloud Run, attempt by attempt

_RPCS = {
    "get_task": "GetTask",
    "run_task": "RunTask",
    "create_task": "CreateTask",
    "list_tasks": "ListTasks",
    "get_queue": "GetQueue",
    "delete_task": "DeleteTask",
    "list_queues": "ListQueues",
    "list_services": "ListServices",
    "get_service": "GetService",
    "get_revision": "GetRevision",
}
"""The client methods watched: those the runtime's adapters call, and the CLI's GetQueue."""


@dataclass
class _Call:
    """One call: its consecutive attempts (the same method on the same resource, each after a
    retryable error) are the runtime's retries of it."""

    service: str
    method: str
    subject: str
    started: float
    attempts: int = 0
    attempt_started: float = 0.0
    in_flight: bool = False
    last_error: str | None = None
    """The text of the last attempt's error ("UNAVAILABLE: ..."), None once answered."""
    done: bool = False
    """Answered, or refused for good: the next attempt of the same method is a new call."""
    ended: float | None = None

    def waited_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started


class _Watch:
    """Sees every attempt of every call (through `_Watched` clients), tells its listeners, and
    remembers what the command gave up waiting for."""

    def __init__(self, retry_deadline_s: float = 30.0, rpc_timeout_s: float = 20.0) -> None:
        self.retry_deadline_s = retry_deadline_s
        self.rpc_timeout_s = rpc_timeout_s
        self.listeners: list[Callable[[_Call], None]] = []
        self.errors: dict[tuple[str, str], str] = {}
        """(method, resource) → the text of its last error (e.g. GetTask's NOT_FOUND)."""
        self._current: _Call | None = None
        self._lock = threading.Lock()
        self.waiting: _Waiting | None = None
        """What people see while this watch's calls wait (see `_waiting`)."""

    def attempt(self, service: str, method: str, subject: str) -> _Call:
        with self._lock:
            call = self._current
            if call is None or call.done or (call.method, call.subject) != (method, subject):
                call = self._current = _Call(service, method, subject, time.monotonic())
            call.attempts += 1
            call.in_flight, call.attempt_started = True, time.monotonic()
        self._notify(call)
        return call

    def current(self) -> _Call | None:
        """The call in flight, or the last one."""
        with self._lock:
            return self._current

    def answered(self, call: _Call) -> None:
        with self._lock:
            call.in_flight, call.done, call.last_error = False, True, None
            call.ended = time.monotonic()
        self._notify(call)

    def failed(self, call: _Call, err: BaseException) -> None:
        from redrive.adapters.cloudtasks import transient_predicate

        text = _error_text(err)
        with self._lock:
            call.in_flight, call.last_error, call.ended = False, text, time.monotonic()
            call.done = not (isinstance(err, Exception) and transient_predicate(err))
            self.errors[(call.method, call.subject)] = text
        self._notify(call)

    def gave_up(self) -> str | None:
        """The last call, when it ended without an answer after retrying: what, how long, the
        last error and what to check. None when the last call was answered."""
        call = self.current()
        if call is None or call.done or call.in_flight or call.last_error is None:
            return None
        tries = f"{call.attempts} attempt{'' if call.attempts == 1 else 's'}"
        at = call.service.partition(" at ")[2]
        hint = f"is the emulator running at {at}?" if at else "check the network and proxy"
        return (
            f"{call.service} did not answer {call.method} {_tail(call.subject)}: gave up after "
            f"{call.waited_s():.1f} s and {tries} (REDRIVE_RETRY_DEADLINE_S="
            f"{self.retry_deadline_s:g}), the last answer {_short_error(call.last_error)}: {hint}"
        )

    def _notify(self, call: _Call) -> None:
        for listener in list(self.listeners):
            listener(call)


def _error_text(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    code = getattr(getattr(err, "grpc_status_code", None), "name", None) or type(err).__name__
    return f"{code}: {message}"


def _short_error(text: str) -> str:
    """UNAVAILABLE: failed to connect ...: Connection refused → UNAVAILABLE (Connection refused)."""
    code, _, message = text.partition(": ")
    last = message.rsplit(": ", 1)[-1].strip()
    return f"{code} ({last[:60]})" if last else code


def _subject(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    request = kwargs.get("request", args[0] if args else None)
    if isinstance(request, Mapping):
        return str(request.get("name") or request.get("parent") or "")
    return str(getattr(request, "name", None) or getattr(request, "parent", None) or "")


class _Watched:
    """A Google client, built on first use, whose watched methods report each attempt to a
    `_Watch`. A `retry` passed to a call is applied here, around single attempts, so that each
    attempt is seen; the runtime's retries around calls made with retry=None are seen as such."""

    def __init__(self, build: Callable[[], Any], service: str, watch: _Watch) -> None:
        self._build = build
        self._service = service
        self._watch = watch
        self._client: Any = None
        self._lock = threading.Lock()

    def _target(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._target(), name)
        method = _RPCS.get(name)
        if method is None:
            return attr
        watch, service = self._watch, self._service

        def attempt(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            call = watch.attempt(service, method, _subject(args, kwargs))
            try:
                answer = attr(*args, **kwargs)
            except BaseException as err:
                watch.failed(call, err)
                raise
            watch.answered(call)
            return answer

        def watched(*args: Any, **kwargs: Any) -> Any:
            from google.api_core.retry import Retry

            retry = kwargs.get("retry")
            if isinstance(retry, Retry):
                kwargs["retry"] = None
                return retry(lambda: attempt(args, kwargs))()
            return attempt(args, kwargs)

        return watched


def _watched_tasks_client(settings: Any, watch: _Watch) -> Any:
    from redrive.adapters.clients import tasks_client

    host = settings.tasks_emulator_host
    label = f"Cloud Tasks at {host}" if host else "Cloud Tasks (cloudtasks.googleapis.com)"
    return _Watched(lambda: tasks_client(settings), label, watch)


def _watched_run_clients(settings: Any, watch: _Watch) -> tuple[Any, Any]:
    from functools import cache

    from redrive.adapters.clients import run_clients

    host = settings.run_emulator_host
    label = f"Cloud Run Admin at {host}" if host else "Cloud Run Admin (run.googleapis.com)"
    both = cache(lambda: run_clients(settings))
    return _Watched(lambda: both()[0], label, watch), _Watched(lambda: both()[1], label, watch)


def _describe(call: _Call, retry_deadline_s: float) -> str:
    """The spinner's line for a call (after the spinner and the time since the call started)."""
    from rich.markup import escape

    what = f"{call.method} {escape(_tail(call.subject))}"
    last = escape(_short_error(call.last_error)) if call.last_error else ""
    if call.in_flight and call.attempts == 1:
        return f"{what} [dim]· waiting for {escape(call.service)}[/]"
    if call.in_flight:
        return (
            f"{what} · attempt {call.attempts}, last [yellow]{last}[/] [dim]· gives up after "
            f"{retry_deadline_s:g} s[/]"
        )
    if last and not call.done:
        service = escape(call.service)
        return f"{what} · attempt {call.attempts}: [yellow]{last}[/] [dim]from {service}[/]"
    return f"[dim]{what} answered[/]"


def _tail(name: str) -> str:
    """projects/p/locations/l/queues/q/tasks/t → queues/q/tasks/t (a line on a terminal)."""
    parts = name.split("/")
    return "/".join(parts[4:]) if len(parts) > 4 and parts[0] == "projects" else name


class _Waiting:
    """What people see while the command waits. On a terminal: a spinner (or the sweep's progress
    bar) with the call, the time since it started, its last answer and attempt. Elsewhere: one
    line on stderr when a call is retried, or when one attempt has had no answer for SLOW_S.
    Never writes to stdout."""

    SLOW_S = 5.0
    """Not a terminal: an attempt without an answer for this long is said (a black-holed
    address answers nothing until REDRIVE_RPC_TIMEOUT_S)."""

    def __init__(self, watch: _Watch, err_console: Any) -> None:
        self.watch = watch
        self.console = err_console
        self.live = _live_ok(err_console)
        self.show: Callable[[_Call], None] | None = None
        watch.listeners.append(self._on_call)

    def _on_call(self, call: _Call) -> None:
        if self.live:
            if self.show is not None:
                self.show(call)
            return
        if call.in_flight and call.attempts == 2:
            last = _short_error(call.last_error or "no answer")
            click.echo(
                f"redrive: {call.service} did not answer {call.method} {_tail(call.subject)}: "
                f"{last}; retrying for up to {self.watch.retry_deadline_s:g} s "
                "(REDRIVE_RETRY_DEADLINE_S)",
                err=True,
            )

    @contextmanager
    def slow_calls(self) -> Iterator[None]:
        """Not a terminal: a watchdog thread saying when an attempt has waited SLOW_S."""
        if self.live:
            yield
            return
        stop = threading.Event()

        def watchdog() -> None:
            said: tuple[int, int] | None = None
            while not stop.wait(0.25):
                call = self.watch.current()
                if call is None or not call.in_flight or said == (id(call), call.attempts):
                    continue
                waited = time.monotonic() - call.attempt_started
                if waited >= self.SLOW_S:
                    said = (id(call), call.attempts)
                    click.echo(
                        f"redrive: still waiting for {call.service}: {call.method} "
                        f"{_tail(call.subject)} has had no answer for {waited:.0f} s (an attempt "
                        f"may take REDRIVE_RPC_TIMEOUT_S={self.watch.rpc_timeout_s:g}s, and is "
                        f"retried for up to REDRIVE_RETRY_DEADLINE_S="
                        f"{self.watch.retry_deadline_s:g}s)",
                        err=True,
                    )

        thread = threading.Thread(target=watchdog, name="redrive-waiting", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)

    @contextmanager
    def spinner(self) -> Iterator[None]:
        """A spinner on stderr for the duration (a terminal only; gone when done)."""
        if not self.live:
            with self.slow_calls():
                yield
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        bar = Progress(
            SpinnerColumn(table_column=Column(no_wrap=True, min_width=1)),
            TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
            # The line gets what is left, cut at the edge: the spinner and the time always show.
            TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True)),
            console=self.console,
            expand=True,
            transient=True,
            # Records on stdout pass through the display only when stdout is this terminal too.
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=False,
        )
        task_id = bar.add_task("[dim]working[/]", total=None)
        shown: list[_Call] = []

        def show(call: _Call) -> None:
            description = _describe(call, self.watch.retry_deadline_s)
            if shown and shown[0] is call:
                bar.update(task_id, description=description)
            else:
                shown[:] = [call]
                bar.reset(task_id, description=description)  # the elapsed time is the call's
            bar.refresh()

        self.show = show
        try:
            with bar:
                yield
        finally:
            self.show = None


def _waiting(watch: _Watch) -> _Waiting:
    """The watch's display: one per watch, so that a command showing several waits in turn
    says each retried call once."""
    if watch.waiting is None:
        watch.waiting = _Waiting(watch, _err_console())
    return watch.waiting


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
    help="RFC 3339 time the fix went live (the static fix check); not in the future.",
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
    then RunTask, and the outcome is printed. A task whose queue does not exist exits 2.
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
        _refuse_future(when, "--deployed-at")
        overrides["fix_deployed_at"] = when
        overrides["fix_check"] = fix_check or "static"
    elif fix_check is not None:
        overrides["fix_check"] = fix_check
    if dry_run:
        overrides["dry_run"] = True
    if allow_any_queue:
        overrides["allowed_queues"] = _allow([task.queue_name])
    records = _Records(echo=json_output)
    watch = _Watch()
    rt = _runtime(records, watch, **overrides)
    waiting = _waiting(watch)
    with waiting.spinner():
        failure = Failure(task, rt.clock(), SignalRef("cli", "operator"))
        started = time.monotonic()
        request = pipeline.Request(failure, pipeline.Act.RUN, owner=f"cli:{uuid.uuid4().hex}")
        result = pipeline.process(request, rt)
        outcome = result.outcome.value
        missing = _missing_queue(rt, watch, task) if outcome == "NOT_FOUND" else None
    # Recorded (and, with --json, printed) once the spinner is gone.
    pipeline.record(
        rt, result, failure=failure, signal=failure.signal, entry_point="cli", started=started
    )
    record = records.records[-1]
    gave_up = watch.gave_up() if outcome in _FAILED else None
    if not json_output:
        _print_record(_console(json_output), record, waited=gave_up, missing_queue=missing)
    elif gave_up:
        click.echo(f"redrive: {gave_up}", err=True)
    if json_output and outcome == "SKIPPED_NOT_ALLOWED":
        click.echo(f"redrive: queue {task.queue_name} is not allowed: {ALLOW_HINT}", err=True)
    if missing is not None:
        said = f" ({missing})" if json_output else ""
        _fail(f"queue {task.queue_name} does not exist{said}: check the name")
    if outcome in _FAILED:
        sys.exit(EXIT_FAILED)
    if outcome in _USAGE:
        sys.exit(EXIT_USAGE)
    if outcome in _LATER:
        sys.exit(EXIT_INCOMPLETE)


QUEUE_MISSING_TEXT = "queue does not exist"
"""What Cloud Tasks answers GetTask when the task's queue does not exist (a missing task is
"Requested entity was not found.")."""


def _missing_queue(rt: Any, watch: _Watch, task: Any) -> str | None:
    """Cloud Tasks' answer when the task's queue does not exist, else None (the task is gone).

    GetTask's NOT_FOUND text tells a missing queue from a missing task; when it does not, one
    GetQueue settles it (an unanswered or refused GetQueue leaves it at "the task is gone")."""
    text = watch.errors.get(("GetTask", str(task)), "")
    if QUEUE_MISSING_TEXT in text.lower():
        return text
    from google.api_core import exceptions as gexc

    try:
        rt.tasks.client.get_queue(
            request={"name": str(task.queue_name)},
            retry=None,
            timeout=min(rt.settings.rpc_timeout_s, 10.0),
        )
    except gexc.NotFound as err:
        return _error_text(err)
    except Exception:
        return None
    return None


_STYLES = {
    "DISPATCHED": "bold green",
    "DRY_RUN": "cyan",
    "QUEUED": "green",
    "NOT_FOUND": "yellow",
    "FAILED": "bold red",
    "PERMISSION_DENIED": "bold red",
    "INVALID_SIGNAL": "red",
    "HALTED": "bold red",
    "GATED": "cyan",
}


def _style(outcome: str) -> str:
    return _STYLES.get(outcome, "yellow" if outcome.startswith("SKIPPED") else "white")


def _print_record(
    console: Any,
    record: Mapping[str, Any],
    *,
    waited: str | None = None,
    missing_queue: str | None = None,
) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # long names and reasons wrap, never "…"
    outcome = str(record["outcome"])
    table.add_row("outcome", f"[{_style(outcome)}]{outcome}[/]")
    table.add_row("task", escape(str(record.get("task"))))
    reason = str(record.get("reason"))
    if missing_queue is not None:
        reason = f"the task's queue does not exist (Cloud Tasks: {missing_queue})"
    table.add_row("reason", escape(reason))
    if waited:
        table.add_row("waited", escape(waited))
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
            escape(
                f"{fix.get('strategy')}: live since {fix.get('live_since') or '-'}"
                + (f" ({fix.get('service')})" if fix.get("service") else "")
            ),
        )
    run_info = record.get("run") or {}
    if run_info:
        table.add_row("run", f"dispatch count now {run_info.get('dispatch_count_after')}")
    if record.get("dry_run"):
        table.add_row("dry run", "yes")
    if outcome == "SKIPPED_NOT_ALLOWED":
        table.add_row("hint", ALLOW_HINT)
    console.print(table)


# ---------------------------------------------------------------------------------------------
# redrive sweep


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
@click.option(
    "--deployed-at",
    metavar="TIME",
    required=True,
    help="RFC 3339 time the fix went live (not in the future): tasks whose last attempt "
    "failed before it are re-driven.",
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
    "--status",
    "statuses",
    multiple=True,
    metavar="LIST",
    callback=lambda ctx, param, value: _status_option(value),
    help="Re-drive only tasks whose last attempt failed with these statuses: HTTP statuses "
    "(500), classes (5xx), google.rpc code names (UNAVAILABLE); comma-separated or repeated; "
    "`any` for every failure. Default: REDRIVE_SWEEP_STATUSES, else every failure.",
)
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
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print the plan (tasks seen, selected by reason and by last status, the method per "
    "queue, the rate that bounds it, the ETA) and stop: nothing is claimed, run, enqueued or "
    "deleted.",
)
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Print the plan record, every outcome record, then the SWEEP record, as JSON lines.",
)
def sweep(
    queues: tuple[str, ...],
    *,
    deployed_at: str,
    rate: float,
    dry_run: bool,
    statuses: Any,
    budget: float | None,
    allow_any_queue: bool,
    plan_only: bool,
    json_output: bool,
) -> None:
    """Re-drive every task of QUEUE... whose last attempt failed before --deployed-at.

    Queues are full names (projects/P/locations/L/queues/Q). Tasks in flight, never attempted,
    or dispatched again since the deploy are left alone; each selected task gets the guarded
    decision and one RunTask, at --rate per second. Safe to run again: tasks already re-driven
    are no longer selected. The table ends with the reasons of everything not re-driven. The
    plan comes first (--plan prints it and does nothing else).
    """
    from redrive.core.decide import SignalRef
    from redrive.core.selection import SweepPlan
    from redrive.sweep import Sweeper

    names = tuple(dict.fromkeys(_queue(q) for q in queues))
    when = _parse_time(deployed_at, "--deployed-at")
    assert when is not None
    _refuse_future(when, "--deployed-at")
    overrides: dict[str, Any] = {"direct_rate_per_s": rate}
    if dry_run:
        overrides["dry_run"] = True
    if allow_any_queue:
        overrides["allowed_queues"] = _allow(list(names))
    records = _Records(echo=json_output)
    records.keep = False  # per-task records stream out; only counters and reasons stay
    watch = _Watch()
    rt = _runtime(records, watch, **overrides)
    chosen = statuses if statuses is not None else rt.settings.sweep_statuses
    # One operator command, one re-drive: its id comes from this run's own id.
    run_id = uuid.uuid4().hex
    signal = SignalRef("cli", "operator", run_id)
    plan = SweepPlan(names, when, signal, "command line", statuses=chosen)
    waiting = _waiting(watch)
    if plan_only:
        planner = Sweeper(rt, budget_s=budget if budget is not None else 1e12, entry_point="cli")
        with waiting.spinner():
            planned = planner.plan_only(plan)
        if not json_output:
            _print_plan(_console(json_output), planned)
        elif planned["not_allowed"]:
            click.echo(f"redrive: a queue is not allowed: {ALLOW_HINT}", err=True)
        sys.exit(_plan_exit(planned))
    progress_bar, on_progress, set_total = _progress(waiting)
    sweeper = Sweeper(
        rt,
        budget_s=budget if budget is not None else 1e12,
        entry_point="cli",
        on_progress=on_progress,
        owner=f"cli:{run_id}",
    )
    with progress_bar:
        set_total(_task_totals(rt, names))
        report = sweeper.run(plan)
    gave_up = watch.gave_up() if _sweep_failed(report) else None
    if not json_output:
        _print_sweep(_console(json_output), report.record(), report, records, waited=gave_up)
    else:
        if gave_up:
            click.echo(f"redrive: {gave_up}", err=True)
        if "SKIPPED_NOT_ALLOWED" in report.queue_outcomes.values():
            click.echo(f"redrive: a queue is not allowed: {ALLOW_HINT}", err=True)
    sys.exit(_sweep_exit(report))


def _plan_exit(planned: Mapping[str, Any]) -> int:
    """1 when a queue could not be listed, 2 when one is not allowed or missing, else 0."""
    errors = [q["error"] for q in planned["per_queue"] if q["error"] and not q["tasks_seen"]]
    if any("NOT_FOUND" in str(e) for e in errors) or planned["not_allowed"]:
        return EXIT_USAGE
    return EXIT_FAILED if errors else EXIT_OK


def _print_plan(console: Any, planned: Mapping[str, Any]) -> None:
    """The plan as tables: per queue what is selected, how and how fast; then, per queue, the
    selected tasks by last status and the others by why; then the totals and the ETA."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="redrive sweep --plan", show_lines=True)
    table.add_column("queue", overflow="fold")
    table.add_column("tasks seen", justify="right")
    table.add_column("selected", justify="right")
    table.add_column("method", overflow="fold")
    table.add_column("rate", overflow="fold")
    table.add_column("ETA", justify="right", no_wrap=True)
    detail = Table(
        title="selected by last status, and why the others are not",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    detail.add_column("queue", overflow="fold")
    detail.add_column("", overflow="fold")
    detail.add_column("tasks", justify="right")
    for q in planned["per_queue"]:
        name = escape(_tail(q["queue"]))
        method = {"run": "RunTask", "recreate": "re-create"}.get(q["method"] or "", "-")
        why = f"\n[dim]{escape(q['why'])}[/]" if q["why"] else ""
        rate = f"{q['rate_per_s']:g}/s" if q["rate_per_s"] is not None else "-"
        bound = f"\n[dim]{escape(q['limited_by'])}[/]" if q["limited_by"] else ""
        seen = str(q["tasks_seen"]) + ("" if q["counted"] else "+")
        eta = _seconds(q["eta_s"]) if q["eta_s"] is not None else "-"
        table.add_row(name, seen, str(q["selected"]), method + why, rate + bound, eta)
        for status, count in sorted(q["by_status"].items()):
            detail.add_row(name, f"selected: {escape(status)}", str(count))
        for pick, count in sorted(q["skipped"].items()):
            what = pick.lower().replace("_", " ")
            detail.add_row(name, f"[dim]not selected: {what}[/]", str(count))
    for queue in planned["not_allowed"]:
        table.add_row(escape(_tail(queue)), "-", "-", "[yellow]not allowed[/]", "-", "-")
    console.print(table)
    if detail.row_count:
        console.print(detail)
    console.print(
        f"{planned['selected']} of {planned['tasks_seen']} task(s) selected"
        + ("" if planned["counted"] else " (at least: a queue could not be counted whole)")
        + f"; ETA {_seconds(planned['eta_s'])} (at {planned['eta_at']})"
        + (f", limited by {escape(planned['limited_by'])}" if planned["limited_by"] else "")
        + (" — DRY RUN" if planned["dry_run"] else "")
        + ". Nothing was done: run the same command without --plan to re-drive."
    )
    for q in planned["per_queue"]:
        if q["error"]:
            console.print(f"[yellow]{escape(_tail(q['queue']))}:[/] {escape(q['error'])}")
    if planned["not_allowed"]:
        console.print(f"[yellow]hint:[/] {ALLOW_HINT}")


def _seconds(value: float) -> str:
    """12.3 → 12.3 s; 90 → 1 min 30 s; 5400 → 1 h 30 min."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _status_option(value: tuple[str, ...]) -> Any:
    """--status as a StatusFilter (None when not given); a bad list is a usage error (exit 2)."""
    if not value:
        return None
    from redrive.core.statuses import StatusFilter, StatusFilterError

    try:
        return StatusFilter.parse(value, "--status")
    except StatusFilterError as err:
        raise click.BadParameter(str(err)) from None


def _task_totals(rt: Any, names: tuple[Any, ...]) -> int | None:
    """Tasks in the queues, for the progress bar (v2beta3 queue stats; None when unknown)."""
    if rt.settings.tasks_api != "v2beta3":
        return None
    total = 0
    try:
        for name in names:
            # One attempt, no retries: only a nicety, the sweep itself reports what it finds.
            queue = rt.tasks.client.get_queue(
                request={"name": str(name), "read_mask": {"paths": ["name", "stats"]}},
                retry=None,
                timeout=min(rt.settings.rpc_timeout_s, 10.0),
            )
            total += int(queue.stats.tasks_count)
    except Exception as err:
        if _setup_problem(err):
            raise
        return None
    return total


def _progress(
    waiting: _Waiting, doing: str = "sweeping"
) -> tuple[Any, Callable[[Any], None] | None, Callable[[int | None], None]]:
    """The sweep's live progress bar, on stderr when it is a terminal, with what is waited for
    when a call is slow or retried (else the not-a-terminal lines); its `on_progress`; a setter
    of its total."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.table import Column
    from rich.text import Text

    if not waiting.live:
        return waiting.slow_calls(), None, lambda total: None

    class WaitColumn(ProgressColumn):
        """Read at every refresh: the call, when it has waited a second or is retried."""

        def render(self, task: Any) -> Text:
            call = waiting.watch.current()
            if call is None or call.done:
                return Text("")
            waited = call.waited_s()
            if call.in_flight and call.attempts == 1 and waited < 1.0:
                return Text("")
            last = _short_error(call.last_error or "")
            if call.in_flight and call.attempts > 1:
                what = f"{call.method} attempt {call.attempts}, {waited:.0f} s, after {last}"
            elif call.in_flight:
                what = f"waiting {waited:.0f} s for {call.service}: {call.method}"
            else:
                what = f"{call.method} attempt {call.attempts}: {last}"
            return Text(f"· {what}", style="yellow", no_wrap=True, overflow="ellipsis")

    bar = Progress(
        TextColumn(f"[bold]{doing}[/]"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("tasks seen · {task.fields[line]}"),
        WaitColumn(table_column=Column(ratio=1, no_wrap=True)),
        console=waiting.console,
        transient=False,
        expand=True,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )
    task_id = bar.add_task("sweep", total=None, line="0 selected")

    def update(p: Any) -> None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(p.counts.items()))
        line = f"{p.selected} selected" + (f" · {counts}" if counts else "")
        bar.update(task_id, completed=p.tasks_seen, line=line)

    def show(call: _Call) -> None:
        if call.last_error is not None or call.attempts > 1:  # else the next refresh will do
            bar.refresh()

    waiting.show = show
    return bar, update, lambda total: bar.update(task_id, total=total)


def _sweep_failed(report: Any) -> bool:
    return bool(
        any(report.counts[o] for o in _FAILED) or set(report.queue_outcomes.values()) & _FAILED
    )


_REASON_ROWS = 12
"""Reasons shown under a sweep's table (most frequent first; --json has every line)."""


def _print_sweep(
    console: Any,
    record: Mapping[str, Any],
    report: Any,
    records: _Records,
    *,
    waited: str | None = None,
) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="redrive sweep", show_lines=False)
    table.add_column("decision", overflow="fold")
    table.add_column("tasks", justify="right")
    counts = Counter(record["counts"])
    # The runtime counts a queue whose listing FAILED among the FAILED: here it is a queue row.
    counts["FAILED"] -= sum(1 for o in record["queue_outcomes"].values() if o == "FAILED")
    for outcome, count in sorted(counts.items()):
        if count > 0:
            table.add_row(f"[{_style(outcome)}]{outcome}[/]", str(count))
    for why, count in sorted(Counter(record["skipped"]).items()):
        table.add_row(f"[dim]not selected: {why.lower().replace('_', ' ')}[/]", str(count))
    for outcome, count in sorted(Counter(record["queue_outcomes"].values()).items()):
        table.add_row(f"[{_style(outcome)}]queue {outcome}[/]", f"{count} queue(s)")
    console.print(table)
    failed = _sweep_failed(report)
    if record.get("redrive_id"):
        console.print(f"re-drive {record['redrive_id']} (`redrive status`, `redrive cancel`)")
    console.print(
        f"{record['tasks_seen']} tasks seen in {record['pages']} page(s), "
        f"{record['selected']} selected"
        + (f" (statuses {escape(str(record['statuses']))})" if record.get("statuses") else "")
        + f", {record['duration_ms'] / 1000:.1f} s"
        + (
            f" (planned: ETA {_seconds(records.plan['eta_s'])})"
            if records.plan and records.plan["selected"]
            else ""
        )
        + ("" if report.complete else " — [bold]INCOMPLETE[/]: budget spent, run again to resume")
        + (" — [bold red]FAILED[/]: the reasons are below; run again once fixed" if failed else "")
        + (" — DRY RUN" if record["dry_run"] else "")
    )
    _print_reasons(console, records)
    if waited:
        console.print(f"[bold red]gave up:[/] {escape(waited)}")
    if "SKIPPED_NOT_ALLOWED" in record["queue_outcomes"].values():
        console.print(f"[yellow]hint:[/] {ALLOW_HINT}")


def _print_reasons(console: Any, records: _Records) -> None:
    """Why queues were not swept and tasks not re-driven: the outcome lines' reasons, whole and
    wrapped to the terminal (never cut)."""
    from rich.markup import escape
    from rich.table import Table

    if not records.queues and not records.reasons:
        return
    table = Table(title="why", title_justify="left", box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold", ratio=1)
    for queue, (outcome, reason) in sorted(records.queues.items()):
        table.add_row(
            f"[{_style(outcome)}]{outcome}[/]", f"queue {escape(queue)}: {escape(reason)}"
        )

    def rank(item: tuple[tuple[str, str], int]) -> tuple[int, int, str]:
        (outcome, _), count = item
        return (0 if outcome in _FAILED else 1 if outcome in _LATER else 2, -count, outcome)

    ranked = sorted(records.reasons.items(), key=rank)
    for (outcome, reason), count in ranked[:_REASON_ROWS]:
        example = records.examples.get((outcome, reason), "")
        where = f"task {_tail(example)}" if count == 1 and example else f"{count} tasks"
        table.add_row(f"[{_style(outcome)}]{outcome}[/]", f"{escape(where)}: {escape(reason)}")
    if len(ranked) > _REASON_ROWS:
        rest = sum(count for _, count in ranked[_REASON_ROWS:])
        table.add_row(
            "…",
            f"{len(ranked) - _REASON_ROWS} more reason(s) for {rest} task(s): --json prints "
            "every outcome line",
        )
    console.print(table)


def _sweep_exit(report: Any) -> int:
    queue_outcomes = set(report.queue_outcomes.values())
    if _sweep_failed(report):
        return EXIT_FAILED
    if report.halted:
        return EXIT_HALTED
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
    watch = _Watch()
    rt = _runtime(_Records(echo=False), watch)
    try:
        with _waiting(watch).spinner():
            states, seen, failing = failing_tasks(
                rt.tasks, name, limit, rt.settings.retry_deadline_s
            )
    except errors.NotFoundError as err:
        _fail(f"queue not found: {err}")
    except errors.PermissionDeniedError as err:
        _fail(str(err), EXIT_FAILED)
    except errors.RedriveError as err:
        _call_failed(f"listing {name}", err, watch)
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
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
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
    and the failed tasks are re-driven and complete; a late duplicate alert finds nothing. The
    emulator's clock runs 60x, so its times are ahead of this machine's.
    """
    from redrive_tools.demo import run_demo

    sys.exit(run_demo(json_output=json_output))


# ---------------------------------------------------------------------------------------------
# redrive status, redrive cancel


def _redrive_queue(value: str | None) -> Any:
    """--redrive-queue, else REDRIVE_QUEUE (the functions' setting), as a QueueName or None."""
    raw = value or os.environ.get("REDRIVE_QUEUE", "").strip() or None
    return _queue(raw) if raw else None


def _read_logs(paths: tuple[str, ...]) -> list[dict[str, Any]]:
    from redrive.core.redrives import records_from_text

    records: list[dict[str, Any]] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            records.extend(records_from_text(handle.read()))
    # Cloud Logging answers newest first; lines with a time are put in time order, the others
    # keep the file's order (a log file is written in order).
    if records and all(isinstance(r.get("time"), str) for r in records):
        records.sort(key=lambda r: str(r["time"]))
    return records


@main.command(epilog=EXIT_CODES_HELP)
@click.option(
    "--log",
    "logs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A log to read the re-drives' lines from (repeatable): the functions' output (JSON "
    "lines), `redrive sweep --json` output, or `gcloud logging read --format=json` output.",
)
@click.option(
    "--redrive-queue",
    metavar="QUEUE",
    default=None,
    help="The redrive queue, whose waiting jobs are read (default: REDRIVE_QUEUE).",
)
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Finished re-drives older than this are left out (90s, 30m, 24h, 7d).",
)
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between two refreshes with --watch.",
)
@click.option("--json", "json_output", is_flag=True, help="One JSON object per re-drive.")
def status(
    *,
    logs: tuple[str, ...],
    redrive_queue: str | None,
    since: str,
    watch: bool,
    interval: float,
    json_output: bool,
) -> None:
    """Bulk re-drives in progress and recently finished, with their counts and ETA.

    Read from Cloud Tasks (the jobs still waiting in the redrive queue, by re-drive id; each
    re-run task's state now) and from the logs given with --log (the plan, outcome and SWEEP
    lines). Counts: selected, queued (jobs made), dispatched (re-run), succeeded (gone since),
    failed again, remaining (jobs still waiting, or tasks a direct sweep has not reached).
    """
    from redrive.core.config import ConfigError, parse_duration_s

    try:
        since_s = parse_duration_s(since, "--since")
    except ConfigError as err:
        _fail(str(err))
    queue = _redrive_queue(redrive_queue)
    if queue is None and not logs:
        _fail("nothing to read: give --log FILE, or --redrive-queue QUEUE (or REDRIVE_QUEUE)")
    console = _console(json_output)
    watcher = _Watch()
    rt = _runtime(_Records(echo=False), watcher)
    if not watch:
        sys.exit(
            _status_once(
                console,
                rt=rt,
                watch=watcher,
                logs=logs,
                queue=queue,
                since_s=since_s,
                json_output=json_output,
            )
        )
    sys.exit(
        _status_watch(
            console,
            rt=rt,
            watch=watcher,
            what=(logs, queue, since_s),
            json_output=json_output,
            interval=interval,
        )
    )


def _status_rows(
    rt: Any, logs: tuple[str, ...], queue: Any, since_s: float
) -> tuple[list[Any], Any]:
    """The re-drives to show (finished ones older than `since_s` left out) and the redrive
    queue's waiting jobs. Raises the runtime's errors (a call that failed, a queue not found)."""
    from datetime import timedelta

    from redrive_tools.bulk import statuses

    found, waiting = statuses(
        _read_logs(logs),
        tasks=rt.tasks,
        redrive_queue=queue,
        deadline_s=rt.settings.retry_deadline_s,
    )
    cutoff = (rt.clock() - timedelta(seconds=since_s)).isoformat().replace("+00:00", "Z")
    shown = [
        s
        for s in found
        if s.state.value not in ("finished", "cancelled") or not s.started or s.started >= cutoff
    ]
    return shown, waiting


def _status_failed(err: BaseException, queue: Any, watch: _Watch) -> NoReturn:
    from redrive.core import errors

    if isinstance(err, errors.NotFoundError):
        _fail(f"the redrive queue {queue} was not found: {err}")
    _call_failed("reading Cloud Tasks", err, watch)


def _status_once(
    console: Any,
    *,
    rt: Any,
    watch: _Watch,
    logs: tuple[str, ...],
    queue: Any,
    since_s: float,
    json_output: bool,
) -> int:
    from redrive.core import errors

    try:
        with _waiting(watch).spinner():
            shown, waiting = _status_rows(rt, logs, queue, since_s)
    except errors.RedriveError as err:
        _status_failed(err, queue, watch)
    if json_output:
        for item in shown:
            click.echo(json.dumps(item.fields()))
        return EXIT_OK
    console.print(_status_table(shown, waiting, None))
    return EXIT_OK


def _status_watch(
    console: Any,
    *,
    rt: Any,
    watch: _Watch,
    what: tuple[tuple[str, ...], Any, float],
    json_output: bool,
    interval: float,
) -> int:
    """`redrive status --watch`: the table again every `interval` seconds until Ctrl-C (exit 0).

    On a terminal (and without --json) one table, redrawn in place (rich Live), with a line
    under it: the refresh count and time, or what a refresh is waiting for. Otherwise a new
    table (or new JSON lines) per refresh, and a line on stderr after each. A first refresh that
    fails ends the command as without --watch; a later one is said, and tried again."""
    from redrive.core import errors

    logs, queue, since_s = what
    refreshes = 0
    if not (_live_ok(console) and not json_output):
        try:
            while True:
                try:
                    code = _status_once(
                        console,
                        rt=rt,
                        watch=watch,
                        logs=logs,
                        queue=queue,
                        since_s=since_s,
                        json_output=json_output,
                    )
                except SystemExit:
                    if refreshes == 0:
                        raise
                    code = EXIT_FAILED  # said on stderr already: try again next time
                refreshes += 1
                said = "" if code == EXIT_OK else " (it failed: see above)"
                click.echo(
                    f"-- refresh {refreshes} at {time.strftime('%H:%M:%S')}{said}; again in "
                    f"{interval:g} s; Ctrl-C to stop",
                    err=True,
                )
                sys.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            return EXIT_OK

    from rich.console import Group
    from rich.live import Live
    from rich.markup import escape
    from rich.text import Text

    try:  # the first refresh as without --watch: a spinner while it waits, a failure ends it
        with _waiting(watch).spinner():
            shown, waiting = _status_rows(rt, logs, queue, since_s)
    except errors.RedriveError as err:
        _status_failed(err, queue, watch)
    except KeyboardInterrupt:
        return EXIT_OK
    table = _status_table(shown, waiting, None)
    refreshes, note, at = 1, "", time.strftime("%H:%M:%S")

    def view() -> Any:
        """Read at every redraw: the table, then what the refresh waits for, or when it ran."""
        call = watch.current()
        slow = call is not None and (call.attempts > 1 or call.waited_s() >= 1.0)
        if call is not None and not call.done and slow:  # a quick answer is not worth a flicker
            line = f"waiting {call.waited_s():.0f} s: {_describe(call, watch.retry_deadline_s)}"
        else:
            line = f"[dim]refresh {refreshes} at {at}, every {interval:g} s; Ctrl-C to stop[/]"
        return Group(table, Text.from_markup(line + note))

    try:
        with Live(get_renderable=view, console=console, refresh_per_second=4):
            while True:
                time.sleep(interval)
                try:
                    shown, waiting = _status_rows(rt, logs, queue, since_s)
                except errors.RedriveError as err:
                    note = f"\n[yellow]refresh at {time.strftime('%H:%M:%S')} failed:[/] " + escape(
                        str(watch.gave_up() or err)
                    )
                    continue
                table, note, at = _status_table(shown, waiting, None), "", time.strftime("%H:%M:%S")
                refreshes += 1
    except KeyboardInterrupt:
        return EXIT_OK


def _status_table(shown: list[Any], waiting: Any, _now: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="redrive status", show_lines=False)
    table.add_column("re-drive", no_wrap=True)
    table.add_column("state", no_wrap=True)
    columns = (
        "selected",
        "queued",
        "dispatched",
        "succeeded",
        "failed again",
        "halted",
        "remaining",
    )
    for column in columns:
        table.add_column(column, justify="right", overflow="fold")
    table.add_column("ETA", justify="right", no_wrap=True)
    styles = {
        "finished": "green",
        "in progress": "cyan",
        "cancelled": "yellow",
        "incomplete": "yellow",
        "halted": "red",
    }
    for s in shown:
        signal = s.signal or {}
        started = _short(s.started) if s.started else "-"
        what = f"{s.redrive_id}\n[dim]{escape(str(signal.get('kind') or '?'))} {started}[/]"
        table.add_row(
            what,
            f"[{styles.get(s.state.value, 'white')}]{s.state.value}[/]",
            str(s.selected),
            str(s.queued),
            str(s.dispatched),
            str(s.succeeded),
            f"[red]{s.failed_again}[/]" if s.failed_again else "0",
            f"[red]{s.halted}[/]" if s.halted or s.halted_queues else "0",
            str(s.remaining),
            "-" if s.eta_s is None else _seconds(s.eta_s),
        )
    others = f"; {waiting.others} other job(s) waiting" if waiting and waiting.others else ""
    table.caption = f"{len(shown)} re-drive(s){others}"
    return table


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("redrive_id", metavar="ID")
@click.option(
    "--redrive-queue",
    metavar="QUEUE",
    default=None,
    help="The redrive queue holding the re-drive's jobs (default: REDRIVE_QUEUE).",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also append the CANCELLED line to this file (which `redrive status --log` reads).",
)
@click.option("--json", "json_output", is_flag=True, help="Print the CANCELLED line as JSON.")
def cancel(
    redrive_id: str, redrive_queue: str | None, log_path: str | None, json_output: bool
) -> None:
    """Cancel the bulk re-drive ID (rd-...): delete its jobs still waiting in the redrive queue.

    Only that re-drive's jobs (their body names it) are deleted, nobody else's; tasks already
    re-run stay re-run, and the tasks of the deleted jobs keep their own Cloud Tasks retries.
    Writes one CANCELLED line. A job dispatched meanwhile is refused by run_job.
    """
    from redrive.core import errors
    from redrive.core.redrives import cancel_record, is_redrive_id
    from redrive_tools.bulk import cancel as cancel_jobs

    if not is_redrive_id(redrive_id):
        _fail(
            f"not a re-drive id (rd- and 12 hex digits, as `redrive status` shows): {redrive_id!r}"
        )
    queue = _redrive_queue(redrive_queue)
    if queue is None:
        _fail("no redrive queue: give --redrive-queue QUEUE (or set REDRIVE_QUEUE)")
    watch = _Watch()
    rt = _runtime(_Records(echo=False), watch)
    try:
        with _waiting(watch).spinner():
            done = cancel_jobs(rt.tasks, queue, redrive_id, rt.settings.retry_deadline_s)
    except errors.NotFoundError as err:
        _fail(f"the redrive queue {queue} was not found: {err}")
    except errors.RedriveError as err:
        _call_failed(f"listing {queue}", err, watch)
    record = cancel_record(
        redrive_id,
        redrive_queue=str(queue),
        deleted=done.deleted,
        gone=done.gone,
        failed=done.failed,
        now=rt.clock(),
        reasons=done.reasons,
    )
    if log_path:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    if json_output:
        click.echo(json.dumps(record))
    else:
        from rich.markup import escape

        style = "bold red" if done.failed else "yellow"
        _console(False).print(f"[{style}]{escape(record['message'])}[/]")
    sys.exit(EXIT_FAILED if done.failed else EXIT_OK)
