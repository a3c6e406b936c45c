"""The patrol: a scheduled message (Cloud Scheduler on the signals topic) that asks redrive to look
for tasks about to use their last attempt and park them.

    {"patrol": {}}                                  every allowed queue
    {"patrol": {"queues": ["projects/p/locations/l/queues/q", ...]}}

An empty message whose `redrive-kind` attribute is `patrol` means the same as `{"patrol": {}}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redrive.core.signals._common import bound, parse_queue, type_name
from redrive.core.signals.model import Invalid, Parsed, Patrol, SignalError

KIND = "patrol"
SOURCE = "patrol"
_KEYS = frozenset({"queues"})


def looks_like(obj: Any) -> bool:
    return isinstance(obj, dict) and "patrol" in obj


def parse(obj: dict[str, Any], seen_at: datetime) -> Parsed:
    try:
        return Parsed(KIND, (_patrol(obj["patrol"], seen_at),), {})
    except SignalError as err:
        return Parsed(KIND, (Invalid(bound(str(err))),), {})


def empty(seen_at: datetime) -> Parsed:
    return Parsed(KIND, (Patrol(seen_at, SOURCE),), {})


def _patrol(body: Any, seen_at: datetime) -> Patrol:
    if body is True or body is None:
        body = {}
    if not isinstance(body, dict):
        raise SignalError(f"'patrol' must be an object, got {type_name(body)}")
    unknown = sorted(str(key) for key in body if key not in _KEYS)
    if unknown:
        raise SignalError(f"'patrol' has unknown fields: {', '.join(unknown)[:200]}")
    raw = body.get("queues")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise SignalError(f"patrol.queues must be an array, got {type_name(raw)}")
    queues = tuple(dict.fromkeys(parse_queue(item, "patrol.queues") for item in raw))
    return Patrol(seen_at, SOURCE, queues)
