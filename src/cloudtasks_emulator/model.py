"""Emulator state: queues and tasks kept version-neutrally, plus the rules that change them.

Queues and tasks are stored as v2beta3 protobuf messages (the superset of v2) and converted to
either version on the way out. The sub-messages both versions share (HttpRequest, Attempt,
RetryConfig, RateLimits, ...) have identical wire formats, so conversion copies them as bytes.

Everything here runs under `Store.lock`; the service (gRPC/REST threads) and the dispatcher (its
event-loop thread) both mutate state only through the methods of `Store`.
"""

from __future__ import annotations

import base64
import heapq
import math
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf.message import Message

from cloudtasks_emulator.clock import Clock
from cloudtasks_emulator.oidc import DEFAULT_SCOPE, TokenSigner

B3Task: Any = tasks_v2beta3.Task.pb()
B3Queue: Any = tasks_v2beta3.Queue.pb()
V2Task: Any = tasks_v2.Task.pb()
V2Queue: Any = tasks_v2.Queue.pb()
B3RetryConfig: Any = tasks_v2beta3.RetryConfig.pb()

RUNNING = int(tasks_v2beta3.Queue.State.RUNNING)
PAUSED = int(tasks_v2beta3.Queue.State.PAUSED)
PULL = int(tasks_v2beta3.Queue.Type.PULL)
PUSH = int(tasks_v2beta3.Queue.Type.PUSH)
BASIC = int(tasks_v2beta3.Task.View.BASIC)
FULL = int(tasks_v2beta3.Task.View.FULL)

# Defaults the real service fills in at queue creation (as `gcloud tasks queues describe` shows).
DEFAULT_RATE_PER_S = 500.0
MAX_RATE_PER_S = 500.0
DEFAULT_MAX_CONCURRENT = 1000
MAX_MAX_CONCURRENT = 5000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
DEFAULT_TASK_TTL_S = 31 * 86400.0
DEFAULT_DEADLINE_S = 600.0
MIN_DEADLINE_S = 15.0
MAX_DEADLINE_S = 1800.0
MAX_APP_ENGINE_DEADLINE_S = 86400.0
MAX_SCHEDULE_AHEAD_S = 30 * 86400.0
QUEUE_REUSE_DELAY_S = 7 * 86400.0  # "Queue re-creation: 7 days" (Quotas and limits page)
MIN_TOMBSTONE_TTL_S, MAX_TOMBSTONE_TTL_S = 3600.0, 9 * 86400.0
MIN_TASK_TTL_S, MAX_TASK_TTL_S = 10 * 86400.0, 10 * 365 * 86400.0
MAX_REDIRECTS = 10

HTTP_USER_AGENT = "Google-Cloud-Tasks"
APP_ENGINE_USER_AGENT = "AppEngine-Google; (+http://code.google.com/appengine)"
# Headers a task cannot set (HttpRequest.headers, AppEngineHttpRequest.headers): they are
# dropped when the task is created and never sent as the task gave them.
_RESERVED_PREFIXES = ("x-cloudtasks-", "x-appengine-", "x-google-")
_COMPUTED = frozenset({"host", "content-length"})

HTTP_METHODS = {1: "POST", 2: "GET", 3: "HEAD", 4: "PUT", 5: "DELETE", 6: "PATCH", 7: "OPTIONS"}
BODY_METHODS = {"POST", "PUT", "PATCH"}

# google.rpc.Code numbers
OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND = 0, 1, 2, 3, 4, 5
ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION = 6, 7, 8, 9
ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 10, 11, 12, 13, 14
UNAUTHENTICATED = 16

_HTTP_TO_RPC = {
    400: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    409: ABORTED,
    412: FAILED_PRECONDITION,
    416: OUT_OF_RANGE,
    429: RESOURCE_EXHAUSTED,
    499: CANCELLED,
    501: UNIMPLEMENTED,
    503: UNAVAILABLE,
    504: DEADLINE_EXCEEDED,
}


