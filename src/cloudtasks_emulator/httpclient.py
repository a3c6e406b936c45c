"""A small keep-alive HTTP/1.1 client on asyncio streams, for dispatching tasks.

Why not httpx: its async connection pool tops out below the 500 dispatches/s per queue the real
service allows once it shares two cores with the rest of the emulator. Dispatch only needs the
status code and two headers (Location for redirects, Retry-After for 429/503), so this client
sends one request per connection at a time, reads and discards the body (Content-Length, chunked
or until close) and keeps idle connections per host for reuse.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

_NO_BODY_STATUS = (204, 304)
_MAX_IDLE_PER_HOST = 256
_HEADER_LIMIT = 256 * 1024


class HttpError(Exception):
    """The request could not be sent or the answer was not valid HTTP/1.1."""


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None = None
    retry_after: str | None = None


class HttpClient:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[Conn]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """Send one request; return the response status and the headers dispatch needs."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"unsupported URL {url!r}")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        host_header = host if default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if default_port else f"[{host}]:{port}"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}"]
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n"):
                raise HttpError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
        key = (scheme, host, port)

        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, payload, method)
            except (ConnectionError, asyncio.IncompleteReadError, _StaleConnectionError):
                pass  # the server closed an idle connection: one fresh try
        conn = await self._open(scheme, host, port)
        try:
            return await self._exchange(key, conn, payload, method)
        except _StaleConnectionError as err:
            raise HttpError("connection closed before any answer") from err

    def _take_idle(self, key: tuple[str, str, int]) -> Conn | None:
        pool = self._idle.get(key)
        while pool:
            reader, writer = pool.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def _open(self, scheme: str, host: str, port: int) -> Conn:
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        return await asyncio.open_connection(host, port, ssl=context, limit=_HEADER_LIMIT)

    async def _exchange(
        self, key: tuple[str, str, int], conn: Conn, payload: bytes, method: str
    ) -> Answer:
        reader, writer = conn
        done = False
        try:
            writer.write(payload)
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as err:
                if not err.partial:
                    raise _StaleConnectionError from None
                raise
            status, keep_alive, length, chunked, answer = _parse_head(head)
            while 100 <= status < 200:  # interim answers precede the real one
                head = await reader.readuntil(b"\r\n\r\n")
                status, keep_alive, length, chunked, answer = _parse_head(head)
            if method == "HEAD" or status in _NO_BODY_STATUS:
                pass
            elif chunked:
                await _skip_chunked(reader)
            elif length is not None:
                await reader.readexactly(length)
            else:
                await reader.read()  # body ends when the server closes
                keep_alive = False
            done = True
            if keep_alive:
                pool = self._idle.setdefault(key, [])
                if len(pool) < _MAX_IDLE_PER_HOST:
                    pool.append(conn)
                    return answer
            writer.close()
            return answer
        finally:
            if not done:
                writer.close()

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for _, writer in pool:
                writer.close()
        self._idle.clear()


class _StaleConnectionError(Exception):
    """A reused connection closed before answering."""


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool, Answer]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise HttpError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    try:
        status = int(status_line[1])
    except ValueError:
        raise HttpError(f"bad status line {lines[0][:80]!r}") from None
    keep_alive = status_line[0] == "HTTP/1.1"
    length: int | None = None
    chunked = False
    location: str | None = None
    retry_after: str | None = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            try:
                length = int(value)
            except ValueError:
                raise HttpError("bad Content-Length") from None
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "location":
            location = value
        elif name == "retry-after":
            retry_after = value
        elif name == "connection":
            token = value.lower()
            if "close" in token:
                keep_alive = False
            elif "keep-alive" in token:
                keep_alive = True
    return status, keep_alive, length, chunked, Answer(status, location, retry_after)


async def _skip_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError("bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return
        await reader.readexactly(size + 2)
