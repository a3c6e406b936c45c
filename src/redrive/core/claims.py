"""Claims: at most one forced run per failure, and per task and fix, recorded in Cloud Tasks itself.

CreateTask with an explicit name answers ALREADY_EXISTS while a task of that name exists and for
about an hour after it is deleted: a named task is a compare-and-set register. The claims queue
(REDRIVE_CLAIMS_QUEUE) is kept paused and its tasks are scheduled weeks ahead, so they never run;
they are markers, written once, read with the FULL view (their body says who wrote them):

- **rung** `(failure, k)`: "delivery X makes forced-run attempt k for this failure" (a failure is
  the task and its failed attempt's dispatch count). Holding rung k is the right to call RunTask
  once. Rung 1 is the claim; later rungs exist because an attempt can end without a dispatch.
- **end** `(failure, k)`: "attempt k ended without dispatching" (the quota, a refusal; for a
  re-create: its copy withdrawn): rung k+1 may be taken at once, by the same delivery when it
  comes back or by another.
- **stays** `(failure, k)`: "attempt k's copy could not be withdrawn after all" (re-create): the
  end marker notwithstanding, the copy carries the work and the original must be deleted.
- **fix** `(task, fix)`: "this task was force-run under this fix, for failure n". A later failure
  of the same task under the same fix is not forced again: the fix did not help.
- **checkpoint** `(sweep, queue, page)`: "a queued sweep of this signal has every selected task of
  pages 1..page holding its job; the next page starts at this token". A redelivered sweep resumes
  there instead of re-creating every job it already has.

A rung whose attempt has neither ended nor shown in the task's state is judged by its age: younger
than the window (twice the RPC timeout), its RunTask may still be running on the service, so the
owner waits (DEFERRED) and anybody else stands aside (SKIPPED_DUPLICATE); older, its RunTask has
either dispatched (the task's dispatch count says so) or never will, and the next rung may be
taken. This module is pure: names, bodies and verdicts; redrive.adapters.claims does the calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redrive.core.config import parse_time
from redrive.core.decide import FixEvidence
from redrive.core.names import QueueName, TaskName

MARKER_VERSION = 1
MAX_RUNGS = 20
"""Forced-run attempts per failure. Each needs the previous one to have provably not dispatched
(an end marker, or its window passed with the task unchanged), so this bounds a failure that
keeps meeting the quota, not a failure that keeps running."""
MARKER_URL = "https://claims.redrive.invalid/never-dispatched"
"""Claim markers need an HTTP request to be tasks; they sit in a paused queue and never run. Should
the queue be resumed by mistake, this address resolves nowhere and the marker fails harmlessly."""
_TASK_ID_MAX = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class Kind(StrEnum):
    RUNG = "rung"
    END = "end"
    FIX = "fix"
    CHECKPOINT = "checkpoint"
    STAYS = "stays"


@dataclass(frozen=True)
class FailureKey:
    """One failure: the task and its failed attempt's dispatch count."""

    task: TaskName
    dispatch_count: int