def rpc_code_for_http(status: int) -> int:
    """google.rpc code for an HTTP answer, with the canonical HTTP↔RPC mapping."""
    if 200 <= status < 300:
        return OK
    if status in _HTTP_TO_RPC:
        return _HTTP_TO_RPC[status]
    if 400 <= status < 500:
        return FAILED_PRECONDITION
    if 500 <= status < 600:
        return INTERNAL
    return UNKNOWN


# -- time and durations ---------------------------------------------------------------------
def set_ts(ts: Any, epoch_s: float) -> None:
    seconds = math.floor(epoch_s)
    ts.seconds = seconds
    ts.nanos = min(999_999_999, int(round((epoch_s - seconds) * 1e9, -3)))  # microseconds


def ts_s(ts: Any) -> float:
    return float(ts.seconds) + float(ts.nanos) / 1e9


def dur_s(d: Any) -> float:
    return float(d.seconds) + float(d.nanos) / 1e9


def set_dur(d: Any, seconds: float) -> None:
    whole = math.floor(seconds)
    d.seconds = whole
    d.nanos = round((seconds - whole) * 1e9)


def truncate_dur(d: Any, unit_nanos: int) -> None:
    """Drop what is finer than `unit_nanos` (the API truncates backoffs to whole seconds and
    dispatch deadlines to milliseconds)."""
    if unit_nanos >= 1_000_000_000:
        d.nanos = 0
    else:
        d.nanos = d.nanos - d.nanos % unit_nanos


def clean_headers(headers: Any, app_engine: bool, body: bytes) -> None:
    """Apply the API's header rules to a task's stored headers, as the real service stores them:
    reserved and computed headers are dropped, User-Agent is set (HTTP) or appended to (App
    Engine), and an App Engine task with a body gets Content-Type application/octet-stream
    unless it has one and the Content-Length Cloud Tasks computes. Header names keep their case.
    """
    agent: str | None = None
    has_type = False
    for name in list(headers):
        lower = name.lower()
        if lower.startswith(_RESERVED_PREFIXES) or lower in _COMPUTED:
            del headers[name]
        elif lower == "user-agent":
            agent = headers[name]
            del headers[name]
        elif lower == "content-type":
            has_type = True
    if app_engine:
        headers["User-Agent"] = (
            f"{agent} {APP_ENGINE_USER_AGENT}" if agent else APP_ENGINE_USER_AGENT
        )
        if body:
            headers["Content-Length"] = str(len(body))
            if not has_type:
                headers["Content-Type"] = "application/octet-stream"
    else:
        headers["User-Agent"] = HTTP_USER_AGENT


# -- version conversion ---------------------------------------------------------------------
def copy_fields(src: Message, dst: Message, skip: frozenset[str] = frozenset()) -> None:
    """Copy same-named fields; message fields go through bytes (the two versions share wire
    formats for every nested message, but not the top-level field numbers)."""
    dst_fields = dst.DESCRIPTOR.fields_by_name
    for fd, value in src.ListFields():
        if fd.name in skip or fd.name not in dst_fields:
            continue
        if fd.message_type is not None:
            getattr(dst, fd.name).ParseFromString(value.SerializeToString())
        else:
            setattr(dst, fd.name, value)


_QUEUE_ONLY_B3 = frozenset({"app_engine_http_queue", "stats", "task_ttl", "tombstone_ttl", "type_"})


def queue_from_api(api: str, queue: Message) -> Any:
    """Request Queue (pb of either version) → internal v2beta3 pb."""
    if api == "v2beta3":
        out = B3Queue()
        out.CopyFrom(queue)
        return out
    out = B3Queue()
    copy_fields(queue, out, frozenset({"app_engine_routing_override"}))
    if queue.HasField("app_engine_routing_override"):  # type: ignore[attr-defined]
        out.app_engine_http_queue.app_engine_routing_override.ParseFromString(
            queue.app_engine_routing_override.SerializeToString()  # type: ignore[attr-defined]
        )
    return out


