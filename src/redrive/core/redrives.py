"""One bulk re-drive, one id: the id, what its lines say about it, its status. Pure, no I/O.

A bulk re-drive (a sweep) gets an id derived from the signal that started it, `rd-` and twelve
hex digits of a hash of the signal's kind and message id: a redelivered message (Pub/Sub keeps its
id) is the same re-drive. The id is written into its plan, outcome and SWEEP lines
(`redrive_id`), into each of its redrive jobs (queued mode: the job body's `redrive`, so run_job's
lines carry it too) and into the owner of its claims (`msg:<id>@rd-...`). `redrive status` reads
the lines back (`records_from_text`: the functions' log files, `redrive sweep --json` output, or
`gcloud logging read --format=json`), folds them per id (`fold`), and adds what Cloud Tasks says
now: the jobs still waiting, the state of each re-run task (`settle`). `redrive cancel ID` deletes
that re-drive's waiting jobs and writes one CANCELLED line (`cancel_record`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from redrive.core.decide import SignalRef
from redrive.core.outcomes import Outcome

REDRIVE_ID_RE = re.compile(r"rd-[0-9a-f]{12}")
CANCEL_EVENT = "redrive.cancel"
PLAN_EVENT = "redrive.plan"
SWEEP_EVENT = "redrive.sweep"
OUTCOME_EVENT = "redrive.outcome"
DISPATCHED = frozenset({Outcome.DISPATCHED.value, Outcome.RECREATED.value})
"""Outcomes whose task was re-run (RunTask, or its copy made)."""


def redrive_id(signal: SignalRef) -> str | None:
    """The id of the bulk re-drive a signal starts; None for a signal without a message id (it
    cannot be told apart from another, so it gets no id rather than a shared one)."""
    if not signal.message_id:
        return None
    key = f"{signal.kind}|{signal.message_id}".encode()
    return "rd-" + hashlib.sha256(key).hexdigest()[:12]


def is_redrive_id(value: object) -> bool:
    return isinstance(value, str) and REDRIVE_ID_RE.fullmatch(value) is not None


def owner_for(owner: str, rid: str | None) -> str:
    """A claim owner that carries the re-drive's id (the same on every redelivery)."""
    return owner if rid is None else f"{owner}@{rid}"


# ---------------------------------------------------------------------------------------------
# Reading lines back


