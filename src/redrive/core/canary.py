"""Canaries: a bulk re-drive re-runs a few tasks of a queue first and goes on only when their
forced attempts did not fail again. Pure: the fate of one canary, the verdict on all of them, and
the gate job that carries the verdict in queued mode. No I/O.

Why per queue: each queue feeds one target, and a deploy may fix one target and not another;
canaries from one queue say nothing of the next. Why the rule is what it is:

- a canary is *answered* once Cloud Tasks shows an attempt at or after its forced one that is
  over: the task gone (Cloud Tasks deletes a task when an attempt succeeds) is a success, a newer
  answered failure is a failure again, with its status;
- `failures_to_halt` failed canaries halt the queue at once: nothing else of it is touched, its
  tasks keep Cloud Tasks' own retries (or stay parked);
- every canary answered without that many failures releases the rest;
- at the timeout, the rest is released only when at least one canary succeeded: a target that
  answers nothing (it hangs, or its queue is paused) is not flooded on the strength of silence.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redrive.core.config import MAX_CANARIES, parse_time
from redrive.core.decide import SignalRef
from redrive.core.errors import InvalidJobError
from redrive.core.names import InvalidName, QueueName, TaskName
from redrive.core.state import TaskState
from redrive.core.statuses import StatusFilter, StatusFilterError, status_label

GATE_VERSION = 1


class Fate(StrEnum):
    """One canary as Cloud Tasks shows it now."""

    SUCCEEDED = "succeeded"
    FAILED_AGAIN = "failed_again"
    WAITING = "waiting"
    """Its forced attempt is not over yet (or not dispatched yet: a job still waiting)."""


@dataclass(frozen=True)
class Canary:
    """A task re-driven first, and what to watch to know how its forced attempt went."""

    watch: TaskName
    """The task that carries the work now: the task itself (RunTask), its copy (re-create) or
    the task created again from a parked copy (restore)."""
    answered_from: int
    """The dispatch count from which an answered attempt is the forced one (or later): the failed
    attempt's count + 1 for RunTask, 1 for a new task."""
    origin: TaskName | None = None
    """The task the canary re-drives, when `watch` is another name."""

    def fields(self) -> dict[str, Any]:
        return {
            "watch": str(self.watch),
            "answered_from": self.answered_from,
            "origin": None if self.origin is None else str(self.origin),
        }


def fate_of(canary: Canary, now: TaskState | None) -> tuple[Fate, str | None]:
    """The canary's fate from `now` (the watched task as GetTask shows it; None when gone), with
    the failed status (`INTERNAL (HTTP 500)`) when it failed again."""
    if now is None:
        return Fate.SUCCEEDED, None
    if now.dispatch_count < canary.answered_from or now.in_flight:
        return Fate.WAITING, None
    if now.last_status_code is None:
        return Fate.WAITING, None
    if not now.last_failed:
        return Fate.SUCCEEDED, None
    return Fate.FAILED_AGAIN, status_label(now)


class Verdict(StrEnum):
    RELEASE = "release"
    HALT = "halt"
    WAIT = "wait"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    succeeded: int
    failed: int
    waiting: int
    statuses: dict[str, int]
    """Failed canaries by status (`INTERNAL (HTTP 500)` → 2)."""

    def fields(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "succeeded": self.succeeded,
            "failed_again": self.failed,
            "waiting": self.waiting,
            "statuses": dict(self.statuses),
        }


