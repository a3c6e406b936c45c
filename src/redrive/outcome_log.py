"""The structured outcome record: built by a pure function, emitted as one JSON line.

`build_record` returns a plain dict (tests assert on it); `OutcomeLog.emit` writes it through
google-cloud-logging's `StructuredLogHandler`, which prints one JSON line on stdout that Cloud
Logging turns into a `jsonPayload` with `severity` and `logging.googleapis.com/labels`. The record
never holds the task's body, headers or target URL: only names, counts, times and statuses.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from redrive.decide import FixEvidence, RunResult, SignalRef
from redrive.names import TaskName
from redrive.outcomes import Outcome
from redrive.state import TaskState

OUTCOME_EVENT = "redrive.outcome"
"""One per decision: the event log-based metrics count."""
SIGNAL_EVENT = "redrive.signal"
"""One summary per signal (message): a different event so metrics do not count it twice."""
COMPONENT = "redrive"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def signal_fields(signal: SignalRef | None) -> dict[str, Any] | None:
    if signal is None:
        return None
    return {
        "kind": signal.kind,
        "source": signal.source,
        "message_id": signal.message_id,
        "publish_time": _iso(signal.publish_time),
    }


def build_record(
    *,
    outcome: Outcome,
    reason: str,
    task: TaskName | None = None,
    signal: SignalRef | None = None,
    seen_at: datetime | None = None,
    failed_dispatch_count: int | None = None,
    state: TaskState | None = None,
    fix: FixEvidence | None = None,
    run: RunResult | None = None,
    job: str | None = None,
    dry_run: bool = False,
    duration_ms: float = 0.0,
    api_version: str = "v2beta3",
    mode: str = "direct",
    entry_point: str = "handle_signal",
) -> dict[str, Any]:
    """The outcome record of one decision, as a plain JSON-ready dict."""
    subject = str(task) if task is not None else "signal"
    record: dict[str, Any] = {
        "event": OUTCOME_EVENT,
        "severity": outcome.severity,
        "message": f"{outcome.value} {subject}: {reason}"[:1000],
        "outcome": outcome.value,
        "reason": reason[:1000],
        "task": str(task) if task is not None else None,
        "task_parts": (
            {
                "project": task.project,
                "location": task.location,
                "queue": task.queue,
                "task_id": task.task,
            }
            if task is not None
            else None
        ),
        "queue": str(task.queue_name) if task is not None else None,
        "signal": signal_fields(signal),
        "seen_at": _iso(seen_at),
        "failed_dispatch_count": failed_dispatch_count,
        "task_state": state.summary() if state is not None else None,
        "fix": (
            {
                "strategy": fix.strategy,
                "service": fix.service,
                "revision": fix.revision,
                "live_since": _iso(fix.live_since),
                "note": fix.note,
            }
            if fix is not None
            else None
        ),
        "run": (
            {
                "dispatched": run.dispatched,
                "confirmed_by": run.confirmed_by,
                "attempts": run.attempts,
                "dispatch_count_after": run.state.dispatch_count if run.state else None,
                "dispatch_time": _iso(run.state.last_dispatch_time) if run.state else None,
            }
            if run is not None
            else None
        ),
        "job": job,
        "dry_run": dry_run,
        "duration_ms": round(duration_ms, 1),
        "api_version": api_version,
        "mode": mode,
        "entry_point": entry_point,
        "labels": {"outcome": outcome.value, "component": COMPONENT},
    }
    return record


def build_summary(
    *,
    outcome: Outcome,
    kind: str,
    signal: SignalRef | None,
    counts: Mapping[str, int],
    duration_ms: float,
    dry_run: bool,
    api_version: str,
    mode: str,
    reason: str = "",
) -> dict[str, Any]:
    """The one summary record per signal: the message's outcome and its per-outcome counts."""
    parts = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return {
        "event": SIGNAL_EVENT,
        "severity": outcome.severity,
        "message": f"signal {kind} {signal.message_id if signal else ''}: {outcome.value}"
        f" ({parts or 'nothing to do'}){': ' + reason if reason else ''}"[:1000],
        "outcome": outcome.value,
        "kind": kind,
        "signal": signal_fields(signal),
        "counts": dict(counts),
        "dry_run": dry_run,
        "duration_ms": round(duration_ms, 1),
        "api_version": api_version,
        "mode": mode,
        "labels": {"outcome": outcome.value, "component": COMPONENT},
    }


def message_outcome(outcomes: list[Outcome]) -> Outcome:
    """The outcome of a whole message: the most serious of its decisions."""
    if not outcomes:
        return Outcome.IGNORED
    for worst in (Outcome.FAILED, Outcome.PERMISSION_DENIED, Outcome.INVALID_SIGNAL):
        if worst in outcomes:
            return worst
    if len(set(outcomes)) == 1:
        return outcomes[0]
    for best in (Outcome.DISPATCHED, Outcome.QUEUED, Outcome.DRY_RUN):
        if best in outcomes:
            return best
    return outcomes[0]


_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


class OutcomeLog:
    """Emits records as single JSON lines via google-cloud-logging's StructuredLogHandler."""

    def __init__(self, stream: IO[str] | None = None, name: str = "redrive.outcome") -> None:
        from google.cloud import logging_v2
        from google.cloud.logging.handlers import StructuredLogHandler

        # The handler writes a one-off "instrumentation" diagnostic line on first use; it is
        # noise in a function's log and breaks one-record-per-line parsing.
        logging_v2._instrumentation_emitted = True
        self._handler = StructuredLogHandler(stream=stream or sys.stdout)  # type: ignore[no-untyped-call]
        self._logger = logging.Logger(name)  # not registered: nobody else's handlers apply
        self._logger.addHandler(self._handler)
        self._logger.propagate = False
        self._lock = threading.Lock()

    def emit(self, record: Mapping[str, Any]) -> None:
        fields = {k: v for k, v in record.items() if k not in ("severity", "message", "labels")}
        level = _LEVELS.get(str(record.get("severity")), logging.INFO)
        with self._lock:
            self._logger.log(
                level,
                str(record.get("message", "")),
                extra={"json_fields": fields, "labels": dict(record.get("labels") or {})},
            )
            self._handler.flush()