def queue_to_api(api: str, queue: Any) -> Any:
    if api == "v2beta3":
        out = B3Queue()
        out.CopyFrom(queue)
        return out
    out = V2Queue()
    copy_fields(queue, out, _QUEUE_ONLY_B3)
    if queue.app_engine_http_queue.HasField("app_engine_routing_override"):
        out.app_engine_routing_override.ParseFromString(
            queue.app_engine_http_queue.app_engine_routing_override.SerializeToString()
        )
    return out


def task_from_api(api: str, task: Message) -> Any:
    out = B3Task()
    if api == "v2beta3":
        out.CopyFrom(task)
    else:
        copy_fields(task, out)
    return out


_TASK_ONLY_B3 = frozenset({"pull_message"})


def task_to_api(api: str, task: Any, view: int, out: Any = None) -> Any:
    """Internal task → response message of `api`, with `view` applied (BASIC drops bodies).

    `out`, when given, is an empty Task of `api` to fill (e.g. a new element of a list response).
    """
    if api == "v2beta3":
        if out is None:
            out = B3Task()
        out.CopyFrom(task)
    else:
        if out is None:
            out = V2Task()
        copy_fields(task, out, _TASK_ONLY_B3)
    if view != FULL:
        view = BASIC
        if out.HasField("http_request"):
            out.http_request.ClearField("body")
        if out.HasField("app_engine_http_request"):
            out.app_engine_http_request.ClearField("body")
        if api == "v2beta3" and out.HasField("pull_message"):
            out.pull_message.ClearField("payload")
    out.view = view
    return out


# -- retry schedule -------------------------------------------------------------------------
def burst_for_rate(rate_per_s: float) -> int:
    """max_burst_size is output only, picked by the service from the rate by a rule it does not
    document; the real default queue (500/s) reports 100. The emulator uses one fifth of a
    second's worth, at least 1, for every rate (listed as a difference in docs/emulator.md)."""
    return max(1, min(500, math.ceil(rate_per_s / 5)))


def backoff_s(retry: Any, failures: int) -> float:
    """Delay before the next attempt after `failures` failed attempts (≥ 1): `min_backoff`
    doubled `max_doublings` times, then growing linearly by the last doubled interval,
    capped at `max_backoff` (10 s/300 s/3 → 10, 20, 40, 80, 160, 240, 300, 300, ...)."""
    min_b = dur_s(retry.min_backoff)
    max_b = dur_s(retry.max_backoff)
    doublings = max(0, retry.max_doublings)
    k = max(1, failures)
    if k - 1 <= doublings:
        interval = min_b * 2.0 ** min(k - 1, 1023)
    else:
        interval = min_b * 2.0 ** min(doublings, 1023) * (k - doublings)
    return min(interval, max_b)


def retries_exhausted(retry: Any, attempts: int, age_s: float) -> bool:
    """Stop rule: both max_attempts and max_retry_duration satisfied; an unlimited one (-1 / 0)
    imposes nothing, and both unlimited never stop."""
    max_attempts = retry.max_attempts
    max_age_s = dur_s(retry.max_retry_duration)
    if max_attempts == -1 and max_age_s <= 0:
        return False
    attempts_done = max_attempts == -1 or attempts >= max_attempts
    age_done = max_age_s <= 0 or age_s >= max_age_s
    return attempts_done and age_done


def fill_queue_defaults(queue: Any, dedup_window_s: float) -> None:
    rl = queue.rate_limits
    if rl.max_dispatches_per_second <= 0:
        rl.max_dispatches_per_second = DEFAULT_RATE_PER_S
    if rl.max_concurrent_dispatches <= 0:
        rl.max_concurrent_dispatches = DEFAULT_MAX_CONCURRENT
    rl.max_burst_size = burst_for_rate(rl.max_dispatches_per_second)
    fill_retry_defaults(queue.retry_config)
    if not queue.HasField("task_ttl"):
        set_dur(queue.task_ttl, DEFAULT_TASK_TTL_S)
    if not queue.HasField("tombstone_ttl"):
        set_dur(queue.tombstone_ttl, dedup_window_s)
    if queue.type_ == 0:
        queue.type_ = PUSH


