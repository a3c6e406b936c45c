"""CloudEvent data (Eventarc's MessagePublishedData, or functions-framework's conversion of a raw
Pub/Sub push body) → `Message`. The two shapes differ only in spelling and optional keys."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from redrive.core.signals._common import clip, parse_time, type_name
from redrive.core.signals.model import Message, SignalError

_B64_RE = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def decode_base64(value: str) -> bytes:
    """Standard or URL-safe base64, padding optional; anything else is a SignalError."""
    text = value.strip()
    if _B64_RE.fullmatch(text) is None:
        raise SignalError("message.data is not base64: characters outside the base64 alphabet")
    body = text.rstrip("=")
    if len(body) % 4 == 1:
        raise SignalError(f"message.data is not base64: impossible length {len(body)}")
    padded = body + "=" * (-len(body) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as err:
        raise SignalError(f"message.data is not base64: {err}") from None


def message_from_event(
    data: Mapping[str, Any] | None,
    attributes_from_ce: Mapping[str, str] | None = None,
    ce_id: str | None = None,
    ce_time: str | None = None,
) -> Message:
    """Build a Message from a CloudEvent's `data`.

    Attributes given by the CloudEvent (`attributes_from_ce`) are a base that the message's own
    attributes override. Message id and publish time fall back to the CloudEvent's id and time.
    Raises SignalError with a precise reason on a wrong shape or bad base64.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SignalError(f"event data must be a JSON object, got {type_name(data)}")
    msg = data.get("message")
    if msg is None:
        raise SignalError("event data has no 'message' (not a Pub/Sub MessagePublishedData)")
    if not isinstance(msg, Mapping):
        raise SignalError(f"event data 'message' must be an object, got {type_name(msg)}")

    raw = msg.get("data")
    if raw is None or raw == "":
        payload = b""
    elif isinstance(raw, str):
        payload = decode_base64(raw)
    else:
        raise SignalError(f"message.data must be a base64 string, got {type_name(raw)}")

    attributes: dict[str, str] = {}
    for source, what in (
        (attributes_from_ce, "CloudEvent attributes"),
        (msg.get("attributes"), "message.attributes"),
    ):
        if source is None:
            continue
        if not isinstance(source, Mapping):
            raise SignalError(f"{what} must be an object, got {type_name(source)}")
        for key, value in source.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SignalError(
                    f"{what} must map strings to strings; {clip(key)} has a {type_name(value)}"
                )
            attributes[key] = value

    message_id = _first_str(msg, ("messageId", "message_id"), "message.messageId")
    if message_id is None:
        message_id = ce_id or ""

    published = _first_str(msg, ("publishTime", "publish_time"), "message.publishTime")
    if published is None:
        published = ce_time
    publish_time = parse_time(published, "message.publishTime") if published else None

    subscription = data.get("subscription")
    if subscription is not None and not isinstance(subscription, str):
        raise SignalError(
            f"event data 'subscription' must be a string, got {type_name(subscription)}"
        )

    return Message(
        data=payload,
        attributes=attributes,
        message_id=message_id,
        publish_time=publish_time,
        subscription=subscription or None,
    )


def _first_str(msg: Mapping[str, Any], keys: tuple[str, ...], what: str) -> str | None:
    for key in keys:
        value = msg.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise SignalError(f"{what} must be a string, got {type_name(value)}")
        return str(value)
    return None
