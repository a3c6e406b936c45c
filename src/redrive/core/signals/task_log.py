"""Cloud Logging entries routed by a log sink: Cloud Tasks task operation logs.

A failed `attemptResponseLog` becomes a TaskFailure seen at the entry's timestamp; successful
attempts and every other entry are ignored with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from redrive.core.signals._common import (
    bound,
    clip,
    optional_str,
    parse_count,
    parse_task,
    parse_time,
    type_name,
)
from redrive.core.signals.model import Ignored, Invalid, Parsed, SignalError, TaskFailure

KIND = "task-log"
SOURCE = "task-log"
TIMESTAMP_ATTRIBUTE = "logging.googleapis.com/timestamp"
RESOURCE_TYPE = "cloud_tasks_queue"
_PAYLOAD_KEYS = ("jsonPayload", "textPayload", "protoPayload")
_OTHER_LOGS = ("attemptDispatchLog", "taskCreationLog", "taskDeletionLog")
# attemptResponseLog fields worth carrying along (the counts are int64, i.e. JSON strings).
_ATTEMPT_FIELDS = {
    "responseCount": "response_count",
    "scheduleTime": "schedule_time",
    "dispatchTime": "dispatch_time",
    "responseTime": "response_time",
    "retryTime": "retry_time",
    "targetType": "target_type",
    "attemptDuration": "attempt_duration",
}


def looks_like(obj: Any, attributes: Mapping[str, str]) -> bool:
    if not isinstance(obj, dict):
        return False
    if "logName" in obj or any(key in obj for key in _PAYLOAD_KEYS):
        return True
    return TIMESTAMP_ATTRIBUTE in attributes and "resource" in obj


def parse(entry: dict[str, Any], attributes: Mapping[str, str], fallback: datetime) -> Parsed:
    metadata: dict[str, str] = {}
    try:
        return _parse(entry, attributes, fallback, metadata)
    except SignalError as err:
        return Parsed(KIND, (Invalid(bound(str(err))),), metadata)


def _parse(
    entry: dict[str, Any], attributes: Mapping[str, str], fallback: datetime, meta: dict[str, str]
) -> Parsed:
    for key, name in (("logName", "log_name"), ("insertId", "insert_id")):
        value = optional_str(entry, key, key)
        if value:
            meta[name] = value

    resource = entry.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise SignalError(f"resource must be an object, got {type_name(resource)}")
    resource = resource or {}
    resource_type = optional_str(resource, "type", "resource.type")
    if resource_type is not None and resource_type != RESOURCE_TYPE:
        return _ignored(
            f"log entry from resource type {clip(resource_type)}, not {RESOURCE_TYPE}", meta
        )

    payload = entry.get("jsonPayload")
    if payload is None:
        return _ignored("log entry without jsonPayload: not a Cloud Tasks task operation log", meta)
    if not isinstance(payload, dict):
        raise SignalError(f"jsonPayload must be an object, got {type_name(payload)}")

    response = payload.get("attemptResponseLog")
    if response is None:
        other = next((key for key in _OTHER_LOGS if key in payload), None)
        if other is not None:
            return _ignored(f"task operation log is {other}, not attemptResponseLog", meta)
        return _ignored("log entry has no attemptResponseLog: not a task attempt result", meta)
    if not isinstance(response, dict):
        raise SignalError(
            f"jsonPayload.attemptResponseLog must be an object, got {type_name(response)}"
        )

    task = parse_task(payload.get("task"), "jsonPayload.task")
    meta["task"] = str(task)
    _check_labels(task, resource)

    status = optional_str(response, "status", "attemptResponseLog.status")
    if not status:
        raise SignalError("attemptResponseLog has no status")
    meta["status"] = status
    for key, name in _ATTEMPT_FIELDS.items():
        value = response.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            meta[name] = str(value)
    count = response.get("dispatchCount")
    dispatch_count = (
        None if count is None else parse_count(count, "attemptResponseLog.dispatchCount")
    )

    if status == "OK":
        return _ignored("successful attempt", meta)

    seen_at = _seen_at(entry, attributes, fallback)
    failure = TaskFailure(
        task=task, seen_at=seen_at, source=SOURCE, dispatch_count=dispatch_count, status=status
    )
    return Parsed(KIND, (failure,), meta)


def _check_labels(task: Any, resource: Mapping[str, Any]) -> None:
    labels = resource.get("labels")
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise SignalError(f"resource.labels must be an object, got {type_name(labels)}")
    for label, part in (
        ("project_id", task.project),
        ("location", task.location),
        ("queue_id", task.queue),
    ):
        value = labels.get(label)
        if value is not None and value != part:
            raise SignalError(
                f"jsonPayload.task disagrees with resource.labels.{label}: "
                f"{clip(part)} vs {clip(value)}"
            )


def _seen_at(
    entry: Mapping[str, Any], attributes: Mapping[str, str], fallback: datetime
) -> datetime:
    # The entry's own timestamp is when the failed response was logged; the attribute is a copy.
    if entry.get("timestamp") is not None:
        return parse_time(entry["timestamp"], "timestamp")
    if TIMESTAMP_ATTRIBUTE in attributes:
        return parse_time(attributes[TIMESTAMP_ATTRIBUTE], f"attribute {TIMESTAMP_ATTRIBUTE}")
    if entry.get("receiveTimestamp") is not None:
        return parse_time(entry["receiveTimestamp"], "receiveTimestamp")
    return fallback


def _ignored(reason: str, meta: dict[str, str]) -> Parsed:
    return Parsed(KIND, (Ignored(bound(reason), SOURCE),), meta)
