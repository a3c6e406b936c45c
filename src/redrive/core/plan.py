"""The plan of a bulk re-drive, and its ETA: pure, no I/O.

Before a bulk re-drive (a sweep) acts on anything it counts what it will do: per queue, the tasks
listed, those selected (by the reason the others were not, and by last status), the method
(RunTask or re-create), the rate that bounds it, and when the last selected task will have been
re-run. One `redrive.plan` line says so (`plan_record`); `redrive sweep --plan` prints it and
stops there.

The rate (`pace_for`):

- RunTask, direct mode: the in-process throttle (REDRIVE_DIRECT_RATE_PER_S) or the project's
  RunTask quota (REDRIVE_RUN_QUOTA_PER_MIN), whichever is lower;
- RunTask, queued mode: the redrive queue's dispatch rate (read from Cloud Tasks) or the quota,
  whichever is lower; jobs already waiting in the redrive queue go first;
- re-create: the target queue's own dispatch rate (Cloud Tasks' maximum, 500/s, when it cannot
  be read), after REDRIVE_RECREATE_DELAY_S (a copy is due that long after it is made).

The ETA (`eta_s`) follows the order a sweep works in. Direct mode handles one queue after the
other: RunTask queues take their tasks' count over the rate, one after another (they share the
throttle); a re-create queue's copies are made in a moment and then dispatched by their own queue
while the sweep goes on. Queued mode creates every job at once; the redrive queue then dispatches
the RunTask jobs one queue after another, while re-create queues dispatch their copies in
parallel. What the plan cannot foresee (a guard that skips a selected task, a target slower than
the rate, quota spent by others) makes the real duration shorter or longer: the benchmark
(bench/plan_bench.py) compares the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redrive.core.recreate import Method

PLAN_EVENT = "redrive.plan"
MAX_QUEUE_RATE_PER_S = 500.0
"""Cloud Tasks' maximum dispatch rate of a queue: the re-create rate when the queue's own cannot
be read."""


@dataclass(frozen=True)
class Pace:
    """How fast one queue's selected tasks are re-run, and what bounds it."""

    method: Method
    rate_per_s: float
    limited_by: str
    """In words, with the setting or the queue it comes from."""
    delay_s: float = 0.0
    """Re-create: a copy is due this long after it is made."""
    ahead: int = 0
    """Queued RunTask: jobs already waiting in the redrive queue (they go first)."""


def pace_for(
    method: Method,
    *,
    queued: bool,
    run_quota_per_min: float,
    direct_rate_per_s: float,
    redrive_rate_per_s: float | None = None,
    queue_rate_per_s: float | None = None,
    recreate_delay_s: float = 0.0,
    ahead: int = 0,
) -> Pace:
    """The pace of one queue's re-drive (the rates as Cloud Tasks reported them, None unknown)."""
    if method is Method.RECREATE:
        if queue_rate_per_s is not None and queue_rate_per_s > 0:
            return Pace(
                method,
                queue_rate_per_s,
                f"the queue's dispatch rate ({queue_rate_per_s:g}/s)",
                recreate_delay_s,
            )
        return Pace(
            method,
            MAX_QUEUE_RATE_PER_S,
            f"Cloud Tasks' maximum dispatch rate ({MAX_QUEUE_RATE_PER_S:g}/s; the queue's own "
            "could not be read)",
            recreate_delay_s,
        )
    quota_per_s = run_quota_per_min / 60.0
    quota = f"the RunTask quota (REDRIVE_RUN_QUOTA_PER_MIN={run_quota_per_min:g})"
    if queued:
        if redrive_rate_per_s is not None and 0 < redrive_rate_per_s < quota_per_s:
            return Pace(
                method,
                redrive_rate_per_s,
                f"the redrive queue's dispatch rate ({redrive_rate_per_s:g}/s)",
                ahead=ahead,
            )
        return Pace(method, quota_per_s, quota, ahead=ahead)
    if direct_rate_per_s < quota_per_s:
        return Pace(
            method,
            direct_rate_per_s,
            f"the direct-mode throttle (REDRIVE_DIRECT_RATE_PER_S={direct_rate_per_s:g})",
        )
    return Pace(method, quota_per_s, quota)


def eta_s(parts: Sequence[tuple[int, Pace]], *, queued: bool) -> float:
    """Seconds until the last selected task has been re-run: (selected, pace) per queue, in the
    order the sweep takes the queues. 0 when nothing is selected."""
    return max(ends_s(parts, queued=queued), default=0.0)


