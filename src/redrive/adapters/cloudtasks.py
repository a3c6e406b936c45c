"""Cloud Tasks adapter: GetTask, RunTask, CreateTask and ListTasks through google-cloud-tasks.

The client is a parameter (`TasksClient` protocol), so unit tests pass a fake and production passes
the real v2 or v2beta3 client (runtime.py builds it). Requests are plain dicts, which both API
versions' clients accept, so this module does not import either version. Errors are translated into
redrive's tree here, once.

Retry rules:
- GetTask and CreateTask are retried on transient codes with google-api-core's `Retry`, bounded by
  `retry_deadline_s` (the client's own default retry is switched off so retries do not nest).
- RunTask is never retried here: the Python client does not retry it, and a call that timed out
  may still have dispatched, possibly after the read that follows. After
  UNAVAILABLE/DEADLINE_EXCEEDED the task is read again: a higher dispatch count means it was
  dispatched; otherwise the outcome is unknown (`OutcomeUnknownError`), and only a later delivery,
  once the task's state can tell, decides again (see redrive.core.claims).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from redrive.adapters.translate import translate
from redrive.core import errors
from redrive.core.decide import RunResult
from redrive.core.gone import Gone, classify_not_found
from redrive.core.jobs import JobTask
from redrive.core.names import QueueName, TaskName
from redrive.core.parking import RETENTION, Parked, RetryRule
from redrive.core.recreate import OUTPUT_ONLY
from redrive.core.state import TaskState

T = TypeVar("T")


class Seen(StrEnum):
    """What GetTask tells of a name."""

    LIVE = "live"
    RECENT = "recent"
    """Gone, but a task of this name existed recently (it completed or was deleted)."""
    NEVER = "never"
    """No task of this name, now or recently (or long ago)."""


@dataclass(frozen=True)
class QueueRates:
    """What GetQueue tells a plan: the queue's dispatch rate and, with v2beta3, its depth."""

    rate_per_s: float | None
    tasks: int | None
    """Tasks in the queue (v2beta3 `stats.tasks_count`); None when the API does not say."""


QUEUE_INFO_DEADLINE_S = 5.0
"""A plan's GetQueue is retried this long at most: a rate it cannot read is said, not waited for."""


class Deleted(StrEnum):
    """What DeleteTask found."""

    YES = "yes"
    """Deleted by this call."""
    WAS_GONE = "was_gone"
    """Not found on the first try: the task was gone before (it ran, or someone deleted it)."""
    PROBABLY = "probably"
    """Not found after a transient failure: that failed call most likely deleted it."""


VIEWS = {"BASIC": 1, "FULL": 2}
LIST_VIEW_BASIC = 1
"""Listing never needs bodies: BASIC view, whatever REDRIVE_RESPONSE_VIEW says."""


