"""Select by the error that was fixed: which last-attempt statuses a bulk re-drive takes. Pure.

A fix usually mends one failure mode: the 500s of a bug, the 503s of an overloaded dependency.
Tasks that failed for another reason (a 404 for a record that does not exist, a 400 for a bad
payload) would only fail again. A `StatusFilter` names what to re-drive, as a comma-separated
list (or a list of items):

- `500`, `503`: an HTTP status the target answered (300-599);
- `5xx`, `4xx`, `3xx`: an HTTP class;
- `UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED`, ...: a google.rpc code name, as Cloud Tasks
  records the attempt's `response_status` (case-blind);
- `any` alone: every failure (overrides a configured default).

The HTTP status is read from the attempt's status message ("HTTP status code 503"), the only
place Cloud Tasks keeps it. An attempt without an HTTP answer (the target unreachable: UNKNOWN;
the dispatch deadline: DEADLINE_EXCEEDED) has none: only its code name can select it. The
status code name is never mapped back to an HTTP status, because the mapping is not one to one
(every 5xx but 501, 503 and 504 is INTERNAL).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from redrive.core.state import STATUS_NAMES, TaskState

ANY = "any"
HTTP_IN_MESSAGE = re.compile(r"\bHTTP(?:\s+status)?(?:\s+code)?\s*[:=]?\s*([1-5][0-9]{2})\b", re.I)
"""Where an attempt's status message names the HTTP answer: "HTTP status code 503"."""
_CODE_NAMES = frozenset(name for code, name in STATUS_NAMES.items() if code != 0)
_CLASS = re.compile(r"([345])xx", re.I)
_HTTP = re.compile(r"[0-9]{3}")
MAX_ITEMS = 64


class StatusFilterError(ValueError):
    """A status list redrive cannot read; the message says which item and what is accepted."""


@dataclass(frozen=True)
class StatusFilter:
    """The last-attempt statuses a bulk re-drive takes (`everything`: no filter at all)."""

    names: frozenset[str] = frozenset()
    """google.rpc code names (UNAVAILABLE, INTERNAL, ...)."""
    http: frozenset[int] = frozenset()
    """HTTP statuses (500, 503, ...)."""
    classes: frozenset[int] = frozenset()
    """HTTP classes by their first digit (5 for 5xx)."""
    everything: bool = False

    @classmethod
    def parse(cls, raw: str | Iterable[str], what: str = "statuses") -> StatusFilter:
        """From `500,503,5xx,UNAVAILABLE` (or a list of such strings); raises StatusFilterError
        naming `what` and the item at fault."""
        parts = [raw] if isinstance(raw, str) else list(raw)
        items = [item.strip() for part in parts for item in str(part).split(",") if item.strip()]
        if not items:
            raise StatusFilterError(
                f"{what} names no status: give HTTP statuses (500), classes (5xx), google.rpc "
                "code names (UNAVAILABLE) or `any`"
            )
        if len(items) > MAX_ITEMS:
            raise StatusFilterError(f"{what} names {len(items)} statuses, more than {MAX_ITEMS}")
        if any(item.lower() == ANY for item in items):
            if len(items) > 1:
                raise StatusFilterError(f"{what}: `any` stands alone (it means every failure)")
            return cls(everything=True)
        names: set[str] = set()
        http: set[int] = set()
        classes: set[int] = set()
        for item in items:
            shown = item if len(item) <= 40 else item[:40] + "..."
            if _HTTP.fullmatch(item):
                status = int(item)
                if not 300 <= status <= 599:
                    raise StatusFilterError(
                        f"{what}: {shown!r} is not a failed HTTP status (300 to 599; a 2xx "
                        "answer is a success)"
                    )
                http.add(status)
            elif match := _CLASS.fullmatch(item):
                classes.add(int(match.group(1)))
            elif item.upper() in _CODE_NAMES:
                names.add(item.upper())
            else:
                raise StatusFilterError(
                    f"{what}: {shown!r} is not an HTTP status (500), an HTTP class (5xx) or a "
                    f"google.rpc code name ({', '.join(sorted(_CODE_NAMES))})"
                )
        return cls(frozenset(names), frozenset(http), frozenset(classes))

    def matches(self, state: TaskState) -> bool:
        """True when the task's last attempt failed with a status this filter names."""
        if self.everything:
            return True
        if state.last_status in self.names:
            return True
        status = http_status(state)
        return status is not None and (status in self.http or status // 100 in self.classes)

    def __str__(self) -> str:
        """The canonical form: HTTP statuses, classes, then code names, each sorted."""
        if self.everything:
            return ANY
        return ",".join(
            [str(s) for s in sorted(self.http)]
            + [f"{c}xx" for c in sorted(self.classes)]
            + sorted(self.names)
        )


def http_status(state: TaskState) -> int | None:
    """The HTTP status of the task's last attempt, when its status message names one."""
    if not state.last_failed or not state.last_status_message:
        return None
    match = HTTP_IN_MESSAGE.search(state.last_status_message)
    return int(match.group(1)) if match else None


def status_label(state: TaskState) -> str:
    """How a plan counts a task's last status: `INTERNAL (HTTP 502)`, or the code name alone
    when no HTTP answer is known (`UNKNOWN`)."""
    name = state.last_status or "none"
    status = http_status(state)
    return name if status is None else f"{name} (HTTP {status})"
