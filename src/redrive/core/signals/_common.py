"""Small, defensive helpers shared by the format parsers (times, JSON, bounded reasons)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from redrive.core.names import InvalidName, QueueName, TaskName
from redrive.core.signals.model import SignalError

MAX_JSON_DEPTH = 64
REASON_LIMIT = 300
_VALUE_LIMIT = 80

# RFC 3339 with a mandatory offset; fractions of any length (Cloud Logging sends nanoseconds).
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?([Zz]|[+-]\d{2}:\d{2})"
)

# Cloud Run service ids (the same grammar covers gen2 function names) or full service names.
_SERVICE_ID = r"[a-z](?:[a-z0-9\-]{0,61}[a-z0-9])?"
SERVICE_RE = re.compile(
    rf"{_SERVICE_ID}|projects/[A-Za-z0-9:.\-]{{1,100}}/locations/[A-Za-z0-9\-]{{1,63}}"
    rf"/services/{_SERVICE_ID}"
)

TASK_KEYS = ("task", "taskName", "task_name", "name")
DISPATCH_COUNT_KEYS = ("dispatchCount", "dispatch_count")
TIME_KEYS = ("failedAt", "failed_at", "time")


def clip(value: object, limit: int = _VALUE_LIMIT) -> str:
    """A short, printable rendering of an offending value for a reason string."""
    text = value if isinstance(value, str) else type(value).__name__
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bound(reason: str) -> str:
    return reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 1] + "…"


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_time(value: object, what: str) -> datetime:
    """RFC 3339 with offset → aware UTC datetime; SignalError names `what` otherwise."""
    if not isinstance(value, str):
        raise SignalError(f"{what} must be an RFC 3339 string, got {type_name(value)}")
    match = _RFC3339_RE.fullmatch(value.strip())
    if match is None:
        raise SignalError(f"{what} is not an RFC 3339 time with offset: {clip(value)}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))  # truncate, never round up past the event
    iso = f"{year}-{month}-{day}T{hour}:{minute}:{second}.{micros:06d}"
    iso += "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(iso).astimezone(UTC)
    except (ValueError, OverflowError):
        raise SignalError(f"{what} is not a valid date/time: {clip(value)}") from None


def parse_epoch_s(value: object, what: str) -> datetime:
    """Epoch seconds (number or digit string) → aware UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SignalError(f"{what} must be epoch seconds, got {type_name(value)}")
    try:
        seconds = float(value)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise SignalError(f"{what} is not valid epoch seconds: {clip(str(value))}") from None


def parse_count(value: object, what: str) -> int:
    """A non-negative count given as a JSON number or (int64 in proto JSON) a digit string."""
    if isinstance(value, bool):
        raise SignalError(f"{what} must be a count, got boolean")
    if isinstance(value, int):
        count = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18
    ):
        count = int(value)
    else:
        raise SignalError(f"{what} must be a non-negative integer, got {clip(value)}")
    if count < 0 or count > 2**63 - 1:
        raise SignalError(f"{what} out of range: {count if abs(count) < 10**20 else '…'}")
    return count


def parse_task(value: object, what: str) -> TaskName:
    try:
        return TaskName.parse(value)
    except InvalidName as err:
        raise SignalError(f"{what}: {err}") from None


def parse_queue(value: object, what: str) -> QueueName:
    try:
        return QueueName.parse(value)
    except InvalidName as err:
        raise SignalError(f"{what}: {err}") from None


def optional_str(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SignalError(f"{what} must be a string, got {type_name(value)}")
    return value


def first_key(obj: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any] | None:
    for key in keys:
        if key in obj and obj[key] is not None:
            return key, obj[key]
    return None


def load_json(text: str) -> Any:
    """json.loads that turns every failure (syntax, depth, huge numbers) into SignalError."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SignalError(
            f"data is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except RecursionError:
        raise SignalError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err:  # e.g. integers beyond sys.get_int_max_str_digits()
        raise SignalError(bound(f"data is not usable JSON: {err}")) from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise SignalError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative so that depth checking itself cannot hit the recursion limit.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterator[Any] = iter(node.values())
        elif isinstance(node, list):
            children = iter(node)
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
