"""`parse_message`: one Pub/Sub message → `Parsed`. Never raises.

Order: size limit, attribute-only messages, cheap attribute filters (a failed Cloud Build), UTF-8,
then JSON whose shape decides the format; a body that is not JSON may only be a bare task name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redrive.core.signals import alert, dead_letter, deploy, patrol, task_log
from redrive.core.signals._common import bound, load_json, type_name
from redrive.core.signals.model import Invalid, Message, Parsed, SignalError

# Attribute values that announce a kind; the payload still decides.
_KIND_ATTRIBUTES = ("redrive-kind", "kind", "signal")
_KIND_ALIASES = {
    "dead-letter": "dead-letter",
    "deadletter": "dead-letter",
    "dlq": "dead-letter",
    "task-log": "task-log",
    "log": "task-log",
    "alert": "alert",
    "incident": "alert",
    "cloud-build": "cloud-build",
    "build": "cloud-build",
    "cloud-deploy": "cloud-deploy",
    "deploy": "deploy",
    "patrol": "patrol",
}


def parse_message(
    message: Message, *, max_bytes: int = 1_048_576, now: datetime | None = None
) -> Parsed:
    """Parse one message; bad input gives `Parsed(kind, (Invalid(reason),), metadata)`."""
    when = now or datetime.now(UTC)
    try:
        return _parse(message, max_bytes, when)
    except Exception as err:  # last line of defence: nothing but Parsed leaves the parser
        reason = bound(f"internal parser error ({type(err).__name__}); payload refused")
        return Parsed(kind="unknown", signals=(Invalid(reason),), metadata={})


def _invalid(kind: str, reason: str, metadata: Mapping[str, str] | None = None) -> Parsed:
    return Parsed(kind=kind, signals=(Invalid(bound(reason)),), metadata=dict(metadata or {}))


def hinted_kind(attributes: Mapping[str, str]) -> str:
    for key in _KIND_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and value.strip().lower() in _KIND_ALIASES:
            return _KIND_ALIASES[value.strip().lower()]
    return "unknown"


def _parse(message: Message, max_bytes: int, now: datetime) -> Parsed:
    data = message.data
    attributes = message.attributes
    hint = hinted_kind(attributes)
    dlq = dead_letter.dlq_metadata(attributes)
    if not isinstance(data, bytes | bytearray):
        return _invalid(hint, f"message data must be bytes, got {type_name(data)}", dlq)
    size = len(data) + sum(len(k) + len(v) for k, v in attributes.items())
    if size > max_bytes:
        # Refused before any decoding so that a huge payload costs nothing.
        return _invalid(hint, f"message is {size} bytes, over the limit of {max_bytes}", dlq)

    filtered = deploy.build_status_filter(attributes)
    if filtered is not None:
        return filtered
    # The original publish time when a dead-letter topic re-published the message.
    try:
        seen_at = dead_letter.base_seen_at(attributes, message.publish_time, now)
    except SignalError as err:
        return _invalid(hint, str(err), dlq)

    if not data.strip():
        if hint == patrol.KIND:
            return patrol.empty(seen_at)
        by_attribute = dead_letter.from_attributes(attributes, seen_at)
        if by_attribute is not None:
            return by_attribute
        if deploy.is_cloud_deploy(attributes):
            return deploy.parse_cloud_deploy(attributes, seen_at)
        if "buildId" in attributes:
            return _invalid("cloud-build", "Cloud Build SUCCESS message without build data", dlq)
        return _invalid(
            hint, "empty message: no data and no task attribute (task, taskName, task_name)", dlq
        )

    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as err:
        return _invalid(hint, f"data is not UTF-8: invalid byte at offset {err.start}", dlq)
    text = text.removeprefix("\ufeff")
    stripped = text.strip()

    if not stripped.startswith(("{", "[", '"')):
        if deploy.is_cloud_deploy(attributes):
            return deploy.parse_cloud_deploy(attributes, seen_at)
        # Not JSON: the only plain-text format is a bare task name.
        if stripped.startswith("projects/") or hint in ("dead-letter", "unknown"):
            return dead_letter.from_text(stripped, attributes, seen_at)
        return _invalid(hint, f"data is not JSON and not a task name (attribute kind={hint})", dlq)

    try:
        obj = load_json(stripped)
    except SignalError as err:
        if deploy.is_cloud_deploy(attributes):
            return deploy.parse_cloud_deploy(attributes, seen_at)
        return _invalid(hint, str(err), dlq)
    parsed = _parse_json(obj, attributes, seen_at, hint, dlq)
    if dlq and parsed.kind != dead_letter.KIND:
        # A dead-lettered copy of another signal keeps its delivery attributes too.
        parsed = Parsed(parsed.kind, parsed.signals, {**parsed.metadata, **dlq})
    return parsed


def _parse_json(
    obj: Any,
    attributes: Mapping[str, str],
    seen_at: datetime,
    hint: str,
    dlq: Mapping[str, str],
) -> Parsed:
    # Specific shapes first: a Build or a Task resource also has a "name" key.
    if alert.looks_like(obj):
        return alert.parse(obj, seen_at)
    if task_log.looks_like(obj, attributes):
        return task_log.parse(obj, attributes, seen_at)
    if deploy.looks_like_build(obj, attributes):
        return deploy.parse_build(obj, attributes, seen_at)
    if deploy.looks_like_plain(obj):
        return deploy.parse_plain(obj, seen_at)
    if patrol.looks_like(obj):
        return patrol.parse(obj, seen_at)
    if deploy.is_cloud_deploy(attributes) and not dead_letter.names_tasks(obj):
        return deploy.parse_cloud_deploy(attributes, seen_at)
    if dead_letter.names_tasks(obj):
        return dead_letter.from_json(obj, attributes, seen_at)
    by_attribute = dead_letter.from_attributes(attributes, seen_at)
    if by_attribute is not None:
        return by_attribute
    if isinstance(obj, dict):
        keys = ", ".join(sorted(str(k) for k in obj)[:8]) or "none"
        return _invalid(
            hint, f"no task name, alert or deploy found in the JSON object (keys: {keys})", dlq
        )
    return _invalid(hint, f"no task name, alert or deploy found in a JSON {type_name(obj)}", dlq)
