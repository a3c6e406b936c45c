"""Cloud Tasks resource names, validated against the API's grammar.

The grammar is the one documented on `Task.name` (v2 and v2beta3): project ids may hold letters,
digits, hyphens, colons (domain-scoped projects) and periods; location ids letters, digits and
hyphens; queue ids letters, digits and hyphens (at most 100); task ids letters, digits, hyphens and
underscores (at most 500). The client's own `parse_task_path` is deliberately permissive (`.+?`),
so redrive never relies on it: anything that does not match exactly is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROJECT_RE = r"[A-Za-z0-9:.\-]{1,100}"
LOCATION_RE = r"[A-Za-z0-9\-]{1,63}"
QUEUE_ID_RE = r"[A-Za-z0-9\-]{1,100}"
TASK_ID_RE = r"[A-Za-z0-9_\-]{1,500}"

QUEUE_NAME_RE = re.compile(
    rf"projects/({PROJECT_RE})/locations/({LOCATION_RE})/queues/({QUEUE_ID_RE})"
)
TASK_NAME_RE = re.compile(
    rf"projects/({PROJECT_RE})/locations/({LOCATION_RE})/queues/({QUEUE_ID_RE})/tasks/({TASK_ID_RE})"
)
# For finding a task name inside free text (alert summaries): bounded on both sides so that a
# longer run of name characters is never silently cut into a shorter, different name.
TASK_NAME_IN_TEXT_RE = re.compile(
    rf"(?<![A-Za-z0-9:._/\-])projects/{PROJECT_RE}/locations/{LOCATION_RE}"
    rf"/queues/{QUEUE_ID_RE}/tasks/{TASK_ID_RE}(?![A-Za-z0-9_\-/])"
)


class InvalidName(ValueError):  # noqa: N818 (reads as the verdict it is)
    """A string that is not a well-formed Cloud Tasks queue or task name."""


@dataclass(frozen=True, order=True)
class QueueName:
    """`projects/P/locations/L/queues/Q`."""

    project: str
    location: str
    queue: str

    @classmethod
    def parse(cls, value: object) -> QueueName:
        if not isinstance(value, str):
            raise InvalidName(f"queue name must be a string, got {type(value).__name__}")
        match = QUEUE_NAME_RE.fullmatch(value)
        if match is None:
            raise InvalidName(
                f"not a queue name (want projects/P/locations/L/queues/Q): {_clip(value)!r}"
            )
        return cls(*match.groups())

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def task(self, task_id: str) -> TaskName:
        return TaskName.parse(f"{self}/tasks/{task_id}")

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/queues/{self.queue}"


@dataclass(frozen=True, order=True)
class TaskName:
    """`projects/P/locations/L/queues/Q/tasks/T`."""

    project: str
    location: str
    queue: str
    task: str

    @classmethod
    def parse(cls, value: object) -> TaskName:
        if not isinstance(value, str):
            raise InvalidName(f"task name must be a string, got {type(value).__name__}")
        match = TASK_NAME_RE.fullmatch(value)
        if match is None:
            raise InvalidName(
                "not a task name (want projects/P/locations/L/queues/Q/tasks/T with the API's "
                f"character sets): {_clip(value)!r}"
            )
        return cls(*match.groups())

    @property
    def queue_name(self) -> QueueName:
        return QueueName(self.project, self.location, self.queue)

    def __str__(self) -> str:
        return f"{self.queue_name}/tasks/{self.task}"


def is_task_name(value: object) -> bool:
    return isinstance(value, str) and TASK_NAME_RE.fullmatch(value) is not None


def _clip(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[:limit] + "…"