def fill_retry_defaults(rc: Any) -> None:
    if rc.max_attempts == 0:
        rc.max_attempts = DEFAULT_MAX_ATTEMPTS
    if not rc.HasField("min_backoff"):
        set_dur(rc.min_backoff, DEFAULT_MIN_BACKOFF_S)
    if not rc.HasField("max_backoff"):
        set_dur(rc.max_backoff, DEFAULT_MAX_BACKOFF_S)
    if rc.max_doublings == 0:
        rc.max_doublings = DEFAULT_MAX_DOUBLINGS


# -- state ----------------------------------------------------------------------------------
@dataclass(eq=False)
class TaskState:
    pb: Any  # v2beta3 Task, full (body included)
    seq: int  # creation order: the stable listing order and the page-token key
    schedule_s: float
    gen: int = 0  # bumped whenever the task leaves or re-enters the schedule heap
    inflight: int = 0
    queue_inflight: bool = False  # the queue's own (non-forced) dispatch is outstanding
    latest_attempt: int = 0
    exec_count: int = 0  # answers below 500 (the X-CloudTasks-TaskExecutionCount rule)
    app_engine_exec_count: int = 0  # answered attempts except 503 "instance unavailable"
    first_dispatch_s: float | None = None
    created_s: float = 0.0
    previous_status: int | None = None  # HTTP code of the previous attempt, if it had one
    previous_reason: str | None = None


@dataclass(eq=False)
class QueueState:
    pb: Any  # v2beta3 Queue with defaults filled
    tasks: dict[str, TaskState] = field(default_factory=dict)
    heap: list[tuple[float, int, int, str]] = field(default_factory=list)
    inflight: int = 0
    tokens: float = 0.0
    token_s: float = 0.0
    executed: deque[float] = field(default_factory=deque)

    @property
    def name(self) -> str:
        return str(self.pb.name)

    def push(self, ts: TaskState) -> None:
        ts.gen += 1
        heapq.heappush(self.heap, (ts.schedule_s, ts.seq, ts.gen, str(ts.pb.name)))


@dataclass(frozen=True)
class AttemptSpec:
    """One HTTP dispatch, fully built under the lock so the event loop only does I/O."""

    queue: str
    task: str
    attempt_id: int
    forced: bool
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline_s: float  # emulated seconds
    started_s: float = 0.0  # emulated time the attempt started (the RunTask call, if forced)
    follow_redirects: bool = False  # HTTP targets may follow a Location; App Engine never


@dataclass(frozen=True)
class AttemptResult:
    http_status: int | None  # None: no HTTP answer (connection error, deadline)
    code: int  # google.rpc code
    message: str
    reason: str  # for X-AppEngine-TaskRetryReason on the next attempt
    retry_after_s: float | None = None  # the target's Retry-After, in seconds from its answer


