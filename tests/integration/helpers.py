"""Real local servers for the integration tests: an HTTP target and functions-framework."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from redrive_tools import devserver
from redrive_tools.devserver import wait_for

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0
"""Upper bound for waiting on something asynchronous (a dispatch, a log line): a hang guard,
not a timing assertion — the tests assert on what happened, never on how fast."""


class Target:
    """The application behind the failing tasks: status per path, settable; records requests.

    A path whose status is "hang" keeps the request open until `release()` (an attempt in flight).
    """

    def __init__(self) -> None:
        self.statuses: dict[str, int | str] = {}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._release = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                target.requests.append((self.path, dict(self.headers), body))
                status = target.statuses.get(self.path.split("?")[0], 500)
                if status == "hang":
                    target._release.wait(WAIT_S)
                    status = 500
                self.send_response(int(status))
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST  # noqa: N815 - the same recording for every method a task may use

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def release(self) -> None:
        self._release.set()

    def start(self) -> Target:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


class FunctionServer(devserver.FunctionServer):
    """`functions-framework` serving one entry point of main.py, as Cloud Functions does."""

    def __init__(
        self,
        target: str,
        signature_type: str,
        env: dict[str, str],
        log_path: Path,
        *,
        source_dir: Path = ROOT,
        executable: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(
            target,
            signature_type,
            env,
            log_path,
            source=source_dir / "main.py",
            command=[executable] if executable else None,
            port=port,
            start_timeout_s=WAIT_S,
        )

    def outcomes(self, **match: Any) -> list[dict[str, Any]]:
        """Outcome records whose fields (dotted paths allowed) equal `match`."""
        return [
            line
            for line in self.lines()
            if line.get("event") == "redrive.outcome"
            and all(_get(line, k) == v for k, v in match.items())
        ]

    def summaries(self, message_id: str) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if line.get("event") == "redrive.signal"
            and (line.get("signal") or {}).get("message_id") == message_id
        ]


def _get(line: dict[str, Any], dotted: str) -> Any:
    value: Any = line
    for part in dotted.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@contextmanager
def function_server(*args: Any, **kwargs: Any) -> Iterator[FunctionServer]:
    server = FunctionServer(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# --- CloudEvents -------------------------------------------------------------------------------


def pubsub_data(
    payload: bytes, attributes: dict[str, str], message_id: str, publish_time: str
) -> dict[str, Any]:
    import base64

    data = base64.b64encode(payload).decode()
    return {
        "subscription": "projects/demo/subscriptions/eventarc-local-redrive-sub-1",
        "message": {
            "data": data,
            "attributes": attributes,
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
    }


def post_signal(
    server: FunctionServer,
    payload: bytes,
    message_id: str,
    publish_time: str,
    *,
    mode: str = "binary",
    attributes: dict[str, str] | None = None,
) -> httpx.Response:
    """POST one Pub/Sub message as Eventarc does (binary/structured CloudEvent) or as raw push."""
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

    data = pubsub_data(payload, attributes or {}, message_id, publish_time)
    if mode == "raw":
        # What a Pub/Sub push subscription sends; functions-framework converts it.
        return httpx.post(f"{server.url}/projects/demo/topics/signals", json=data, timeout=WAIT_S)
    event = CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/demo/topics/signals",
            "id": message_id,
            "time": publish_time,
        },
        data,
    )
    headers, body = to_binary(event) if mode == "binary" else to_structured(event)
    return httpx.post(server.url, headers=headers, content=body, timeout=WAIT_S)


# --- the emulated project ----------------------------------------------------------------------

PROJECT = "demo"
LOCATION = "local1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


class Stack:
    """The emulator plus the application target, with helpers to put tasks in known states."""

    def __init__(self, time_scale: float = 1.0, quotas: Any = None) -> None:
        from cloudtasks_emulator import Emulator, Quotas, tasks_client

        # Tests burst calls on purpose: quotas lifted unless a test asks for some.
        self.emu = Emulator(time_scale=time_scale, quotas=quotas or Quotas.lifted()).start()
        self.target = Target().start()
        self.client = tasks_client(self.emu.grpc_target, "v2beta3")

    def stop(self) -> None:
        self.target.stop()
        self.emu.stop()

    def claims(self, queue_id: str = "redrive-claims") -> str:
        """The claims queue (REDRIVE_CLAIMS_QUEUE), paused as production keeps it; made once."""
        name = f"{PARENT}/queues/{queue_id}"
        if self.get_queue(name) is None:
            self.queue(queue_id, paused=True)
        return name

    def get_queue(self, name: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return self.client.get_queue(request={"name": name})
        except gexc.NotFound:
            return None

    def queue(self, queue_id: str, min_backoff_s: float = 3600.0, paused: bool = False) -> str:
        """A queue whose failed tasks wait `min_backoff_s` (emulated) before their retry."""
        name = f"{PARENT}/queues/{queue_id}"
        self.client.create_queue(
            request={
                "parent": PARENT,
                "queue": {
                    "name": name,
                    "retry_config": {
                        "max_attempts": -1,
                        "min_backoff": f"{min_backoff_s}s",
                        "max_backoff": f"{max(min_backoff_s, 1.0)}s",
                    },
                },
            }
        )
        if paused:
            self.client.pause_queue(request={"name": name})
        return name

    def task(
        self,
        queue: str,
        task_id: str,
        path: str,
        *,
        host: str = "127.0.0.1",
        body: bytes = b"{}",
        headers: dict[str, str] | None = None,
        schedule_in_s: float | None = None,
    ) -> str:
        task: dict[str, Any] = {
            "name": f"{queue}/tasks/{task_id}",
            "http_request": {
                "url": self.target.url(path, host),
                "http_method": "POST",
                "headers": headers or {"Content-Type": "application/json"},
                "body": body,
            },
        }
        if schedule_in_s is not None:
            from datetime import timedelta

            task["schedule_time"] = self.emu.clock.now() + timedelta(seconds=schedule_in_s)
        self.client.create_task(request={"parent": queue, "task": task})
        return str(task["name"])

    def get(self, name: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return self.client.get_task(request={"name": name})
        except gexc.NotFound:
            return None

    def failed_task(self, queue: str, task_id: str, path: str, **kwargs: Any) -> str:
        """A task whose first attempt failed (the target answers 500 on `path`)."""
        self.target.statuses.setdefault(path, 500)
        name = self.task(queue, task_id, path, **kwargs)
        wait_for(
            lambda: (t := self.get(name)) is not None and "response_status" in t.last_attempt,
            f"first failed attempt of {task_id}",
        )
        return name

    def gone(self, name: str) -> bool:
        return self.get(name) is None


def now_rfc3339(offset_s: float = 0.0) -> str:
    from datetime import UTC, datetime, timedelta

    when = datetime.now(UTC) + timedelta(seconds=offset_s)
    return when.isoformat().replace("+00:00", "Z")


def dead_letter(task: str, **extra: Any) -> bytes:
    return json.dumps({"task": task, **extra}).encode()