@dataclass(frozen=True)
class Marker:
    """The body of one claim marker."""

    kind: Kind
    task: TaskName
    dispatch_count: int
    owner: str
    fix: str
    at: datetime
    rung: int | None = None
    note: str | None = None

    def to_json(self) -> bytes:
        data = {
            "v": MARKER_VERSION,
            "kind": self.kind.value,
            "task": str(self.task),
            "dispatch_count": self.dispatch_count,
            "owner": self.owner,
            "fix": self.fix,
            "at": self.at.isoformat(),
            "rung": self.rung,
            "note": self.note,
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def parse(cls, body: bytes) -> Marker | None:
        """The marker a body holds, or None when it is not one of ours (never raises)."""
        try:
            data = json.loads(body.decode("utf-8"))
            if not isinstance(data, dict) or data.get("v") != MARKER_VERSION:
                return None
            rung = data.get("rung")
            return cls(
                Kind(data["kind"]),
                TaskName.parse(data["task"]),
                int(data["dispatch_count"]),
                str(data["owner"]),
                str(data["fix"]),
                parse_time(str(data["at"])),
                int(rung) if rung is not None else None,
                str(data["note"]) if data.get("note") is not None else None,
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            return None


def fix_identity(evidence: FixEvidence | None) -> str:
    """What makes two pieces of fix evidence the same fix (the fix marker's key)."""
    if evidence is None or evidence.strategy == "none":
        return "none"
    if evidence.revision:
        return f"{evidence.strategy}:{evidence.revision}"
    live = evidence.live_since.isoformat() if evidence.live_since else "unknown"
    return f"{evidence.strategy}:{live}"


def needs_fix_marker(evidence: FixEvidence | None) -> bool:
    """Whether "once per task and fix" needs a fix marker, or holds by itself.

    Evidence with a time (a revision's, a deploy's, a static one) covers a failure only when the
    fix went live after the failed attempt. A forced run happens after the fix went live, so any
    failure after it is newer than the fix and no longer covered: the time rule alone forbids a
    second forced run under that fix. Evidence without a time (REDRIVE_FIX_CHECK=none) covers
    every failure, so only a fix marker stops a task that keeps failing from being forced again.
    """
    return evidence is None or evidence.strategy == "none" or evidence.live_since is None


def _marker_id(kind: Kind, key: str, readable: str) -> str:
    """A hash first (Cloud Tasks advises against sequential name prefixes), then a readable tail,
    within the 500-character task id grammar however long the task's own name is."""
    digest = hashlib.sha256(f"{kind.value}|{key}".encode()).hexdigest()[:24]
    head = f"{digest}-{kind.value}-"
    return head + _UNSAFE.sub("_", readable)[: _TASK_ID_MAX - len(head)]


def rung_name(queue: QueueName, failure: FailureKey, rung: int) -> str:
    key = f"{failure.task}|{failure.dispatch_count}|{rung}"
    tail = f"{failure.task.queue}-{failure.task.task}-d{failure.dispatch_count}-r{rung}"
    return f"{queue}/tasks/{_marker_id(Kind.RUNG, key, tail)}"


def end_name(queue: QueueName, failure: FailureKey, rung: int) -> str:
    key = f"{failure.task}|{failure.dispatch_count}|{rung}"
    tail = f"{failure.task.queue}-{failure.task.task}-d{failure.dispatch_count}-r{rung}"
    return f"{queue}/tasks/{_marker_id(Kind.END, key, tail)}"


def stays_name(queue: QueueName, failure: FailureKey, rung: int) -> str:
    key = f"{failure.task}|{failure.dispatch_count}|{rung}"
    tail = f"{failure.task.queue}-{failure.task.task}-d{failure.dispatch_count}-r{rung}"
    return f"{queue}/tasks/{_marker_id(Kind.STAYS, key, tail)}"


def fix_name(queue: QueueName, task: TaskName, fix: str) -> str:
    return f"{queue}/tasks/{_marker_id(Kind.FIX, f'{task}|{fix}', f'{task.queue}-{task.task}')}"


def checkpoint_name(queue: QueueName, sweep: str, swept: QueueName, page: int) -> str:
    key = f"{sweep}|{swept}|{page}"
    return f"{queue}/tasks/{_marker_id(Kind.CHECKPOINT, key, f'{swept.queue}-p{page}')}"


@dataclass(frozen=True)
class Checkpoint:
    """How far a queued sweep has got in one queue: pages done, and where the next one starts."""

    sweep: str
    queue: QueueName
    page: int
    next_token: str
    at: datetime

    def to_json(self) -> bytes:
        data = {
            "v": MARKER_VERSION,
            "kind": Kind.CHECKPOINT.value,
            "sweep": self.sweep,
            "queue": str(self.queue),
            "page": self.page,
            "next_token": self.next_token,
            "at": self.at.isoformat(),
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint | None:
        try:
            data = json.loads(body.decode("utf-8"))
            if not isinstance(data, dict) or data.get("kind") != Kind.CHECKPOINT.value:
                return None
            return cls(
                str(data["sweep"]),
                QueueName.parse(data["queue"]),
                int(data["page"]),
                str(data["next_token"]),
                parse_time(str(data["at"])),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
            return None


class Step(StrEnum):
    """What to do about a rung that is already taken."""

    NEXT = "NEXT"
    """Its attempt provably did not dispatch (an end marker): try the next rung."""
    WAIT = "WAIT"
    """Ours, too young to judge: its RunTask may still be running. Come back later."""
    YIELD = "YIELD"
    """Somebody else's, too young to judge: stand aside (they come back if they must)."""
    RECHECK = "RECHECK"
    """Old enough: read the task; unchanged means the attempt never dispatched (try the next
    rung), changed means it did."""


def judge_rung(
    rung: Marker | None,
    *,
    ended: bool,
    owner: str,
    taken_at: datetime | None,
    now: datetime,
    window_s: float,
) -> Step:
    """The verdict on a taken rung. `rung` None: the marker exists but cannot be read (purged, or
    not ours): its age is unknown, so the task's state decides."""
    if ended:
        return Step.NEXT
    if rung is None or taken_at is None:
        return Step.RECHECK
    if (now - taken_at).total_seconds() < window_s:
        return Step.WAIT if rung.owner == owner else Step.YIELD
    return Step.RECHECK
