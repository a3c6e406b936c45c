"""A real local HTTP target for dispatch tests: records every request, answers per script."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float  # real time.time()
    raw_headers: tuple[tuple[str, str], ...] = ()  # as sent: names, order and repeats kept


@dataclass
class Reply:
    status: int = 200
    hold: threading.Event | None = None  # answer only once this is set
    close: bool = False  # drop the connection without answering
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Location, Retry-After


@dataclass
class _Script:
    replies: dict[str, deque[Reply]] = field(default_factory=dict)
    default: Reply = field(default_factory=Reply)


class TargetServer:
    """ThreadingHTTPServer on 127.0.0.1:0 (HTTP/1.1 keep-alive). `script(path, 500, 500, 200)`
    queues replies for a path; anything unscripted gets the default (200)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.requests: list[Recorded] = []
        self._script = _Script()
        self._inflight = 0
        self.max_inflight = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                rec = Recorded(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.time(),
                    tuple(self.headers.items()),
                )
                reply = outer._arrive(rec)
                try:
                    if reply.hold is not None:
                        reply.hold.wait(30)
                    if reply.close:
                        self.close_connection = True
                        return
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    outer._leave()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> TargetServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def script(self, path: str, *replies: int | Reply) -> None:
        with self._lock:
            q = self._script.replies.setdefault(path, deque())
            q.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def set_default(self, reply: int | Reply) -> None:
        with self._lock:
            self._script.default = reply if isinstance(reply, Reply) else Reply(reply)

    def _arrive(self, rec: Recorded) -> Reply:
        with self._lock:
            self.requests.append(rec)
            self._inflight += 1
            self.max_inflight = max(self.max_inflight, self._inflight)
            self._lock.notify_all()
            path = rec.path.split("?", 1)[0]
            q = self._script.replies.get(path)
            return q.popleft() if q else self._script.default

    def _leave(self) -> None:
        with self._lock:
            self._inflight -= 1
            self._lock.notify_all()

    def received(self, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path.split("?")[0] == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout_s: float = 10.0
    ) -> list[Recorded]:
        """Block until `count` requests (for `path`) arrived, or the timeout; return them."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                got = [r for r in self.requests if path is None or r.path.split("?")[0] == path]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self._lock.wait(left)

    def wait_inflight(self, count: int, timeout_s: float = 10.0) -> int:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._inflight < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            return self._inflight