class Store:
    """All queues, tasks and de-duplication tombstones, behind one lock."""

    def __init__(
        self,
        clock: Clock,
        dedup_window_s: float,
        app_engine_host: str | None,
        *,
        signer: TokenSigner | None = None,
        queue_reuse_delay_s: float = QUEUE_REUSE_DELAY_S,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.dedup_window_s = dedup_window_s
        self.app_engine_host = app_engine_host.rstrip("/") if app_engine_host else None
        self.signer = signer or TokenSigner()
        self.queue_reuse_delay_s = queue_reuse_delay_s
        self.queues: dict[str, QueueState] = {}
        self.queue_tombstones: dict[str, float] = {}  # deleted queue name → emulated expiry
        self.tombstones: dict[str, float] = {}  # task name → emulated expiry
        self._tomb_heap: list[tuple[float, str]] = []
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- de-duplication --------------------------------------------------------------------
    def tombstone(self, qs: QueueState, name: str) -> None:
        window = dur_s(qs.pb.tombstone_ttl) if qs.pb.HasField("tombstone_ttl") else None
        expiry = self.clock.now_s() + (self.dedup_window_s if window is None else window)
        self.tombstones[name] = expiry
        heapq.heappush(self._tomb_heap, (expiry, name))

    def recently_used(self, name: str) -> bool:
        now = self.clock.now_s()
        while self._tomb_heap and self._tomb_heap[0][0] <= now:
            expiry, old = heapq.heappop(self._tomb_heap)
            if self.tombstones.get(old) == expiry:
                del self.tombstones[old]
        until = self.tombstones.get(name)
        return until is not None and until > now

    def queue_deleted(self, name: str) -> None:
        self.queue_tombstones[name] = self.clock.now_s() + self.queue_reuse_delay_s

    def queue_recently_deleted(self, name: str) -> bool:
        until = self.queue_tombstones.get(name)
        if until is None:
            return False
        if until <= self.clock.now_s():
            del self.queue_tombstones[name]
            return False
        return True

    def expired(self, qs: QueueState, ts: TaskState, now_s: float) -> bool:
        """A task older than its queue's task_ttl is deleted by the service (looked at lazily:
        whenever the task is read, listed or due)."""
        if self.past_ttl(qs, ts, now_s):
            self.remove_task(qs, ts)
            return True
        return False

    @staticmethod
    def past_ttl(qs: QueueState, ts: TaskState, now_s: float) -> bool:
        ttl = dur_s(qs.pb.task_ttl)
        return ttl > 0 and now_s - ts.created_s >= ttl

    def remove_task(self, qs: QueueState, ts: TaskState) -> None:
        name = str(ts.pb.name)
        if qs.tasks.pop(name, None) is not None:
            ts.gen += 1  # stale heap entries are skipped
            self.tombstone(qs, name)

    # -- dispatch bookkeeping --------------------------------------------------------------
    def effective_retry(self, qs: QueueState, ts: TaskState) -> Any:
        if ts.pb.HasField("retry_config"):
            rc = B3RetryConfig()
            rc.CopyFrom(qs.pb.retry_config)
            rc.MergeFrom(ts.pb.retry_config)
            return rc
        return qs.pb.retry_config

    def start_attempt(self, qs: QueueState, ts: TaskState, *, forced: bool) -> AttemptSpec:
        """Record a dispatch (counters, attempts) and build the request to send."""
        now = self.clock.now_s()
        pb = ts.pb
        retry_count = pb.dispatch_count
        pb.dispatch_count += 1
        if ts.first_dispatch_s is None:
            ts.first_dispatch_s = now
            set_ts(pb.first_attempt.dispatch_time, now)
        pb.last_attempt.Clear()
        set_ts(pb.last_attempt.schedule_time, ts.schedule_s)
        set_ts(pb.last_attempt.dispatch_time, now)
        ts.latest_attempt += 1
        ts.inflight += 1
        qs.inflight += 1
        if not forced:
            ts.queue_inflight = True
        ts.gen += 1  # out of the heap until the outcome reschedules it
        method, url, headers, body, deadline = self._build_request(qs, ts, retry_count)
        return AttemptSpec(
            started_s=now,
            follow_redirects=not pb.HasField("app_engine_http_request"),
            queue=qs.name,
            task=str(pb.name),
            attempt_id=ts.latest_attempt,
            forced=forced,
            method=method,
            url=url,
            headers=headers,
            body=body,
            deadline_s=deadline,
        )

    def finish_attempt(self, spec: AttemptSpec, result: AttemptResult) -> None:
        """Apply an attempt's outcome: 2xx deletes; failure reschedules by the backoff or, after
        the last allowed attempt, deletes."""
        now = self.clock.now_s()
        qs = self.queues.get(spec.queue)
        if qs is None:
            return
        qs.inflight = max(0, qs.inflight - 1)
        qs.executed.append(now)
        ts = qs.tasks.get(spec.task)
        if ts is None:
            return
        ts.inflight = max(0, ts.inflight - 1)
        if not spec.forced:
            ts.queue_inflight = False
        pb = ts.pb
        if result.http_status is not None:
            pb.response_count += 1
            if result.http_status < 500:
                ts.exec_count += 1
            if result.http_status != 503:
                ts.app_engine_exec_count += 1
        if spec.attempt_id == ts.latest_attempt:
            set_ts(pb.last_attempt.response_time, now)
            pb.last_attempt.response_status.code = result.code
            pb.last_attempt.response_status.message = result.message
        ts.previous_status = result.http_status
        ts.previous_reason = result.reason
        if result.code == OK:
            self.remove_task(qs, ts)
            return
        retry = self.effective_retry(qs, ts)
        first = ts.first_dispatch_s
        age = 0.0 if first is None else now - first
        if retries_exhausted(retry, pb.dispatch_count, age):
            self.remove_task(qs, ts)
            return
        delay = backoff_s(retry, pb.dispatch_count)
        if result.http_status in (429, 503) and result.retry_after_s is not None:
            # "The retry specified in the Retry-After HTTP response header is considered": the
            # retry waits at least that long, within the queue's max_backoff.
            delay = max(delay, min(result.retry_after_s, dur_s(retry.max_backoff)))
        # A forced run reschedules from the time RunTask was called (RunTask's documentation);
        # a queue dispatch from the time its answer came.
        base = spec.started_s if spec.forced else now
        ts.schedule_s = base + delay
        set_ts(pb.schedule_time, ts.schedule_s)
        if not ts.queue_inflight:
            qs.push(ts)

    def _build_request(
        self, qs: QueueState, ts: TaskState, retry_count: int
    ) -> tuple[str, str, dict[str, str], bytes, float]:
        pb = ts.pb
        queue_id = qs.name.rsplit("/", 1)[1]
        task_id = str(pb.name).rsplit("/", 1)[1]
        eta = f"{ts.schedule_s:.6f}"
        deadline = dur_s(pb.dispatch_deadline) if pb.HasField("dispatch_deadline") else 0.0
        headers: dict[str, str] = {}
        if pb.HasField("app_engine_http_request"):
            req = pb.app_engine_http_request
            method = HTTP_METHODS.get(req.http_method, "POST")
            base = self.app_engine_host or "http://app-engine-host-not-configured.invalid"
            uri = req.relative_uri or "/"
            url = base + (uri if uri.startswith("/") else "/" + uri)
            _merge(headers, req.headers)
            prefix = "X-AppEngine-"
            exec_count = ts.app_engine_exec_count
            body = bytes(req.body)
        else:
            req = pb.http_request
            method = HTTP_METHODS.get(req.http_method, "POST")
            url = req.url
            _merge(headers, req.headers)
            prefix = "X-CloudTasks-"
            exec_count = ts.exec_count
            body = bytes(req.body)
            oidc = req.oidc_token if req.HasField("oidc_token") else None
            oauth = req.oauth_token if req.HasField("oauth_token") else None
            target = qs.pb.http_target if qs.pb.HasField("http_target") else None
            if target is not None:
                method, url = _apply_http_target(target, method, url, headers)
                if target.HasField("oidc_token"):
                    oidc, oauth = target.oidc_token, None
                elif target.HasField("oauth_token"):
                    oidc, oauth = None, target.oauth_token
            if oidc is not None:
                token = self.signer.id_token(oidc.service_account_email, oidc.audience or url)
                _set(headers, "Authorization", f"Bearer {token}")
            elif oauth is not None:
                token = self.signer.access_token(
                    oauth.service_account_email, oauth.scope or DEFAULT_SCOPE
                )
                _set(headers, "Authorization", f"Bearer {token}")
            _set(headers, "User-Agent", HTTP_USER_AGENT)  # queue overrides cannot change it
        headers[prefix + "QueueName"] = queue_id
        headers[prefix + "TaskName"] = task_id
        headers[prefix + "TaskRetryCount"] = str(retry_count)
        headers[prefix + "TaskExecutionCount"] = str(exec_count)
        headers[prefix + "TaskETA"] = eta
        if retry_count > 0:
            if ts.previous_status is not None:
                headers[prefix + "TaskPreviousResponse"] = str(ts.previous_status)
            if prefix == "X-CloudTasks-":
                # Captures of the real service show the header present and empty on retries
                # of HTTP tasks.
                headers[prefix + "TaskRetryReason"] = ""
            elif ts.previous_reason:
                headers[prefix + "TaskRetryReason"] = ts.previous_reason
        return method, url, headers, body, deadline or DEFAULT_DEADLINE_S

    # -- queue stats (v2beta3 read_mask "stats") -------------------------------------------
    def fill_stats(self, qs: QueueState, out: Any) -> None:
        now = self.clock.now_s()
        while qs.executed and qs.executed[0] < now - 60:
            qs.executed.popleft()
        st = out.stats
        st.tasks_count = len(qs.tasks)
        if qs.tasks:
            set_ts(st.oldest_estimated_arrival_time, min(t.schedule_s for t in qs.tasks.values()))
        st.executed_last_minute_count = len(qs.executed)
        st.concurrent_dispatches_count = qs.inflight
        st.effective_execution_rate = qs.pb.rate_limits.max_dispatches_per_second


def _apply_http_target(
    target: Any, method: str, url: str, headers: dict[str, str]
) -> tuple[str, str]:
    """Queue-level HttpTarget overrides: method, headers, URI parts."""
    if target.http_method:
        method = HTTP_METHODS.get(target.http_method, method)
    for override in target.header_overrides:
        key = override.header.key
        lower = key.lower()
        if lower.startswith(_RESERVED_PREFIXES) or lower in _COMPUTED:
            continue
        _set(headers, key, override.header.value)
    if target.HasField("uri_override"):
        uo = target.uri_override
        parts = urlsplit(url)
        enforce_always = uo.uri_override_enforce_mode == 2  # ALWAYS
        scheme, netloc, path, query = parts.scheme, parts.netloc, parts.path, parts.query
        if uo.scheme:
            scheme = "http" if uo.scheme == 1 else "https"
        host = uo.host or parts.hostname or ""
        port = uo.port or parts.port
        if uo.host or uo.port:
            netloc = f"{host}:{port}" if port else host
        if uo.HasField("path_override"):
            path = uo.path_override.path
        if uo.HasField("query_override"):
            query = uo.query_override.query_params
        if enforce_always or not url:
            url = urlunsplit((scheme or "https", netloc, path, query, ""))
        else:  # IF_NOT_EXISTS: only the parts the task's URL lacks
            url = urlunsplit(
                (
                    parts.scheme or scheme,
                    parts.netloc or netloc,
                    parts.path or path,
                    parts.query or query,
                    parts.fragment,
                )
            )
    return method, url


def _set(headers: dict[str, str], name: str, value: str) -> None:
    """Set a header, replacing any spelling of it: one header per name on the wire."""
    lower = name.lower()
    for existing in [k for k in headers if k.lower() == lower]:
        del headers[existing]
    headers[name] = value


def _merge(headers: dict[str, str], stored: Any) -> None:
    """The task's stored headers, without any reserved name (older state or a queue override
    may still hold one)."""
    for name, value in stored.items():
        lower = name.lower()
        if lower.startswith(_RESERVED_PREFIXES) or lower in _COMPUTED:
            continue
        _set(headers, name, value)


def generated_task_id() -> str:
    """Server-assigned ids look like the real ones: a long decimal number."""
    return str(secrets.randbelow(9 * 10**18) + 10**18)


def encode_queue_token(after: str) -> str:
    return base64.urlsafe_b64encode(f"q:{after}".encode()).decode()


def decode_queue_token(token: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return text[2:] if text.startswith("q:") else None


def encode_page_token(kind: str, key: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode()


def decode_page_token(kind: str, token: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, key = text.partition(":")
        if prefix != kind:
            return None
        return int(key)
    except (ValueError, UnicodeDecodeError):
        return None