def records_from_text(text: str) -> Iterator[dict[str, Any]]:
    """redrive's records in a log: JSON lines of records (the functions' stdout, `redrive ...
    --json`), JSON lines of Cloud Logging entries, or one JSON array of entries (`gcloud logging
    read --format=json`). An entry's `jsonPayload` is the record; its `timestamp` becomes the
    record's `time` when the record has none (Cloud Logging takes `time` as the entry's own).
    Anything else is skipped."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError:
            items = None
        if isinstance(items, list):
            for item in items:
                yield from _record(item)
            return
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith(("{", "[")):
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        for one in item if isinstance(item, list) else [item]:
            yield from _record(one)


def _record(item: object) -> Iterator[dict[str, Any]]:
    if not isinstance(item, dict):
        return
    payload = item.get("jsonPayload")
    if isinstance(payload, dict):
        record = dict(payload)
        if "time" not in record and isinstance(item.get("timestamp"), str):
            record["time"] = item["timestamp"]
        item = record
    if isinstance(item.get("event"), str):
        yield item


# ---------------------------------------------------------------------------------------------
# Folding lines per re-drive


class State(StrEnum):
    PLANNED = "planned"
    """A plan line, nothing else yet."""
    IN_PROGRESS = "in progress"
    FINISHED = "finished"
    INCOMPLETE = "incomplete"
    """The sweep stopped (budget, a fault) and waits to be delivered again."""
    CANCELLED = "cancelled"
    HALTED = "halted"
    """Its canaries failed again in every queue still open: the rest was left alone."""


@dataclass
class Redrive:
    """What the lines of one re-drive say, folded in order."""

    redrive_id: str
    signal: dict[str, Any] | None = None
    mode: str | None = None
    queues: list[str] = field(default_factory=list)
    started: str | None = None
    """The first plan line's time."""
    selected: int = 0
    """The first plan's count (a redelivered direct sweep selects fewer: some are done)."""
    eta_s: float | None = None
    rate_per_s: float | None = None
    """The rate that bounds it (the plan's slowest queue)."""
    queued: set[str] = field(default_factory=set)
    """Tasks whose job this re-drive created."""
    dispatched: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task → its re-run (`run` of the outcome line: dispatch_count_after, copy)."""
    decided: set[str] = field(default_factory=set)
    """Tasks with any outcome line of this re-drive."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Outcome → tasks, by each task's latest line."""
    sweep: dict[str, Any] | None = None
    """The latest SWEEP line."""
    cancelled: dict[str, Any] | None = None
    """The CANCELLED line, when it was cancelled."""
    halted: dict[str, int | None] = field(default_factory=dict)
    """Queue → the tasks its HALTED line left alone (None: not counted)."""
    last_time: str | None = None
    _latest: dict[str, str] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        when = record.get("time")
        if isinstance(when, str):
            self.last_time = when
        if event == PLAN_EVENT:
            self._plan(record)
        elif event == SWEEP_EVENT:
            self.sweep = dict(record)
            self.signal = self.signal or record.get("signal")
            self.mode = self.mode or record.get("mode")
        elif event == CANCEL_EVENT:
            self.cancelled = dict(record)
        elif event == OUTCOME_EVENT and record.get("outcome") == Outcome.HALTED.value:
            left = record.get("left")
            self.halted[str(record.get("queue"))] = left if isinstance(left, int) else None
        elif event == OUTCOME_EVENT and isinstance(record.get("task"), str):
            self._outcome(record)

    def _plan(self, record: Mapping[str, Any]) -> None:
        if self.started is not None or self.selected:
            return  # a redelivery's plan: the first one says what was asked
        self.started = record.get("time") if isinstance(record.get("time"), str) else None
        self.signal = record.get("signal")
        self.mode = record.get("mode")
        self.queues = [str(q) for q in record.get("queues") or []]
        self.selected = int(record.get("selected") or 0)
        eta = record.get("eta_s")
        self.eta_s = float(eta) if isinstance(eta, int | float) else None
        paced = [
            q
            for q in record.get("per_queue") or []
            if isinstance(q, dict) and q.get("selected") and q.get("rate_per_s")
        ]
        if paced:
            slowest = max(paced, key=lambda q: float(q.get("eta_s") or 0.0))
            self.rate_per_s = float(slowest["rate_per_s"])

    def _outcome(self, record: Mapping[str, Any]) -> None:
        task, outcome = str(record["task"]), str(record.get("outcome"))
        if record.get("sweep"):
            self.decided.add(task)
        previous = self._latest.get(task)
        if previous is not None:
            self.outcomes[previous] -= 1
            if not self.outcomes[previous]:
                del self.outcomes[previous]
        self._latest[task] = outcome
        self.outcomes[outcome] += 1
        if outcome == Outcome.QUEUED.value:
            self.queued.add(task)
        if outcome in DISPATCHED and isinstance(record.get("run"), dict):
            self.dispatched[task] = dict(record["run"])


def fold(records: Iterable[Mapping[str, Any]]) -> dict[str, Redrive]:
    """Every re-drive the records mention, by id, in the order first seen."""
    found: dict[str, Redrive] = {}
    for record in records:
        rid = record.get("redrive_id")
        if not is_redrive_id(rid):
            continue
        assert isinstance(rid, str)
        found.setdefault(rid, Redrive(rid)).add(record)
    return found


# ---------------------------------------------------------------------------------------------
# What Cloud Tasks says now


class Rerun(StrEnum):
    """A re-run task as Cloud Tasks shows it now."""

    SUCCEEDED = "succeeded"
    """Gone: Cloud Tasks deletes a task once its attempt succeeds."""
    FAILED_AGAIN = "failed again"
    """Its forced attempt (or a later one) was answered with a failure."""
    RUNNING = "running"
    """Its forced attempt (or its copy) is still to be answered."""


def settle(run: Mapping[str, Any], now: Mapping[str, Any] | None) -> Rerun:
    """One re-run task's fate: `run` is its outcome line's `run`; `now` the task (or, for a
    re-create, its copy) as listed now (its `summary()`), None when gone."""
    if now is None:
        return Rerun.SUCCEEDED
    after = run.get("dispatch_count_after")
    count = int(now.get("dispatch_count") or 0)
    forced = 1 if run.get("copy") else int(after) if isinstance(after, int) else count
    answered = now.get("last_status") is not None and not now.get("in_flight")
    if answered and count >= forced:
        return Rerun.SUCCEEDED if now.get("last_status") == "OK" else Rerun.FAILED_AGAIN
    return Rerun.RUNNING


