"""Dead-letter signals: a JSON object or array naming tasks, a bare task name, or a task-name
attribute; also messages re-published by a Pub/Sub dead-letter topic."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from redrive.core.signals._common import (
    DISPATCH_COUNT_KEYS,
    TASK_KEYS,
    TIME_KEYS,
    bound,
    first_key,
    parse_count,
    parse_task,
    parse_time,
    type_name,
)
from redrive.core.signals.model import Invalid, Parsed, Signal, SignalError, TaskFailure

SOURCE = "dead-letter"
KIND = "dead-letter"
DLQ_PREFIX = "CloudPubSubDeadLetterSource"
DLQ_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
TASK_ATTRIBUTES = ("task", "taskName", "task_name")


def names_tasks(obj: Any) -> bool:
    """True when a JSON value has the shape of a dead-letter signal (whatever its values)."""
    if isinstance(obj, dict):
        return "tasks" in obj or any(key in obj for key in TASK_KEYS)
    if isinstance(obj, list):
        return bool(obj) and all(isinstance(item, str | dict) for item in obj)
    return isinstance(obj, str)


def dlq_metadata(attributes: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in attributes.items() if k.startswith(DLQ_PREFIX)}


def base_seen_at(
    attributes: Mapping[str, str], publish_time: datetime | None, now: datetime
) -> datetime:
    """When a dead-lettered failure was seen: the original publish time, else this message's."""
    if DLQ_PUBLISH_TIME in attributes:
        return parse_time(attributes[DLQ_PUBLISH_TIME], f"attribute {DLQ_PUBLISH_TIME}")
    return publish_time or now


def from_attributes(attributes: Mapping[str, str], seen_at: datetime) -> Parsed | None:
    """A task named by an attribute (used when the data names nothing)."""
    found = first_key(attributes, TASK_ATTRIBUTES)
    if found is None:
        return None
    key, value = found
    try:
        task = parse_task(value, f"attribute {key}")
    except SignalError as err:
        return _parsed((Invalid(bound(str(err))),), attributes)
    return _parsed((TaskFailure(task=task, seen_at=seen_at, source=SOURCE),), attributes)


def from_text(text: str, attributes: Mapping[str, str], seen_at: datetime) -> Parsed:
    """The whole body is one task name (surrounding whitespace ignored)."""
    try:
        task = parse_task(text.strip(), "body")
    except SignalError as err:
        return _parsed((Invalid(bound(str(err))),), attributes)
    return _parsed((TaskFailure(task=task, seen_at=seen_at, source=SOURCE),), attributes)


def from_json(obj: Any, attributes: Mapping[str, str], seen_at: datetime) -> Parsed:
    """A JSON value already known to `names_tasks`."""
    defaults = _Defaults(seen_at=seen_at)
    try:
        if isinstance(obj, str):
            items: list[tuple[str, Any]] = [("body", obj)]
        elif isinstance(obj, list):
            items = [(f"[{i}]", item) for i, item in enumerate(obj)]
        else:
            defaults = _read_defaults(obj, defaults, "")
            if "tasks" in obj:
                tasks = obj["tasks"]
                if not isinstance(tasks, list):
                    raise SignalError(f"'tasks' must be an array, got {type_name(tasks)}")
                items = [(f"tasks[{i}]", item) for i, item in enumerate(tasks)]
            else:
                # One task: a name (its count and status at the top level) or a nested object.
                items = [first_key(obj, TASK_KEYS) or (TASK_KEYS[0], None)]
        if not items:
            raise SignalError("'tasks' is empty: no task named")
    except SignalError as err:
        return _parsed((Invalid(bound(str(err))),), attributes)

    signals: list[Signal] = []
    seen: set[tuple[str, int | None]] = set()
    for where, item in items:
        try:
            failure = _item(item, where, defaults)
        except SignalError as err:
            signals.append(Invalid(bound(str(err))))
            continue
        key = (str(failure.task), failure.dispatch_count)
        if key not in seen:  # the same failure twice in one message is one failure
            seen.add(key)
            signals.append(failure)
    return _parsed(tuple(signals), attributes)


class _Defaults:
    __slots__ = ("dispatch_count", "seen_at", "status")

    def __init__(
        self, seen_at: datetime, dispatch_count: int | None = None, status: str | None = None
    ) -> None:
        self.seen_at = seen_at
        self.dispatch_count = dispatch_count
        self.status = status


def _read_defaults(obj: Mapping[str, Any], base: _Defaults, where: str) -> _Defaults:
    prefix = f"{where}." if where else ""
    count = base.dispatch_count
    found = first_key(obj, DISPATCH_COUNT_KEYS)
    if found is not None:
        count = parse_count(found[1], prefix + found[0])
    status = base.status
    if obj.get("status") is not None:
        value = obj["status"]
        if not isinstance(value, str):
            raise SignalError(f"{prefix}status must be a string, got {type_name(value)}")
        status = value or None
    seen_at = base.seen_at
    found = first_key(obj, TIME_KEYS)
    if found is not None:
        seen_at = parse_time(found[1], prefix + found[0])
    return _Defaults(seen_at=seen_at, dispatch_count=count, status=status)


def _item(item: Any, where: str, defaults: _Defaults) -> TaskFailure:
    if isinstance(item, dict):
        found = first_key(item, TASK_KEYS)
        if found is None:
            raise SignalError(f"{where} has no task name (keys: task, taskName, task_name, name)")
        key, value = found
        defaults = _read_defaults(item, defaults, where)
        task = parse_task(value, f"{where}.{key}")
    else:
        task = parse_task(item, where)
    return TaskFailure(
        task=task,
        seen_at=defaults.seen_at,
        source=SOURCE,
        dispatch_count=defaults.dispatch_count,
        status=defaults.status,
    )


def _parsed(signals: tuple[Signal, ...], attributes: Mapping[str, str]) -> Parsed:
    return Parsed(kind=KIND, signals=signals, metadata=dlq_metadata(attributes))
