"""`redrive demo`: a real local re-drive, start to finish.

Everything is real and local: the project's Cloud Tasks emulator (in this process, time-scaled),
an application service that answers 500 until it is "fixed", and handle_signal served by
functions-framework in its own process (stopped by its process group id), in direct mode with the
revision fix check and REDRIVE_SERVICE_MAP pointing the queue at a Cloud Run fake service whose
URL is the application. Signals are posted as Eventarc posts them (binary CloudEvents).

The story, one step at a time:
  1. tasks fail (the application has a bug);
  2. a dead-letter alert arrives → SKIPPED_FIX_NOT_DEPLOYED (no newer revision yet);
  3. the fix is deployed (new revision, the application answers 200) and a deploy notification
     arrives → the sweep re-drives the failed tasks (DISPATCHED) and they complete;
  4. a late duplicate of the alert arrives → NOT_FOUND (the tasks are done and gone).

Times shown are the emulator's: its clock runs TIME_SCALE (60) times faster than the wall clock,
so they are ahead of this machine's clock (the narrative and the outcome table say so). gRPC's own
log lines are silenced (GRPC_VERBOSITY=ERROR and GRPC_TRACE empty unless set, in this process and
in functions-framework's).

`run_demo` returns 0 when every step produced what it should, 1 otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from redrive_tools.devserver import FunctionServer, wait_for
from redrive_tools.quiet import GRPC_QUIET

PROJECT = "demo"
LOCATION = "local1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
QUEUE = f"{PARENT}/queues/orders"
CLAIMS_QUEUE = f"{PARENT}/queues/redrive-claims"
"""Where redrive claims each forced run (kept paused, as in production)."""
SERVICE = f"{PARENT}/services/orders-api"
TASKS = 3
TIME_SCALE = 60.0
"""Emulated time runs 60x: the queue's one-hour retry delay lasts a minute, longer than the demo."""
WAIT_S = 30.0
"""Hang guard for anything asynchronous; the demo itself takes a few seconds."""


class AppService:
    """The application behind the tasks: 500 until `fixed`, then 200. Counts answers per path."""

    def __init__(self) -> None:
        self.fixed = False
        self.answers: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 200 if app.fixed else 500
                with app._lock:
                    app.answers[(self.path, status)] += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def succeeded(self, path: str) -> int:
        with self._lock:
            return self.answers[(path, 200)]

    def start(self) -> AppService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _entry_point(workdir: Path) -> Path:
    """The repository's main.py when running from a checkout; else a one-function stand-in."""
    repo_main = Path(__file__).resolve().parents[2] / "main.py"
    if repo_main.is_file():
        return repo_main
    stand_in = workdir / "main.py"
    stand_in.write_text(
        "import functions_framework\n"
        "from redrive import entry\n\n\n"
        "@functions_framework.cloud_event\n"
        "def handle_signal(cloud_event):\n"
        "    entry.handle_signal(cloud_event)\n"
    )
    return stand_in


def _iso(when: Any) -> str:
    return str(when.isoformat().replace("+00:00", "Z"))


def post_signal(fn: FunctionServer, payload: dict[str, Any], message_id: str, at: str) -> int:
    """POST one Pub/Sub message the way Eventarc does: a binary-mode CloudEvent."""
    import httpx
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    data = {
        "subscription": f"projects/{PROJECT}/subscriptions/eventarc-{LOCATION}-redrive-sub-1",
        "message": {
            "data": base64.b64encode(json.dumps(payload).encode()).decode(),
            "messageId": message_id,
            "publishTime": at,
        },
    }
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/redrive-signals",
            "id": message_id,
            "time": at,
        },
        data,
    )
    headers, body = to_binary(event)
    return httpx.post(fn.url, headers=headers, content=body, timeout=WAIT_S).status_code


