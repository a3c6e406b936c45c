"""The values the signal parser produces: one Pub/Sub message in, a `Parsed` out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from redrive.core.names import QueueName, TaskName
from redrive.core.statuses import StatusFilter


class SignalError(Exception):
    """A payload the parser cannot read; the caller reports it as INVALID_SIGNAL."""


@dataclass(frozen=True)
class Message:
    """One Pub/Sub message as the function received it (`data` already base64-decoded)."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: datetime | None  # aware UTC
    subscription: str | None = None


@dataclass(frozen=True)
class TaskFailure:
    """A task whose attempt failed: re-drive it once a fix is live."""

    task: TaskName
    seen_at: datetime  # when the failure was seen: log timestamp, attempt time or publish time
    source: str  # "dead-letter" | "task-log" | "alert"
    dispatch_count: int | None = None  # the failed attempt's dispatch count, when known
    status: str | None = None  # google.rpc code name of the failed attempt, e.g. "INTERNAL"


@dataclass(frozen=True)
class QueueAlert:
    """A queue is failing but no task was named: handled by sweeping the queue."""

    queue: QueueName
    seen_at: datetime
    source: str  # "alert"
    incident_id: str | None = None


@dataclass(frozen=True)
class Deploy:
    """A fix is live since `deployed_at` for these services and/or queues."""

    deployed_at: datetime
    source: str  # "cloud-build" | "cloud-deploy" | "plain"
    services: tuple[str, ...] = ()  # short ids or projects/P/locations/L/services/S
    queues: tuple[QueueName, ...] = ()
    version: str | None = None  # revision, image or commit when known
    statuses: StatusFilter | None = None
    """The last-attempt statuses the deploy fixed (the message's `statuses`); None: the
    configured default (REDRIVE_SWEEP_STATUSES)."""


@dataclass(frozen=True)
class Patrol:
    """Look for tasks about to use their last attempt and park them (REDRIVE_PARKING_QUEUE)."""

    seen_at: datetime
    source: str  # "patrol"
    queues: tuple[QueueName, ...] = ()  # none: every allowed queue


@dataclass(frozen=True)
class Ignored:
    """Understood and deliberately not acted on (closed incident, successful attempt...)."""

    reason: str
    source: str


@dataclass(frozen=True)
class Invalid:
    """Not understood; `reason` is precise, human-readable and bounded (no payload dump)."""

    reason: str


Signal = TaskFailure | QueueAlert | Deploy | Patrol | Ignored | Invalid


@dataclass(frozen=True)
class Parsed:
    """What one message meant: its kind, at least one signal, and format metadata."""

    # "dead-letter" | "task-log" | "alert" | "cloud-build" | "cloud-deploy" | "deploy" | "patrol"
    # | "unknown"
    kind: str
    signals: tuple[Signal, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def invalid(self) -> Invalid | None:
        """The first Invalid signal, if any."""
        return next((s for s in self.signals if isinstance(s, Invalid)), None)