def ends_s(parts: Sequence[tuple[int, Pace]], *, queued: bool) -> list[float]:
    """When each queue's last selected task has been re-run (0 for a queue with none)."""
    ends: list[float] = []
    sweep_at = 0.0  # direct mode: when the sweep reaches the next queue
    redrive_at = 0.0  # queued mode: when the redrive queue is through the RunTask jobs so far
    ahead_done = False
    for selected, pace in parts:
        if selected <= 0:
            ends.append(0.0)
            continue
        span = selected / pace.rate_per_s
        if pace.method is Method.RECREATE:
            start = 0.0 if queued else sweep_at
            ends.append(start + pace.delay_s + span)
            continue
        if queued:
            if not ahead_done:
                redrive_at += pace.ahead / pace.rate_per_s
                ahead_done = True
            redrive_at += span
            ends.append(redrive_at)
        else:
            sweep_at += span
            ends.append(sweep_at)
    return ends


@dataclass
class QueuePlan:
    """One queue's count (filled page by page) and, once counted, its method and pace."""

    queue: str
    tasks_seen: int = 0
    pages: int = 0
    selected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    """Pick → listed tasks not selected."""
    by_status: Counter[str] = field(default_factory=Counter)
    """Last status (core.statuses.status_label) → selected tasks."""
    counted: bool = False
    """True once every page was listed; False when the listing was cut or failed."""
    error: str | None = None
    method: Method | None = None
    why: str = ""
    pace: Pace | None = None

    def fields(self) -> dict[str, Any]:
        pace = self.pace
        return {
            "queue": self.queue,
            "tasks_seen": self.tasks_seen,
            "pages": self.pages,
            "selected": self.selected,
            "skipped": dict(self.skipped),
            "by_status": dict(self.by_status),
            "counted": self.counted,
            "error": self.error,
            "method": self.method.value if self.method else None,
            "why": self.why or None,
            "rate_per_s": round(pace.rate_per_s, 6) if pace else None,
            "limited_by": pace.limited_by if pace else None,
            "eta_s": round(eta_s([(self.selected, pace)], queued=False), 1) if pace else None,
        }


def plan_record(
    queues: Sequence[QueuePlan],
    *,
    queued: bool,
    now: datetime,
    base: Mapping[str, Any],
    duration_ms: float,
) -> dict[str, Any]:
    """The `redrive.plan` line: totals, per queue, the ETA (seconds and a time) and the rate that
    bounds it. `base` holds the fields it shares with the SWEEP line (signal, mode, ...)."""
    paced = [q for q in queues if q.pace is not None]
    parts = [(q.selected, q.pace) for q in paced if q.pace is not None]
    ends = ends_s(parts, queued=queued)
    eta = max(ends, default=0.0)
    seen = sum(q.tasks_seen for q in queues)
    selected = sum(q.selected for q in queues)
    skipped: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    for q in queues:
        skipped.update(q.skipped)
        by_status.update(q.by_status)
        if q.method is not None and q.selected:
            methods[q.method.value] += q.selected
    counted = all(q.counted for q in queues)
    # The rate of the queue whose re-drive ends last bounds the whole.
    last = max(
        ((end, q) for end, q in zip(ends, paced, strict=True) if q.selected),
        key=lambda item: item[0],
        default=None,
    )
    limiting = last[1].pace.limited_by if last is not None and last[1].pace else None
    how = (
        ", ".join(f"{_METHOD_WORDS[m]} {n}" for m, n in sorted(methods.items()))
        or "nothing to re-drive"
    )
    bound = "" if counted else " (at least: not every queue could be counted)"
    message = (
        f"PLAN {len(queues)} queue(s): {seen} task(s) seen, {selected} selected ({how}); ETA "
        f"{_duration(eta)}{bound}" + (f", limited by {limiting}" if limiting else "")
    )
    return {
        "event": PLAN_EVENT,
        "severity": "INFO",
        "message": message[:1000],
        **base,
        "tasks_seen": seen,
        "selected": selected,
        "skipped": dict(skipped),
        "by_status": dict(by_status),
        "methods": dict(methods),
        "eta_s": round(eta, 1),
        "eta_at": (now + timedelta(seconds=eta)).isoformat().replace("+00:00", "Z"),
        "limited_by": limiting,
        "counted": counted,
        "per_queue": [q.fields() for q in queues],
        "duration_ms": round(duration_ms, 1),
    }


_METHOD_WORDS = {Method.RUN.value: "RunTask", Method.RECREATE.value: "re-create"}


def _duration(seconds: float) -> str:
    """90 → 1m30s; 5400 → 1h30m; 12.34 → 12.3s."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