class Narrator:
    """rich narration (stderr when --json owns stdout) and the outcome records."""

    def __init__(self, json_output: bool) -> None:
        from rich.console import Console

        self.json_output = json_output
        self.console = Console(stderr=json_output, highlight=False)
        self.rows: list[tuple[str, dict[str, Any]]] = []
        self.ahead_s: float | None = None
        """How far the emulated clock was ahead of the wall clock at the end."""

    def step(self, number: int, text: str) -> None:
        self.console.print(f"\n[bold cyan]{number}.[/] [bold]{text}[/]")

    def say(self, text: str) -> None:
        from rich.padding import Padding
        from rich.text import Text

        self.console.print(Padding(Text.from_markup(text), (0, 0, 0, 3)))  # wrapped lines too

    def outcomes(self, step: str, records: list[dict[str, Any]]) -> None:
        from rich.markup import escape
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold", ratio=1)  # the whole reason, wrapped, never cut
        for record in records:
            self.rows.append((step, record))
            outcome = str(record.get("outcome"))
            subject = (record.get("task") or "").rsplit("/", 1)[-1] or "-"
            colour = "green" if outcome == "DISPATCHED" else "yellow"
            reason = escape(str(record.get("reason")))
            table.add_row("  ", f"[{colour}]{outcome}[/]", subject, f"[dim]{reason}[/]")
            if self.json_output:
                print(json.dumps(record), flush=True)
        self.console.print(table)

    def summary(self, ok: bool, elapsed_s: float) -> None:
        from rich.table import Table

        table = Table(title="outcome lines (one per decision)", title_justify="left")
        for column in ("step", "outcome", "task"):
            table.add_column(column)
        table.add_column("fix evidence (emulated clock, UTC)", overflow="fold")
        for step, record in self.rows:
            fix = record.get("fix") or {}
            since = str(fix.get("live_since") or "-")
            evidence = f"{fix.get('strategy')}, live since {since}" if fix else "-"
            table.add_row(
                step,
                str(record.get("outcome")),
                (record.get("task") or "-").rsplit("/", 1)[-1],
                evidence,
            )
        if self.ahead_s is not None:
            table.caption = (
                f"Times are the emulator's clock: it runs {TIME_SCALE:g}x, and was "
                f"{_duration(self.ahead_s)} ahead of this machine's clock at the end."
            )
            table.caption_justify = "left"
        self.console.print()
        self.console.print(table)
        verdict = "[bold green]demo OK[/]" if ok else "[bold red]demo FAILED[/]"
        self.console.print(f"{verdict} in {elapsed_s:.1f} s")


@contextmanager
def _stack(workdir: Path) -> Iterator[tuple[Any, AppService, FunctionServer, Any]]:
    from cloudtasks_emulator import Emulator, tasks_client

    with ExitStack() as stack:
        emu = Emulator(time_scale=TIME_SCALE).start()
        stack.callback(emu.stop)
        app = AppService().start()
        stack.callback(app.stop)
        client = tasks_client(emu.grpc_target, "v2beta3")
        # Closed before the emulator stops (callbacks run last first): a channel open while the
        # server goes away is what makes gRPC log "Got goaway".
        stack.callback(client.transport.close)
        client.create_queue(request={"parent": PARENT, "queue": {"name": CLAIMS_QUEUE}})
        client.pause_queue(request={"name": CLAIMS_QUEUE})
        # The buggy version: deployed a day (emulated) before anything fails.
        emu.cloudrun.deploy(SERVICE, uri=app.url, at=emu.clock.now() - timedelta(days=1))
        env = {
            **emu.env(),
            **{k: os.environ.get(k, v) for k, v in GRPC_QUIET.items()},
            "REDRIVE_ALLOWED_QUEUES": QUEUE,
            "REDRIVE_FIX_CHECK": "revision",
            "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [QUEUE]}),
            "REDRIVE_CLAIMS_QUEUE": CLAIMS_QUEUE,
            "REDRIVE_DIRECT_RATE_PER_S": "20",
            "REDRIVE_RETRY_DEADLINE_S": "5",
        }
        src = str(Path(__file__).resolve().parents[1])
        fn = FunctionServer(
            "handle_signal",
            "cloudevent",
            env,
            workdir / "handle_signal.log",
            source=_entry_point(workdir),
            pythonpath=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
            start_timeout_s=WAIT_S,
        )
        stack.callback(fn.stop)
        yield emu, app, fn, client


def run_demo(json_output: bool = False) -> int:
    """Run the story; 0 when every step produced the expected outcomes, else 1."""
    for key, value in GRPC_QUIET.items():
        os.environ.setdefault(key, value)  # read when gRPC starts, which is after this
    narrator = Narrator(json_output)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="redrive-demo-") as tmp:
        try:
            ok = _story(narrator, Path(tmp))
        except Exception as err:  # the demo must say what went wrong, not dump a trace
            narrator.console.print(f"[bold red]demo aborted:[/] {err}")
            return 1
    narrator.summary(ok, time.monotonic() - started)
    return 0 if ok else 1