@dataclass(frozen=True)
class Status:
    """One re-drive's status line (`redrive status`)."""

    redrive_id: str
    state: State
    selected: int
    queued: int
    dispatched: int
    succeeded: int
    failed_again: int
    running: int
    halted: int
    """Tasks left alone because their queue's canaries failed again."""
    remaining: int
    """Still to be re-run: its jobs waiting in the redrive queue (queued mode), or the selected
    tasks the sweep has not reached (direct mode, while it runs)."""
    eta_s: float | None
    signal: dict[str, Any] | None
    mode: str | None
    queues: tuple[str, ...]
    started: str | None
    halted_queues: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {
            "redrive_id": self.redrive_id,
            "state": self.state.value,
            "selected": self.selected,
            "queued": self.queued,
            "dispatched": self.dispatched,
            "succeeded": self.succeeded,
            "failed_again": self.failed_again,
            "running": self.running,
            "halted": self.halted,
            "halted_queues": list(self.halted_queues),
            "remaining": self.remaining,
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "signal": self.signal,
            "mode": self.mode,
            "queues": list(self.queues),
            "started": self.started,
        }


def status_of(
    redrive: Redrive,
    *,
    waiting: int,
    reruns: Mapping[str, Rerun],
    rate_per_s: float | None = None,
) -> Status:
    """The status of one re-drive: its lines, the jobs still waiting with its id (`waiting`),
    the fate of its re-run tasks (`reruns`), and the rate it runs at now (else the plan's)."""
    fates = Counter(reruns.get(task, Rerun.RUNNING) for task in redrive.dispatched)
    queued_mode = redrive.mode == "queued"
    if queued_mode:
        remaining = waiting
    elif redrive.sweep is not None and redrive.sweep.get("complete"):
        remaining = 0
    else:
        remaining = max(0, redrive.selected - len(redrive.decided))
    if redrive.cancelled is not None:
        state = State.CANCELLED
        remaining = waiting
    elif redrive.sweep is None:
        state = State.PLANNED if not redrive.decided else State.IN_PROGRESS
    elif not redrive.sweep.get("complete"):
        state = State.INCOMPLETE
    elif remaining or fates[Rerun.RUNNING]:
        state = State.IN_PROGRESS
    elif redrive.halted:
        state = State.HALTED
    else:
        state = State.FINISHED
    rate = rate_per_s or redrive.rate_per_s
    eta = status_eta_s(remaining, rate) if state is not State.CANCELLED else None
    return Status(
        redrive.redrive_id,
        state,
        redrive.selected,
        len(redrive.queued),
        len(redrive.dispatched),
        fates[Rerun.SUCCEEDED],
        fates[Rerun.FAILED_AGAIN],
        fates[Rerun.RUNNING],
        sum(n or 0 for n in redrive.halted.values()),
        remaining,
        eta,
        redrive.signal,
        redrive.mode,
        tuple(redrive.queues),
        redrive.started,
        tuple(sorted(redrive.halted)),
    )


def status_eta_s(remaining: int, rate_per_s: float | None) -> float | None:
    """Seconds until the remaining tasks are re-run at the rate; None when the rate is unknown."""
    if remaining <= 0:
        return 0.0
    if not rate_per_s or rate_per_s <= 0:
        return None
    return remaining / rate_per_s


# ---------------------------------------------------------------------------------------------
# Cancel


def cancel_record(
    rid: str,
    *,
    redrive_queue: str,
    deleted: int,
    gone: int,
    failed: int,
    now: datetime,
    reasons: Iterable[str] = (),
) -> dict[str, Any]:
    """The one CANCELLED line of `redrive cancel`: how many of the re-drive's waiting jobs were
    deleted, how many were gone meanwhile (run, or running), how many could not be deleted."""
    outcome = Outcome.CANCELLED
    said = "; ".join(list(reasons)[:5])
    message = (
        f"CANCELLED {rid}: {deleted} waiting job(s) deleted from {redrive_queue}"
        + (f", {gone} gone meanwhile (run or running)" if gone else "")
        + (f", {failed} could not be deleted: {said}" if failed else "")
        + "; their tasks keep their own Cloud Tasks retries"
    )
    return {
        "event": CANCEL_EVENT,
        "severity": "ERROR" if failed else outcome.severity,
        "message": message[:1000],
        "outcome": outcome.value,
        "redrive_id": rid,
        "redrive_queue": redrive_queue,
        "deleted": deleted,
        "gone": gone,
        "failed": failed,
        "time": now.isoformat().replace("+00:00", "Z"),
        "labels": {"outcome": outcome.value, "component": "redrive"},
    }
