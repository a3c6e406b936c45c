"""Resource names as the Cloud Tasks API accepts them (the grammar documented on `Task.name`).

The emulator validates names itself, as the service does, so that it depends on nothing but the
Google client libraries: a project id holds letters, digits, hyphens, colons and periods; a
location id letters, digits and hyphens; a queue id letters, digits and hyphens (at most 100); a
task id letters, digits, hyphens and underscores (at most 500).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.rpc import error_details_pb2

_LOCATION = r"projects/[A-Za-z0-9:.\-]{1,100}/locations/[A-Za-z0-9\-]{1,63}"
_QUEUE = re.compile(rf"(?P<parent>{_LOCATION})/queues/(?P<queue>[A-Za-z0-9\-]{{1,100}})")
_TASK = re.compile(rf"(?P<queue_name>{_QUEUE.pattern})/tasks/(?P<task>[A-Za-z0-9_\-]{{1,500}})")


_TASK_ID = re.compile(r"[A-Za-z0-9_\-]{1,500}")
_REFERENCE = "https://cloud.google.com/tasks/docs/reference/rest/v2"

# The real service's texts (captured by others against Cloud Tasks, see docs/emulator.md).
QUEUE_NAME_FORMAT = (
    'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
    '<QUEUE_ID>".'
)
TASK_NAME_FORMAT = (
    'Task name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/'
    '<QUEUE_ID>/tasks/<TASK_ID>".'
)


def task_id_message(task_id: str) -> str:
    return (
        f'Task ID "{task_id}" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), '
        "or underscores (_). Task ID must between 1 and 500 characters."
    )


def _help(description: str, anchor: str) -> error_details_pb2.Help:
    return error_details_pb2.Help(
        links=[error_details_pb2.Help.Link(description=description, url=_REFERENCE + anchor)]
    )


QUEUE_NAME_HELP = _help("Definition of queue name", "/projects.locations.queues#Queue.FIELDS.name")
TASK_ID_HELP = _help("Definition of task ID", "/projects.locations.queues.tasks#Task.FIELDS.name")


class BadName(ValueError):  # noqa: N818 - the verdict on a string
    """Not a well-formed queue or task name; `message` and `help` are what the service answers."""

    def __init__(self, message: str, help_link: error_details_pb2.Help) -> None:
        super().__init__(message)
        self.message = message
        self.help = help_link


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
        raise BadName(QUEUE_NAME_FORMAT, QUEUE_NAME_HELP)
    return QueuePath(match["parent"], match["queue"])


def task_path(value: str) -> TaskPath:
    match = _TASK.fullmatch(value)
    if match is not None:
        return TaskPath(queue_path(match["queue_name"]), match["task"])
    queue_part, sep, task_id = value.rpartition("/tasks/")
    if sep and _QUEUE.fullmatch(queue_part) and not _TASK_ID.fullmatch(task_id):
        raise BadName(task_id_message(task_id), TASK_ID_HELP)  # only the id is wrong
    raise BadName(TASK_NAME_FORMAT, TASK_ID_HELP)
