"""Resource names as the Cloud Tasks API accepts them (the grammar documented on `Task.name`).

The emulator validates names itself, as the service does, so that it depends on nothing but the
Google client libraries: a project id holds letters, digits, hyphens, colons and periods; a
location id letters, digits and hyphens; a queue id letters, digits and hyphens (at most 100); a
task id letters, digits, hyphens and underscores (at most 500).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LOCATION = r"projects/[A-Za-z0-9:.\-]{1,100}/locations/[A-Za-z0-9\-]{1,63}"
_QUEUE = re.compile(rf"(?P<parent>{_LOCATION})/queues/(?P<queue>[A-Za-z0-9\-]{{1,100}})")
_TASK = re.compile(rf"(?P<queue_name>{_QUEUE.pattern})/tasks/(?P<task>[A-Za-z0-9_\-]{{1,500}})")


class BadName(ValueError):  # noqa: N818 - the verdict on a string
    """Not a well-formed queue or task name."""


@dataclass(frozen=True)
class QueuePath:
    parent: str
    """`projects/P/locations/L`."""
    queue_id: str

    def __str__(self) -> str:
        return f"{self.parent}/queues/{self.queue_id}"


@dataclass(frozen=True)
class TaskPath:
    queue: QueuePath
    task_id: str

    @property
    def queue_name(self) -> str:
        return str(self.queue)

    def __str__(self) -> str:
        return f"{self.queue}/tasks/{self.task_id}"


def queue_path(value: str) -> QueuePath:
    match = _QUEUE.fullmatch(value)
    if match is None:
        raise BadName(f"not a queue name (projects/P/locations/L/queues/Q): {value[:200]!r}")
    return QueuePath(match["parent"], match["queue"])


def task_path(value: str) -> TaskPath:
    match = _TASK.fullmatch(value)
    if match is None:
        raise BadName(f"not a task name (projects/P/locations/L/queues/Q/tasks/T): {value[:200]!r}")
    return TaskPath(queue_path(match["queue_name"]), match["task"])
