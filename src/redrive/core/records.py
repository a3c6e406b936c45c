"""The structured records redrive writes, built by pure functions as plain dicts.

One record per decision (`redrive.outcome`), one summary per signal (`redrive.signal`); the sweep
writes its own summary (`redrive.sweep`, see redrive.sweep). `Result` is what the per-task pipeline
returns: the decision and everything the outcome record reports. Records never hold the task's
body, headers or target URL: only names, counts, times and statuses. Emitting them is the log
adapter's job (redrive.adapters.log).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redrive.core.config import Settings
from redrive.core.decide import Decision, Failure, FixEvidence, RunResult, SignalRef
from redrive.core.gone import Gone
from redrive.core.names import TaskName
from redrive.core.outcomes import Outcome
from redrive.core.redact import redact_urls
from redrive.core.state import TaskState

OUTCOME_EVENT = "redrive.outcome"
"""One per decision: the event log-based metrics count."""
SIGNAL_EVENT = "redrive.signal"
"""One summary per signal (message): a different event so metrics do not count it twice."""
COMPONENT = "redrive"


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, as every record writes times; None stays None."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def signal_fields(signal: SignalRef | None) -> dict[str, Any] | None:
    if signal is None:
        return None
    fields: dict[str, Any] = {
        "kind": signal.kind,
        "source": signal.source,
        "message_id": signal.message_id,
        "publish_time": iso(signal.publish_time),
    }
    if signal.details:
        fields["details"] = {k: redact_urls(v)[:200] for k, v in signal.details}
    return fields


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
    claim: Mapping[str, Any] | None = None,
    parked: Mapping[str, Any] | None = None,
    not_found: Gone | None = None,
    redrive_id: str | None = None,
    dry_run: bool = False,
    duration_ms: float = 0.0,
    api_version: str = "v2beta3",
    mode: str = "direct",
    entry_point: str = "handle_signal",
) -> dict[str, Any]:
    """The outcome record of one decision, as a plain JSON-ready dict (free text redacted)."""
    subject = str(task) if task is not None else "signal"
    reason = redact_urls(reason)
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
        "seen_at": iso(seen_at),
        "failed_dispatch_count": failed_dispatch_count,
        "task_state": state.summary() if state is not None else None,
        "fix": (
            {
                "strategy": fix.strategy,
                "service": fix.service,
                "revision": fix.revision,
                "live_since": iso(fix.live_since),
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
                "dispatch_time": iso(run.state.last_dispatch_time) if run.state else None,
                "method": run.method,
                "copy": str(run.copy) if run.copy else None,
                "copy_due": iso(run.copy_due),
                "original": str(task) if run.copy and task else None,
            }
            if run is not None
            else None
        ),
        "job": job,
        "claim": dict(claim) if claim is not None else None,
        "parked": dict(parked) if parked is not None else None,
        "not_found": not_found.value if not_found is not None else None,
        "redrive_id": redrive_id,
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
    for best in (
        Outcome.DISPATCHED,
        Outcome.RECREATED,
        Outcome.RESTORED,
        Outcome.PARKED,
        Outcome.QUEUED,
        Outcome.DRY_RUN,
    ):
        if best in outcomes:
            return best
    return outcomes[0]


@dataclass
class Result:
    """One decision with everything the outcome record reports."""

    outcome: Outcome
    reason: str
    http_status: int = 200
    state: TaskState | None = None
    fix: FixEvidence | None = None
    run: RunResult | None = None
    job: str | None = None
    claim: dict[str, Any] | None = None
    """What the claims register said (rung, marker, owner or holder), when it was asked."""
    retry_after_s: float | None = None
    """When the work is worth delivering again, if known (run_job's Retry-After)."""
    parked: dict[str, Any] | None = None
    """Parking and restoring: the parked copy, its origin, why, and the restored task."""
    gone: Gone | None = None
    """For NOT_FOUND: what Cloud Tasks said of the name (recently existed, or not)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, decision: Decision, **kwargs: Any) -> Result:
        assert decision.outcome is not None
        kwargs.setdefault("gone", decision.gone)
        return cls(decision.outcome, decision.reason, decision.http_status, **kwargs)


def result_record(
    result: Result,
    *,
    failure: Failure | None,
    signal: SignalRef | None,
    settings: Settings,
    duration_ms: float,
    entry_point: str,
    redrive_id: str | None = None,
) -> dict[str, Any]:
    """The outcome record of one Result, for handle_signal, run_job, the sweep and the CLI."""
    return build_record(
        outcome=result.outcome,
        reason=result.reason,
        task=failure.task if failure else None,
        signal=signal,
        seen_at=failure.seen_at if failure else None,
        failed_dispatch_count=failure.dispatch_count if failure else None,
        state=result.state,
        fix=result.fix,
        run=result.run,
        job=result.job,
        claim=result.claim,
        parked=result.parked,
        not_found=result.gone,
        redrive_id=redrive_id,
        dry_run=settings.dry_run,
        duration_ms=duration_ms,
        api_version=settings.tasks_api,
        mode="queued" if settings.queued else "direct",
        entry_point=entry_point,
    )
