"""Signals: every trigger format redrive understands, parsed purely (no I/O, never raises).

`message_from_event` turns a CloudEvent's data into a `Message`; `parse_message` turns a `Message`
into a `Parsed` holding task failures, queue alerts, deploys, or ignored/invalid verdicts.
"""

from redrive.core.signals.event import message_from_event
from redrive.core.signals.model import (
    Deploy,
    Ignored,
    Invalid,
    Message,
    Parsed,
    Patrol,
    QueueAlert,
    Signal,
    SignalError,
    TaskFailure,
)
from redrive.core.signals.parser import parse_message

__all__ = [
    "Deploy",
    "Ignored",
    "Invalid",
    "Message",
    "Parsed",
    "Patrol",
    "QueueAlert",
    "Signal",
    "SignalError",
    "TaskFailure",
    "message_from_event",
    "parse_message",
]
