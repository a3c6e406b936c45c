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

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from redrive.adapters.translate import translate
from redrive.core import errors
from redrive.core.decide import RunResult
from redrive.core.gone import Gone, classify_not_found
from redrive.core.jobs import JobTask
from redrive.core.names import QueueName, TaskName
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
class QueueInfo:
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
        request = {"parent": str(queue), "task": job.request_task(), "response_view": 1}
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

    def create_copy(self, original: Any, name: TaskName, schedule_time: datetime) -> bool:
        """Create `name` as a copy of `original` (a raw Task) due at `schedule_time`. True when
        created, False when the name is taken (a redelivery meets its own copy)."""
        copy = type(original)()
        copy.CopyFrom(original)
        for field in OUTPUT_ONLY:
            copy.ClearField(field)
        copy.name = str(name)
        copy.schedule_time.FromDatetime(schedule_time)
        request = {"parent": str(name.queue_name), "task": copy, "response_view": 1}
        try:
            self._retried(
                lambda: self.client.create_task(
                    request=request, retry=None, timeout=self.call_timeout_s
                )
            )
        except errors.AlreadyExistsError:
            return False
        return True

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

    def queue_info(self, queue: QueueName) -> QueueInfo | None:
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
        return QueueInfo(rate if rate > 0 else None, tasks)

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
