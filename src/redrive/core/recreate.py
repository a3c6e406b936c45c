"""Re-create re-drive, the pure parts: the copy's name, which fields a copy keeps, and which method
a bulk re-drive uses.

RunTask is a debugging call limited to about 60 a minute per project; CreateTask and DeleteTask
share the API's 6,000,000 a minute, and a queue dispatches up to 500 tasks a second. Re-creating a
failed task as a new task due now, then deleting the original, re-drives at the queue's own speed,
throttled by the queue's own rate limits. The target sees a new task name
(`X-CloudTasks-TaskName`) and retry counters that start again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from redrive.core.names import TaskName

_COPY_SUFFIX = re.compile(r"--rc[0-9a-f]{12}$")
_TASK_ID_MAX = 500
OUTPUT_ONLY = (
    "name",
    "schedule_time",
    "create_time",
    "dispatch_count",
    "response_count",
    "first_attempt",
    "last_attempt",
    "view",
)
"""Task fields a copy does not take from its original (set by the service, or by the copy)."""


class Method(StrEnum):
    """How a bulk re-drive acts on each selected task."""

    RUN = "run"
    """RunTask: the task keeps its name and counters; about 60 a minute per project."""
    RECREATE = "recreate"
    """A copy due now, the original deleted: at the queue's own dispatch rate."""
    AUTO = "auto"
    """RunTask while the work fits the RunTask quota within REDRIVE_AUTO_RUN_WITHIN_S; else
    re-create."""


def copy_name(original: TaskName, dispatch_count: int, rung: int = 1) -> TaskName:
    """The copy's deterministic name, one per failure and claim rung: a retried CreateTask meets
    ALREADY_EXISTS instead of making a second copy, and a copy withdrawn on one rung (its name
    then taken for about an hour) never blocks the next rung's. The original's id without any
    earlier copy suffix, then `--rc` and a hash, so names stay within 500 characters however
    often a task is re-created."""
    base = _COPY_SUFFIX.sub("", original.task)
    key = f"{original}|{dispatch_count}|{rung}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    suffix = f"--rc{digest}"
    return original.queue_name.task(base[: _TASK_ID_MAX - len(suffix)] + suffix)


def original_id(task: TaskName) -> str:
    """The task id a line of copies started from (a copy's id without its suffix)."""
    return _COPY_SUFFIX.sub("", task.task)


@dataclass(frozen=True)
class MethodChoice:
    method: Method
    why: str


def choose_method(
    configured: Method,
    *,
    selected: int,
    complete: bool,
    run_quota_per_min: float,
    run_within_s: float,
) -> MethodChoice:
    """The method a bulk re-drive of one queue uses, once its first page is known.

    `selected`: tasks selected so far; `complete`: True when that is all of them (a single page).
    `auto` runs when every selected task fits the RunTask quota within `run_within_s`.
    """
    if configured is not Method.AUTO:
        return MethodChoice(configured, f"REDRIVE_METHOD (or the queue's override) is {configured}")
    fits = int(run_quota_per_min * run_within_s / 60)
    if complete and selected <= fits:
        return MethodChoice(
            Method.RUN,
            f"auto: {selected} task(s) fit the RunTask quota ({run_quota_per_min:g}/min) within "
            f"{run_within_s:g}s",
        )
    more = "" if complete else "+"
    return MethodChoice(
        Method.RECREATE,
        f"auto: {selected}{more} task(s) are more than the {fits} the RunTask quota "
        f"({run_quota_per_min:g}/min) runs within {run_within_s:g}s",
    )
