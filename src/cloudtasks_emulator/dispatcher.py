"""Per-queue dispatch: one asyncio event loop thread drives every queue and every HTTP attempt.

Each queue has a worker coroutine that sleeps until the earliest of: its next schedule time, the
next token of its rate bucket, or a wake-up (new task, resume, completed attempt, config change).
Attempts are coroutines on a shared keep-alive HTTP/1.1 client, so hundreds of dispatches per
second cost no threads. State changes happen under `Store.lock`, never across an await.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import heapq
import threading
import time
from urllib.parse import urljoin

from cloudtasks_emulator import model
from cloudtasks_emulator.httpclient import Answer, HttpClient, HttpError
from cloudtasks_emulator.model import AttemptResult, AttemptSpec, Store

_GONE = -1.0  # the queue was deleted: its worker ends
_BATCH = 256  # dispatches started per pass before yielding to the loop
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}


class Dispatcher:
    """Runs the dispatch loop in its own thread; `notify` and `launch` are thread-safe."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = store.clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="cloud-tasks-dispatch", daemon=True)
        self._ready = threading.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._attempts: set[asyncio.Task[None]] = set()
        self._client: HttpClient | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        stopping = self._stopping
        if stopping is not None:
            self._loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._client = HttpClient()
        self._ready.set()
        await self._stopping.wait()
        pending = list(self._workers.values()) + list(self._attempts)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._client.aclose()

    # -- thread-safe entry points ----------------------------------------------------------
    def notify(self, queue: str) -> None:
        """Something changed in `queue` (task added, resumed, updated, deleted): look again."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._wake, queue)

    def launch(self, spec: AttemptSpec) -> None:
        """Send an attempt already recorded in the store (RunTask)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._spawn, spec)

    # -- loop side -------------------------------------------------------------------------
    def _wake(self, queue: str) -> None:
        event = self._events.get(queue)
        if event is None:
            event = asyncio.Event()
            self._events[queue] = event
            self._workers[queue] = self._loop.create_task(self._worker(queue, event))
        event.set()

    def _spawn(self, spec: AttemptSpec) -> None:
        task = self._loop.create_task(self._attempt(spec))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    async def _worker(self, queue: str, event: asyncio.Event) -> None:
        try:
            while True:
                event.clear()
                with self.store.lock:
                    wait_s, specs = self._pump(queue)
                if wait_s == _GONE:
                    return
                for spec in specs:
                    self._spawn(spec)
                if wait_s is not None and wait_s <= 0:
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=wait_s)
        finally:
            if self._events.get(queue) is event:
                del self._events[queue]
                del self._workers[queue]

    def _pump(self, queue: str) -> tuple[float | None, list[AttemptSpec]]:
        """Start every attempt that is due and allowed; return (real seconds to sleep, attempts).

        A None sleep means "until woken". Runs under the store lock.
        """
        store = self.store
        qs = store.queues.get(queue)
        if qs is None:
            return _GONE, []
        if qs.pb.state != model.RUNNING:
            return None, []
        now = self.clock.now_s()
        limits = qs.pb.rate_limits
        rate = limits.max_dispatches_per_second
        burst = float(limits.max_burst_size)
        qs.tokens = min(burst, qs.tokens + max(0.0, now - qs.token_s) * rate)
        qs.token_s = now
        specs: list[AttemptSpec] = []
        heap = qs.heap
        while heap:
            schedule_s, _seq, gen, name = heap[0]
            ts = qs.tasks.get(name)
            if ts is None or ts.gen != gen:
                heapq.heappop(heap)
                continue
            if schedule_s > now:
                return self.clock.until_s(schedule_s), specs
            if store.expired(qs, ts, now):
                heapq.heappop(heap)
                continue
            if qs.inflight >= limits.max_concurrent_dispatches:
                return None, specs  # a finishing attempt wakes the worker
            if qs.tokens < 1.0:
                return self.clock.real_seconds((1.0 - qs.tokens) / rate), specs
            if len(specs) >= _BATCH:
                return 0.0, specs
            heapq.heappop(heap)
            qs.tokens -= 1.0
            specs.append(store.start_attempt(qs, ts, forced=False))
        return None, specs

    async def _attempt(self, spec: AttemptSpec) -> None:
        result = await self._send(spec)
        with self.store.lock:
            self.store.finish_attempt(spec, result)
        self._wake(spec.queue)

    async def _send(self, spec: AttemptSpec) -> AttemptResult:
        client = self._client
        assert client is not None
        headers = {k: v for k, v in spec.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with asyncio.timeout(self.clock.real_seconds(spec.deadline_s)):
                answer = await self._follow(client, spec, headers)
        except TimeoutError:
            return AttemptResult(
                None, model.DEADLINE_EXCEEDED, "Dispatch deadline exceeded", "DEADLINE_EXCEEDED"
            )
        except (
            HttpError,
            OSError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as err:
            # Observed on the real service: an unreachable target is reported as UNKNOWN.
            text = f"Failed to dispatch to {spec.url}: {type(err).__name__}"
            return AttemptResult(None, model.UNKNOWN, text, "UNKNOWN")
        status = answer.status
        # 304 Not Modified is not retried by the real service: the attempt counts as done.
        code = model.OK if status == 304 else model.rpc_code_for_http(status)
        retry_after = retry_after_s(answer.retry_after, self.clock.time_scale)
        return AttemptResult(
            status, code, _status_message(code, status), f"HTTP {status}", retry_after
        )

    async def _follow(
        self, client: HttpClient, spec: AttemptSpec, headers: dict[str, str]
    ) -> Answer:
        """One attempt: the request, then (HTTP targets) each redirect's Location, all within
        the attempt's deadline. "The Location header response from a redirect response [300 -
        399] may be followed. The redirect is not counted as a separate attempt." (HttpRequest.url)
        """
        method, url, body = spec.method, spec.url, spec.body
        answer = await client.request(method, url, headers, body)
        hops = 0
        while (
            spec.follow_redirects
            and 300 <= answer.status < 400
            and answer.status != 304
            and answer.location
            and hops < model.MAX_REDIRECTS
        ):
            hops += 1
            url = urljoin(url, answer.location)
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                # What common HTTP clients do (RFC 9110 15.4): the redirected request is a GET.
                method, body = "GET", b""
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            answer = await client.request(method, url, headers, body)
        return answer


def retry_after_s(value: str | None, time_scale: float) -> float | None:
    """Retry-After as emulated seconds: delay-seconds, or an HTTP date (a real-clock time the
    target gave, so the wait it asks for is scaled into emulated time)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, (when.timestamp() - time.time()) * time_scale)


def _status_message(code: int, status: int) -> str:
    return "OK" if code == model.OK else f"HTTP status code {status}"
