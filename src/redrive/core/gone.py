"""Which kind of NOT_FOUND Cloud Tasks answered for a task: pure, no I/O.

GetTask (and RunTask, DeleteTask) on a missing task answers NOT_FOUND with one of three texts:

- "The task no longer exists, though a task with this name existed recently. The task either
  successfully completed or was deleted.": the name was in use within the de-duplication window
  (about an hour): the task succeeded, used up its retries, or somebody deleted it;
- "Requested entity was not found.": no task of this name now or within that window: the name
  never existed (a typo, another queue) or the task has been gone for longer;
- "Queue does not exist. ...": the task's queue itself is missing.

`classify_not_found` tells them apart from the answer's text, so that an outcome line never says
"completed" of a name that never existed.
"""

from __future__ import annotations

from enum import StrEnum


class Gone(StrEnum):
    """What a NOT_FOUND answer says about the task (the outcome line's `not_found`)."""

    EXISTED_RECENTLY = "existed_recently"
    """A task of this name existed within the de-duplication window: it completed (succeeded or
    used up its retries) or was deleted."""
    NEVER_OR_LONG_AGO = "never_or_long_ago"
    """No task of this name now or within the window: a wrong name, or gone for longer."""
    QUEUE_MISSING = "queue_missing"
    """The task's queue does not exist."""


EXISTED_RECENTLY_TEXT = "existed recently"
QUEUE_MISSING_TEXT = "queue does not exist"


def classify_not_found(text: str) -> Gone:
    """The kind of NOT_FOUND a Cloud Tasks answer's text describes (case-blind).

    Anything that names neither a recent task nor a missing queue ("Requested entity was not
    found.", or a text this code does not know) is taken for a name not seen recently: saying
    "completed" of it would be the one claim that can mislead.
    """
    lowered = text.lower()
    if EXISTED_RECENTLY_TEXT in lowered:
        return Gone.EXISTED_RECENTLY
    if QUEUE_MISSING_TEXT in lowered:
        return Gone.QUEUE_MISSING
    return Gone.NEVER_OR_LONG_AGO


_REASONS = {
    Gone.EXISTED_RECENTLY: (
        "task no longer exists, but a task of this name existed recently (within Cloud Tasks' "
        "de-duplication window, about an hour): it completed (succeeded or used up its "
        "retries) or was deleted"
    ),
    Gone.NEVER_OR_LONG_AGO: (
        "no task of this name exists, nor did one within Cloud Tasks' de-duplication window "
        "(about an hour): check the name (a typo, another queue), or the task has been gone "
        "for longer than that"
    ),
    Gone.QUEUE_MISSING: "the task's queue does not exist: check the queue name",
}
UNKNOWN_REASON = "task no longer exists (completed, permanently failed or never existed)"
"""When the NOT_FOUND answer's text is not at hand."""


def not_found_reason(gone: Gone | None) -> str:
    """The outcome reason for a NOT_FOUND of this kind (None: the kind is not known)."""
    return UNKNOWN_REASON if gone is None else _REASONS[gone]
