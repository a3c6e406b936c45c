"""A version-neutral snapshot of a Cloud Tasks task, as far as redrive's decisions need it.

Built from a v2 or v2beta3 `Task` (proto-plus or its raw protobuf) by duck typing: both versions
name these fields the same. The request body and headers are never copied here; the target URL is
kept only to find the Cloud Run service behind it and is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redrive.core.names import TaskName
from redrive.core.redact import redact_urls

STATUS_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


@dataclass(frozen=True)
class TaskState:
    """What GetTask (or RunTask) reported about one task."""

    name: TaskName
    dispatch_count: int = 0
    response_count: int = 0
    schedule_time: datetime | None = None
    create_time: datetime | None = None
    first_dispatch_time: datetime | None = None
    last_schedule_time: datetime | None = None
    last_dispatch_time: datetime | None = None
    last_response_time: datetime | None = None
    last_status_code: int | None = None
    """google.rpc code of the last attempt's response; None when the last attempt has no answer."""
    last_status_message: str | None = None
    target_url: str | None = None
    """HTTP target URL (never logged: only its host is used to find the Cloud Run service)."""
    dispatch_deadline_s: float | None = None
    """How long Cloud Tasks waits for an attempt's answer, when the task sets it."""
    retry_max_attempts: int | None = None
    """The task's own RetryConfig.max_attempts, when it sets one (it overrides the queue's)."""
    retry_max_duration_s: float | None = None
    """The task's own RetryConfig.max_retry_duration, when it sets one."""

    @property
    def in_flight(self) -> bool:
        """The last attempt was dispatched and has not been answered yet."""
        if self.last_dispatch_time is None:
            return False
        if self.last_response_time is None:
            # An attempt that ended without an HTTP answer (deadline, connection error) still
            # carries a response status: it is over, not in flight.
            return self.last_status_code is None
        return self.last_response_time < self.last_dispatch_time

    @property
    def last_failed(self) -> bool:
        """The last answered attempt failed (non-OK status)."""
        return self.last_status_code is not None and self.last_status_code != 0

    @property
    def last_status(self) -> str | None:
        if self.last_status_code is None:
            return None
        return STATUS_NAMES.get(self.last_status_code, str(self.last_status_code))

    @property
    def failed_at(self) -> datetime | None:
        """When the last failed attempt ran: its dispatch time (the failing code started then)."""
        return self.last_dispatch_time or self.last_response_time

    def summary(self) -> dict[str, Any]:
        """The loggable part (counts, status, times): never the target, body or headers."""
        return {
            "dispatch_count": self.dispatch_count,
            "response_count": self.response_count,
            "last_status": self.last_status,
            "last_status_code": self.last_status_code,
            "last_status_message": (
                redact_urls(self.last_status_message)[:200] if self.last_status_message else None
            ),
            "last_dispatch_time": _iso(self.last_dispatch_time),
            "last_response_time": _iso(self.last_response_time),
            "first_dispatch_time": _iso(self.first_dispatch_time),
            "schedule_time": _iso(self.schedule_time),
            "in_flight": self.in_flight,
        }

    @classmethod
    def from_task(cls, task: Any) -> TaskState:
        """From a google-cloud-tasks `Task` of either API version, proto-plus or raw protobuf.

        Read from the raw message: proto-plus marshals every field access, which made this the
        largest cost of listing a queue (a sweep reads a thousand tasks a page).
        """
        pb = type(task).pb(task) if hasattr(type(task), "pb") else task
        last = pb.last_attempt if pb.HasField("last_attempt") else None
        first = pb.first_attempt if pb.HasField("first_attempt") else None
        code: int | None = None
        message: str | None = None
        if last is not None and last.HasField("response_status"):
            code = int(last.response_status.code)
            message = str(last.response_status.message) or None
        url: str | None = None
        if pb.HasField("http_request"):
            url = str(pb.http_request.url) or None
        deadline = _seconds(pb, "dispatch_deadline")
        attempts: int | None = None
        duration: float | None = None
        if pb.HasField("retry_config"):
            rc = pb.retry_config
            attempts = int(rc.max_attempts) or None
            duration = _seconds(rc, "max_retry_duration")
        return cls(
            name=TaskName.parse(pb.name),
            dispatch_count=int(pb.dispatch_count),
            response_count=int(pb.response_count),
            schedule_time=_time(pb, "schedule_time"),
            create_time=_time(pb, "create_time"),
            first_dispatch_time=_time(first, "dispatch_time"),
            last_schedule_time=_time(last, "schedule_time"),
            last_dispatch_time=_time(last, "dispatch_time"),
            last_response_time=_time(last, "response_time"),
            last_status_code=code,
            last_status_message=message,
            target_url=url,
            dispatch_deadline_s=deadline,
            retry_max_attempts=attempts,
            retry_max_duration_s=duration,
        )


def _time(message: Any, field: str) -> datetime | None:
    """A google.protobuf.Timestamp field as an aware datetime (microseconds), None when unset."""
    if message is None or not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def _seconds(message: Any, field: str) -> float | None:
    """A google.protobuf.Duration field in seconds, None when unset."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    return float(value.seconds) + float(value.nanos) / 1e9


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