def _story(n: Narrator, workdir: Path) -> bool:
    from rich.markup import escape

    n.console.print(
        f"[bold]redrive demo[/]: Cloud Tasks emulator (in process, time x{TIME_SCALE:g}), an "
        "application that fails until fixed, and handle_signal under functions-framework "
        "(direct mode, revision fix check)."
    )
    n.say(
        f"[dim]The emulator's clock runs {TIME_SCALE:g}x (an hour of retry delay lasts a minute), "
        "so the times below are emulated and run ahead of this machine's clock.[/]"
    )
    with _stack(workdir) as (emu, app, fn, client):
        ok = True
        n.say(f"emulator gRPC {emu.grpc_target} · app {app.url} · handle_signal {fn.url}")

        n.step(1, "Tasks fail: the application has a bug")
        client.create_queue(
            request={
                "parent": PARENT,
                "queue": {
                    "name": QUEUE,
                    # Generous retries, as the README advises, so failed work waits for the fix.
                    "retry_config": {
                        "max_attempts": 100,
                        "min_backoff": "3600s",
                        "max_backoff": "3600s",
                    },
                },
            }
        )
        names = []
        for i in range(1, TASKS + 1):
            name = f"{QUEUE}/tasks/order-{i}"
            client.create_task(
                request={
                    "parent": QUEUE,
                    "task": {
                        "name": name,
                        "http_request": {
                            "url": f"{app.url}/orders/{i}",
                            "http_method": "POST",
                            "body": json.dumps({"order": i}).encode(),
                        },
                    },
                }
            )
            names.append(name)

        def failed_once() -> bool:
            tasks = [client.get_task(request={"name": name}) for name in names]
            return all("response_status" in t.last_attempt for t in tasks)

        wait_for(failed_once, "the first attempts to fail")
        n.say(
            f"{TASKS} tasks in {QUEUE}: first attempt answered 500; next retry in an hour "
            "(emulated)"
        )

        n.step(2, "A dead-letter alert names them: is a fix deployed?")
        alert = {"tasks": names, "dispatchCount": 1}
        status = post_signal(fn, alert, "alert-1", _iso(emu.clock.now()))
        got = _records(fn, "alert-1")
        n.outcomes("alert", got)
        ok &= status == 200 and _all(got, "SKIPPED_FIX_NOT_DEPLOYED", TASKS)
        n.say("nothing run: the service's live revision predates the failures")

        n.step(3, "Deploy the fix, announce it: the sweep re-drives the failed tasks")
        app.fixed = True
        revision = emu.cloudrun.deploy(SERVICE)
        n.say(f"new revision {revision.rsplit('/', 1)[-1]} is live; the app now answers 200")
        deploy = {"deployed": {"service": SERVICE, "at": _iso(emu.clock.now())}}
        status = post_signal(fn, deploy, "deploy-1", _iso(emu.clock.now()))
        got = _records(fn, "deploy-1")
        n.outcomes("deploy", got)
        ok &= status == 200 and _all(got, "DISPATCHED", TASKS)
        sweep = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
        if sweep:
            n.say(f"[dim]{escape(str(sweep[-1]['message']))}[/]")

        def completed() -> bool:
            gone = 0
            for name in names:
                try:
                    client.get_task(request={"name": name})
                except Exception:
                    gone += 1
            return gone == TASKS

        wait_for(completed, "the re-driven tasks to complete")
        succeeded = sum(app.succeeded(f"/orders/{i}") for i in range(1, TASKS + 1))
        ok &= succeeded == TASKS
        runs = [r for r in emu.control.run_log() if r.task in names]
        ok &= len(runs) == TASKS
        n.say(
            f"the app answered 200 to {succeeded} re-driven task(s); Cloud Tasks deleted them; "
            f"RunTask was called {len(runs)} time(s)"
        )

        n.step(4, "A late duplicate of the alert arrives")
        status = post_signal(fn, alert, "alert-1-late", _iso(emu.clock.now()))
        got = _records(fn, "alert-1-late")
        n.outcomes("late alert", got)
        ok &= status == 200 and _all(got, "NOT_FOUND", TASKS)
        n.say("nothing to do: completed tasks are gone, so nothing runs twice")
        n.ahead_s = (emu.clock.now() - datetime.now(UTC)).total_seconds()
        return bool(ok)


def _duration(seconds: float) -> str:
    """12.3 → "12 s"; 185 → "3 min 5 s"."""
    whole = max(0, round(seconds))
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _records(fn: FunctionServer, message_id: str) -> list[dict[str, Any]]:
    return [
        x
        for x in fn.lines()
        if x.get("event") == "redrive.outcome"
        and (x.get("signal") or {}).get("message_id") == message_id
    ]


def _all(records: list[dict[str, Any]], outcome: str, count: int) -> bool:
    return len(records) == count and all(r.get("outcome") == outcome for r in records)