def judge(
    fates: Sequence[tuple[Fate, str | None]],
    *,
    failures_to_halt: int,
    timed_out: bool,
    timeout_s: float,
) -> Judgement:
    """The verdict on a queue's canaries (see the module's rule)."""
    count = Counter(fate for fate, _ in fates)
    statuses = Counter(status for fate, status in fates if fate is Fate.FAILED_AGAIN and status)
    succeeded, failed, waiting = (
        count[Fate.SUCCEEDED],
        count[Fate.FAILED_AGAIN],
        count[Fate.WAITING],
    )
    said = ", ".join(f"{status} x{n}" for status, n in statuses.most_common())

    def verdict(v: Verdict, reason: str) -> Judgement:
        return Judgement(v, reason, succeeded, failed, waiting, dict(statuses))

    total = len(fates)
    if failed >= max(1, failures_to_halt):
        return verdict(
            Verdict.HALT,
            f"{failed} of {total} canaries failed again ({said}): the fix does not work for them",
        )
    if waiting == 0 and not succeeded:
        return verdict(
            Verdict.HALT,
            f"no canary of {total} succeeded ({failed} failed again: {said})",
        )
    if waiting == 0:
        return verdict(
            Verdict.RELEASE,
            f"{succeeded} of {total} canaries succeeded"
            + (f", {failed} failed again ({said})" if failed else ""),
        )
    if not timed_out:
        return verdict(Verdict.WAIT, f"{waiting} of {total} canaries not answered yet")
    if succeeded:
        return verdict(
            Verdict.RELEASE,
            f"{succeeded} of {total} canaries succeeded, {waiting} unanswered after "
            f"{timeout_s:g} s" + (f", {failed} failed again ({said})" if failed else ""),
        )
    return verdict(
        Verdict.HALT,
        f"no canary answered within {timeout_s:g} s ({waiting} of {total} unanswered"
        + (f", {failed} failed again: {said}" if failed else "")
        + "): the target may hang or its queue may be paused",
    )


# ---------------------------------------------------------------------------------------------
# The gate job (queued mode)