class TasksClient(Protocol):
    """The slice of `CloudTasksClient` (v2 or v2beta3) redrive uses."""

    def get_task(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def run_task(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def create_task(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def list_tasks(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def delete_task(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def get_queue(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def list_queues(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...


QUEUE_STATES = {1: "RUNNING", 2: "PAUSED", 3: "DISABLED"}
QUEUE_INFO_TTL_S = 300.0
"""A queue's RetryConfig is read once per instance and kept this long: it changes with a deploy
of the queue, not between two tasks."""


@dataclass(frozen=True)
class QueueInfo:
    """What parking needs to know of a queue."""

    rule: RetryRule
    state: str
    """RUNNING, PAUSED or DISABLED."""
    retention: timedelta
    """How long Cloud Tasks keeps a task (v2beta3 `task_ttl`; 31 days in v2)."""

    @property
    def paused(self) -> bool:
        return self.state == "PAUSED"


RETRY_INITIAL_S = 0.1
RETRY_MAXIMUM_S = 5.0
RETRY_MULTIPLIER = 2.0
"""Backoff of every retried call: 0.1 s, doubling, at most 5 s between attempts."""


def transient_predicate(exc: Exception) -> bool:
    """The codes worth trying again: the service or the connection, not the request."""
    from google.api_core import exceptions as gexc

    return isinstance(
        exc,
        gexc.ServiceUnavailable
        | gexc.DeadlineExceeded
        | gexc.InternalServerError
        | gexc.Aborted
        | gexc.Unknown
        | gexc.ResourceExhausted,
    )


def make_retry(deadline_s: float, initial_s: float = RETRY_INITIAL_S) -> Any:
    """A google-api-core Retry for idempotent calls, bounded by `deadline_s` in total."""
    from google.api_core.retry import Retry

    return Retry(
        predicate=transient_predicate,
        initial=initial_s,
        maximum=RETRY_MAXIMUM_S,
        multiplier=RETRY_MULTIPLIER,
        timeout=deadline_s,
    )


class CloudTasks:
    """GetTask / RunTask / CreateTask with redrive's retry and error rules."""

    def __init__(
        self,
        client: TasksClient,
        *,
        api_version: str = "v2beta3",
        response_view: str = "BASIC",
        retry_deadline_s: float = 30.0,
        call_timeout_s: float = 20.0,
        backoff_initial_s: float = RETRY_INITIAL_S,
    ) -> None:
        self.client = client
        self.api_version = api_version
        self.view = VIEWS[response_view]
        self.retry_deadline_s = retry_deadline_s
        self.call_timeout_s = call_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self._queues: dict[str, tuple[float, QueueInfo]] = {}
        self._queues_lock = threading.Lock()

    def _retried(self, call: Callable[[], T]) -> T:
        retry = make_retry(self.retry_deadline_s, self.backoff_initial_s)
        try:
            return retry(call)()  # type: ignore[no-any-return]
        except Exception as err:
            raise translate(err) from None

    def get(self, task: TaskName) -> TaskState | None:
        """The task's state, or None when Cloud Tasks answers NOT_FOUND."""
        got = self.lookup(task)
        return None if isinstance(got, Gone) else got

    def lookup(self, task: TaskName) -> TaskState | Gone:
        """The task's state, or what Cloud Tasks' NOT_FOUND said of its name (core.gone)."""
        got = self._lookup(str(task), self.view)
        return got if isinstance(got, Gone) else TaskState.from_task(got)

    def get_full(self, name: str) -> tuple[TaskState, bytes] | None:
        """A task read with the FULL view: its state and its HTTP body (None when NOT_FOUND).

        For redrive's own tasks only (jobs, claim markers): the body of a target task is never
        read into a record.
        """
        got = self._get(name, VIEWS["FULL"])
        if got is None:
            return None
        pb = type(got).pb(got) if hasattr(type(got), "pb") else got
        body = bytes(pb.http_request.body) if pb.HasField("http_request") else b""
        return TaskState.from_task(got), body

    def _get(self, name: str, view: int) -> Any:
        got = self._lookup(name, view)
        return None if isinstance(got, Gone) else got

    def _lookup(self, name: str, view: int) -> Any:
        """GetTask's answer, or the kind of its NOT_FOUND."""
        request = {"name": name, "response_view": view}
        try:
            return self._retried(
                lambda: self.client.get_task(
                    request=request, retry=None, timeout=self.call_timeout_s
                )
            )
        except errors.NotFoundError as err:
            return classify_not_found(str(err))

    def run(self, task: TaskName, before: TaskState) -> RunResult:
        """Force-run `task` once: one RunTask call, never two.

        Raises NotFoundError, PermissionDeniedError, QuotaExceededError, InvalidRequestError, or
        OutcomeUnknownError when the call failed in a way that may still have dispatched.
        """
        from google.api_core import exceptions as gexc

        request = {"name": str(task), "response_view": self.view}
        try:
            ran = self.client.run_task(request=request, retry=None, timeout=self.call_timeout_s)
        except (gexc.ServiceUnavailable, gexc.DeadlineExceeded) as err:
            # The call may have reached Cloud Tasks and dispatched: look, but never call again.
            code = type(err).__name__
            after = self.lookup(task)
            if isinstance(after, Gone):
                # The kind stays readable in the text (core.gone classifies it again).
                said = " (it existed recently)" if after is Gone.EXISTED_RECENTLY else ""
                raise errors.NotFoundError(
                    f"RunTask failed ({code}) and the task is gone{said}: it was probably "
                    "dispatched and completed"
                ) from None
            if after.dispatch_count > before.dispatch_count:
                return RunResult(True, after, confirmed_by="GetTask")
            raise errors.OutcomeUnknownError(
                f"RunTask failed ({code}) and the task shows no new dispatch yet: it may still "
                "dispatch; not called again until its state can tell"
            ) from None
        except Exception as err:
            raise translate(err) from None
        return RunResult(True, TaskState.from_task(ran))

    def create(self, queue: QueueName, job: JobTask) -> bool:
        """Create the job task. True if created, False if the name is taken (ALREADY_EXISTS).

        CreateTask is safe to retry here because the name is explicit: a retry after a lost
        answer meets ALREADY_EXISTS, which is the same "somebody holds this job" answer.
        """
        return self._create_named(str(queue), job.request_task())

    def _create_named(self, parent: str, task: Any) -> bool:
        """CreateTask of a named task (a dict or a raw Task): True when created, False when
        the name is taken (ALREADY_EXISTS), retried like every call."""
        request = {"parent": parent, "task": task, "response_view": 1}
        try:
            self._retried(
                lambda: self.client.create_task(
                    request=request, retry=None, timeout=self.call_timeout_s
                )
            )
        except errors.AlreadyExistsError:
            return False
        return True

    def list_page(
        self, queue: QueueName, token: str, *, page_size: int, deadline_s: float
    ) -> tuple[list[Any], str]:
        """One ListTasks page (BASIC view): its raw tasks and the next page's token ("" at the end).

        One call per page keeps each page's token at hand (a sweep records where it stopped) and
        retries bounded by `deadline_s` per page.
        """
        request = {
            "parent": str(queue),
            "page_size": page_size,
            "page_token": token,
            "response_view": LIST_VIEW_BASIC,
        }
        try:
            # The pager proxies the first response: its tasks and token are that one page.
            page = self.client.list_tasks(
                request=request, retry=make_retry(deadline_s), timeout=self.call_timeout_s
            )
            return list(page.tasks), str(page.next_page_token or "")
        except Exception as err:
            raise translate(err) from None

    def list_full_page(
        self, queue: QueueName, token: str, *, page_size: int, deadline_s: float
    ) -> tuple[list[tuple[str, bytes]], str]:
        """One ListTasks page with the FULL view: (name, HTTP body) of each task, and the next
        page's token. For redrive's own queue only (its jobs' bodies say which re-drive made
        them): a target task's body is never read into a record."""
        request = {
            "parent": str(queue),
            "page_size": page_size,
            "page_token": token,
            "response_view": VIEWS["FULL"],
        }
        try:
            page = self.client.list_tasks(
                request=request, retry=make_retry(deadline_s), timeout=self.call_timeout_s
            )
            out: list[tuple[str, bytes]] = []
            for task in page.tasks:
                pb = type(task).pb(task) if hasattr(type(task), "pb") else task
                body = bytes(pb.http_request.body) if pb.HasField("http_request") else b""
                out.append((str(pb.name), body))
            return out, str(page.next_page_token or "")
        except Exception as err:
            raise translate(err) from None

    # -- re-create ---------------------------------------------------------------------------

    def read_original(self, task: TaskName) -> Any | Gone:
        """The task as stored, FULL view, as the client returns it (raw protobuf): everything a
        copy needs to send the same request. The kind of NOT_FOUND when missing. Never logged."""
        got = self._lookup(str(task), VIEWS["FULL"])
        if isinstance(got, Gone):
            return got
        return type(got).pb(got) if hasattr(type(got), "pb") else got

    def create_copy(self, original: Any, name: TaskName, schedule_time: datetime | None) -> bool:
        """Create `name` as a copy of `original` (a raw Task) due at `schedule_time` (None: due
        when Cloud Tasks creates it, by its own clock). True when created, False when the name is
        taken (a redelivery meets its own copy)."""
        copy = type(original)()
        copy.CopyFrom(original)
        for field in OUTPUT_ONLY:
            copy.ClearField(field)
        copy.name = str(name)
        if schedule_time is not None:
            copy.schedule_time.FromDatetime(schedule_time)
        return self._create_named(str(name.queue_name), copy)

    def delete(self, task: TaskName, *, deadline_s: float | None = None) -> Deleted:
        """DeleteTask, telling apart a task that was gone already from one a lost answer deleted.

        Retried on transient codes within the deadline. NOT_FOUND on the first call means the task
        was gone before (it ran, or somebody deleted it); NOT_FOUND after a transient failure most
        likely means the failed call did delete it, so the answer is `Deleted.PROBABLY`.
        """
        from google.api_core import exceptions as gexc

        request = {"name": str(task)}
        budget_s = self.retry_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + budget_s
        delay_s = self.backoff_initial_s
        faulted = False
        while True:
            try:
                self.client.delete_task(request=request, retry=None, timeout=self.call_timeout_s)
                return Deleted.YES
            except gexc.NotFound:
                return Deleted.PROBABLY if faulted else Deleted.WAS_GONE
            except Exception as err:
                translated = translate(err)
                if not isinstance(translated, errors.TransientError):
                    raise translated from None
                if time.monotonic() + delay_s > deadline:
                    raise translated from None
                faulted = True
                time.sleep(delay_s)
                delay_s = min(delay_s * RETRY_MULTIPLIER, RETRY_MAXIMUM_S)

    def queue_rates(self, queue: QueueName) -> QueueRates | None:
        """The queue's dispatch rate (and depth, v2beta3) for a plan; None when it cannot be read
        (a missing grant, a fault outlasting QUEUE_INFO_DEADLINE_S): the plan says so."""
        request: dict[str, Any] = {"name": str(queue)}
        if self.api_version == "v2beta3":
            request["read_mask"] = {"paths": ["name", "rate_limits", "stats"]}
        retry = make_retry(
            min(self.retry_deadline_s, QUEUE_INFO_DEADLINE_S), self.backoff_initial_s
        )
        try:
            got = retry(
                lambda: self.client.get_queue(
                    request=request, retry=None, timeout=self.call_timeout_s
                )
            )()
        except Exception as err:
            translate(err)  # raises what is neither an API answer nor a connection failure
            return None
        pb = type(got).pb(got) if hasattr(type(got), "pb") else got
        rate = (
            float(pb.rate_limits.max_dispatches_per_second) if pb.HasField("rate_limits") else 0.0
        )
        tasks: int | None = None
        if self.api_version == "v2beta3" and pb.HasField("stats"):
            tasks = int(pb.stats.tasks_count)
        return QueueRates(rate if rate > 0 else None, tasks)

    def seen(self, name: str) -> Seen:
        """Whether a task of this name exists, existed recently, or not (BASIC view)."""
        request = {"name": name, "response_view": VIEWS["BASIC"]}
        try:
            self._retried(
                lambda: self.client.get_task(
                    request=request, retry=None, timeout=self.call_timeout_s
                )
            )
        except errors.NotFoundError as err:
            recent = classify_not_found(str(err)) is Gone.EXISTED_RECENTLY
            return Seen.RECENT if recent else Seen.NEVER
        return Seen.LIVE

    # -- parking -----------------------------------------------------------------------------

    def queue_info(self, queue: QueueName, *, fresh: bool = False) -> QueueInfo:
        """The queue's retry rule, state and retention (GetQueue; cached QUEUE_INFO_TTL_S)."""
        key = str(queue)
        now = time.monotonic()
        with self._queues_lock:
            cached = self._queues.get(key)
        if cached is not None and not fresh and now - cached[0] < QUEUE_INFO_TTL_S:
            return cached[1]
        got = self._retried(
            lambda: self.client.get_queue(
                request={"name": key}, retry=None, timeout=self.call_timeout_s
            )
        )
        pb = type(got).pb(got) if hasattr(type(got), "pb") else got
        rc = pb.retry_config
        duration = rc.max_retry_duration
        ttl = RETENTION
        if "task_ttl" in pb.DESCRIPTOR.fields_by_name and pb.HasField("task_ttl"):
            ttl = timedelta(seconds=pb.task_ttl.seconds + pb.task_ttl.nanos / 1e9)
        info = QueueInfo(
            RetryRule(
                int(rc.max_attempts),
                float(duration.seconds) + duration.nanos / 1e9,
            ),
            QUEUE_STATES.get(int(pb.state), str(int(pb.state))),
            ttl,
        )
        with self._queues_lock:
            self._queues[key] = (now, info)
        return info

    def list_queues(self, parent: str) -> list[QueueName]:
        """Every queue of a location (ListQueues, all pages)."""
        request = {"parent": parent, "page_size": 9800}
        try:
            pager = self.client.list_queues(
                request=request,
                retry=make_retry(self.retry_deadline_s),
                timeout=self.call_timeout_s,
            )
            return [QueueName.parse(q.name) for q in pager]
        except Exception as err:
            raise translate(err) from None

    def create_parked(
        self, original: Any, name: TaskName, url: str, schedule_time: datetime
    ) -> bool:
        """Create the parked copy `name` of `original` (a raw Task, FULL view): an HTTP task to
        `url` (one that never resolves) whose body is the original, serialized. True when
        created, False when the name is taken (a redelivery meets its own copy)."""
        parked = type(original)()
        parked.name = str(name)
        parked.http_request.url = url
        parked.http_request.http_method = 1  # POST, in both versions' HttpMethod
        parked.http_request.headers["Content-Type"] = "application/x-protobuf"
        parked.http_request.body = original.SerializeToString()
        parked.schedule_time.FromDatetime(schedule_time)
        return self._create_named(str(name.queue_name), parked)

    def read_parked(self, name: TaskName) -> tuple[TaskState, Parked, Any] | None:
        """A parked copy (FULL view): its state, what its URL records, and the original task
        its body holds, as a raw Task of this client's API version (converted when it was
        parked by the other version). None when NOT_FOUND. Raises InvalidRequestError for a
        task that is no parked copy."""
        got = self._get(str(name), VIEWS["FULL"])
        if got is None:
            return None
        pb = type(got).pb(got) if hasattr(type(got), "pb") else got
        state = TaskState.from_task(pb)
        parked = Parked.from_url(state.target_url)
        if parked is None:
            raise errors.InvalidRequestError(f"{name} is not a parked copy (no origin in its URL)")
        original = type(pb)()
        body = bytes(pb.http_request.body)
        try:
            if parked.api == self.api_version:
                original.ParseFromString(body)
            else:
                _convert(body, parked.api, original)
        except Exception:  # protobuf's DecodeError or ParseError: not a serialized Task
            raise errors.InvalidRequestError(
                f"{name} is not a parked copy redrive can read (its body is not a "
                f"{parked.api} task)"
            ) from None
        return state, parked, original


def _convert(body: bytes, api: str, into: Any) -> None:
    """Parse a Task serialized by API version `api` into `into`, a Task of the other version:
    the versions number their fields differently, so the bytes go through the JSON form (whose
    names both share)."""
    from google.protobuf import json_format

    if api == "v2":
        from google.cloud import tasks_v2 as source
    else:
        from google.cloud import tasks_v2beta3 as source  # type: ignore[no-redef]
    parsed = source.Task.pb()()
    parsed.ParseFromString(body)
    data = json_format.MessageToDict(parsed, preserving_proto_field_name=True)
    json_format.ParseDict(data, into, ignore_unknown_fields=True)