@dataclass(frozen=True)
class Gate:
    """A job in the redrive queue, created after a queue's canary jobs: run_job checks the
    canaries and then releases the rest of the queue (a sweep of it) or halts it. It carries the
    re-drive's plan for that queue, so the release selects what the first sweep would have."""

    redrive: str
    queue: QueueName
    canaries: tuple[Canary, ...]
    until: datetime
    """The canaries' timeout: judged `timed_out` from then on."""
    timeout_s: float
    failures_to_halt: int
    signal: SignalRef
    deployed_at: datetime | None
    statuses: StatusFilter | None
    services: tuple[str, ...] = ()
    basis: str = "gate"
    selected: int | None = None
    """The queue's selected tasks as the plan counted them (None: not counted)."""

    def to_json(self) -> bytes:
        data = {
            "v": GATE_VERSION,
            "gate": {
                "redrive": self.redrive,
                "queue": str(self.queue),
                "canaries": [c.fields() for c in self.canaries],
                "until": _iso(self.until),
                "timeout_s": self.timeout_s,
                "failures_to_halt": self.failures_to_halt,
                "signal": {
                    "kind": self.signal.kind,
                    "source": self.signal.source,
                    "message_id": self.signal.message_id,
                    "publish_time": _iso(self.signal.publish_time),
                },
                "deployed_at": _iso(self.deployed_at),
                "statuses": None if self.statuses is None else str(self.statuses),
                "services": list(self.services),
                "basis": self.basis,
                "selected": self.selected,
            },
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def parse(cls, body: bytes) -> Gate:
        """A gate job's body; InvalidJobError naming what is wrong."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidJobError("a gate job's body is not JSON") from None
        if not isinstance(data, dict) or data.get("v") != GATE_VERSION:
            raise InvalidJobError(f"a gate job has v={GATE_VERSION}")
        gate = data.get("gate")
        want = {
            "redrive",
            "queue",
            "canaries",
            "until",
            "timeout_s",
            "failures_to_halt",
            "signal",
            "deployed_at",
            "statuses",
            "services",
            "basis",
            "selected",
        }
        if not isinstance(gate, dict) or set(gate) != want:
            raise InvalidJobError(f"gate must be an object with {sorted(want)}")
        try:
            queue = QueueName.parse(_str(gate["queue"], "gate.queue"))
            canaries = tuple(_canary(c) for c in _list(gate["canaries"], "gate.canaries"))
        except InvalidName as err:
            raise InvalidJobError(f"gate: {err}") from None
        if not 0 < len(canaries) <= MAX_CANARIES:
            raise InvalidJobError(f"gate.canaries holds 1 to {MAX_CANARIES} canaries")
        signal = gate["signal"]
        if not isinstance(signal, dict) or set(signal) != {
            "kind",
            "source",
            "message_id",
            "publish_time",
        }:
            raise InvalidJobError("gate.signal must be kind, source, message_id, publish_time")
        statuses: StatusFilter | None = None
        if gate["statuses"] is not None:
            try:
                statuses = StatusFilter.parse(_str(gate["statuses"], "gate.statuses"))
            except StatusFilterError as err:
                raise InvalidJobError(f"gate.statuses: {err}") from None
        timeout_s, failures = gate["timeout_s"], gate["failures_to_halt"]
        if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or timeout_s < 0:
            raise InvalidJobError("gate.timeout_s must be a number of seconds")
        if not isinstance(failures, int) or isinstance(failures, bool) or failures < 1:
            raise InvalidJobError("gate.failures_to_halt must be a positive integer")
        until = _time(gate["until"], "gate.until")
        assert until is not None
        services = _list(gate["services"], "gate.services")
        selected = gate["selected"]
        if selected is not None and (
            not isinstance(selected, int) or isinstance(selected, bool) or selected < 0
        ):
            raise InvalidJobError("gate.selected must be a count or null")
        return cls(
            redrive=_str(gate["redrive"], "gate.redrive"),
            queue=queue,
            canaries=canaries,
            until=until,
            timeout_s=float(timeout_s),
            failures_to_halt=failures,
            signal=SignalRef(
                _str(signal["kind"], "gate.signal.kind"),
                _str(signal["source"], "gate.signal.source"),
                _opt_str(signal["message_id"], "gate.signal.message_id"),
                _time(signal["publish_time"], "gate.signal.publish_time", required=False),
            ),
            deployed_at=_time(gate["deployed_at"], "gate.deployed_at", required=False),
            statuses=statuses,
            services=tuple(_str(s, "gate.services[]") for s in services),
            basis=_str(gate["basis"], "gate.basis"),
            selected=selected,
        )


def is_gate(body: bytes) -> bool:
    """Whether a job body is a gate's (its JSON object has the key `gate`). Any body may come
    here (run_job reads what it is sent): nesting too deep to parse is not a gate."""
    if b'"gate"' not in body:
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "gate" in data


def gate_id(redrive: str, queue: QueueName) -> str:
    """The gate job's task id: one per re-drive and queue, so a redelivered sweep meets its own
    gate (ALREADY_EXISTS) instead of making a second one."""
    digest = hashlib.sha256(f"{redrive}|{queue}".encode()).hexdigest()[:16]
    return f"gate-{redrive}-{queue.queue[:60]}-{digest}"


def verdict_id(key: str) -> str:
    """The claims-queue marker that keeps a re-drive's verdict on one queue's canaries."""
    return "canary-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _canary(value: object) -> Canary:
    if not isinstance(value, dict) or set(value) != {"watch", "answered_from", "origin"}:
        raise InvalidJobError("each gate canary is watch, answered_from, origin")
    count = value["answered_from"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise InvalidJobError("a canary's answered_from is a dispatch count")
    origin = _opt_str(value["origin"], "canary.origin")
    return Canary(
        TaskName.parse(_str(value["watch"], "canary.watch")),
        count,
        None if origin is None else TaskName.parse(origin),
    )


def _str(value: object, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 2048:
        raise InvalidJobError(f"{what} must be a non-empty string")
    return value


def _opt_str(value: object, what: str) -> str | None:
    return None if value is None else _str(value, what)


def _list(value: object, what: str) -> Iterable[Any]:
    if not isinstance(value, list) or len(value) > 1000:
        raise InvalidJobError(f"{what} must be a list")
    return value


def _time(value: object, what: str, *, required: bool = True) -> datetime | None:
    if value is None and not required:
        return None
    try:
        return parse_time(_str(value, what))
    except ValueError:
        raise InvalidJobError(f"{what} is not an RFC 3339 time") from None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
