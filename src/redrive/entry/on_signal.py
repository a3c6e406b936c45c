"""handle_signal: one Pub/Sub message (a CloudEvent) → signals → a decision per failed task.

Task failures go through the pipeline one by one (RunTask in direct mode, one redrive job in
queued mode); deploys and queue alerts start a sweep. One outcome line per task, one summary line
per message. The function returns normally for every terminal outcome (Pub/Sub acknowledges) and
raises `RedeliverError` after logging when any task met a transient fault or the quota, so Pub/Sub
delivers the message again; every step is idempotent, so that is safe.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from redrive import pipeline
from redrive.core import errors
from redrive.core.decide import Failure, SignalRef
from redrive.core.outcomes import Outcome
from redrive.core.records import Result, build_summary, message_outcome
from redrive.core.signals import (
    Deploy,
    Ignored,
    Invalid,
    Patrol,
    QueueAlert,
    SignalError,
    TaskFailure,
    message_from_event,
    parse_message,
)
from redrive.runtime import Runtime, get_runtime
from redrive.sweep import sweep_signal

ENTRY_POINT = "handle_signal"


def handle_signal(cloud_event: Any, rt: Runtime | None = None) -> None:
    """Entry point logic for one Pub/Sub message delivered as a CloudEvent."""
    rt = rt or get_runtime()
    started = time.monotonic()
    ce_id = _ce_attr(cloud_event, "id")
    ce_time = _ce_attr(cloud_event, "time")
    data = getattr(cloud_event, "data", None)
    outcomes: list[Outcome] = []
    kind = "unknown"
    ref = SignalRef("unknown", "unknown", ce_id, None)

    def log(result: Result, failure: Failure | None, signal_ref: SignalRef) -> None:
        outcomes.append(result.outcome)
        pipeline.record(
            rt, result, failure=failure, signal=signal_ref, entry_point=ENTRY_POINT, started=started
        )

    try:
        if data is not None and not isinstance(data, Mapping):
            raise SignalError(f"CloudEvent data is not a JSON object ({type(data).__name__})")
        message = message_from_event(data, None, ce_id, ce_time)
    except SignalError as err:
        log(Result(Outcome.INVALID_SIGNAL, f"bad Pub/Sub message: {str(err)[:300]}"), None, ref)
        _summary(rt, outcomes, kind, ref, started)
        return

    parsed = parse_message(message, max_bytes=rt.settings.max_payload_bytes, now=rt.clock())
    kind = parsed.kind
    details = tuple(sorted((str(k)[:100], str(v)) for k, v in parsed.metadata.items()))[:10]
    ref = SignalRef(kind, kind, message.message_id, message.publish_time, details)
    # The delivery that may come back: Pub/Sub redelivers a message under the same id.
    owner = f"msg:{message.message_id}"
    act = pipeline.Act.ENQUEUE if rt.settings.queued else pipeline.Act.RUN
    handled: set[tuple[str, int | None]] = set()
    for signal in parsed.signals:
        sref = SignalRef(
            kind, getattr(signal, "source", kind), ref.message_id, ref.publish_time, details
        )
        if isinstance(signal, Invalid):
            log(Result(Outcome.INVALID_SIGNAL, signal.reason), None, ref)
        elif isinstance(signal, Ignored):
            log(Result(Outcome.IGNORED, signal.reason), None, sref)
        elif isinstance(signal, QueueAlert | Deploy | Patrol):
            outcomes.extend(sweep_signal(signal, sref, rt))
        elif isinstance(signal, TaskFailure):
            key = (str(signal.task), signal.dispatch_count)
            if key in handled:
                continue  # the same failure listed twice in one message: one decision
            handled.add(key)
            failure = Failure(
                signal.task, signal.seen_at, sref, signal.dispatch_count, signal.status
            )
            method = rt.settings.method_for(signal.task.queue_name, bulk=False)
            chosen = pipeline.Act.RECREATE if method == "recreate" else act
            request = pipeline.Request(
                failure, chosen, throttle=chosen is pipeline.Act.RUN, owner=owner
            )
            log(pipeline.process(request, rt), failure, sref)
    failed = _summary(rt, outcomes, kind, ref, started)
    if failed:
        raise errors.RedeliverError(
            f"{failed} task(s) met a transient fault or the quota; Pub/Sub will deliver the "
            "message again"
        )


def _summary(
    rt: Runtime, outcomes: list[Outcome], kind: str, ref: SignalRef, started: float
) -> int:
    counts = Counter(o.value for o in outcomes)
    rt.log.emit(
        build_summary(
            outcome=message_outcome(outcomes),
            kind=kind,
            signal=ref,
            counts=counts,
            duration_ms=(time.monotonic() - started) * 1000,
            dry_run=rt.settings.dry_run,
            api_version=rt.settings.tasks_api,
            mode="queued" if rt.settings.queued else "direct",
        )
    )
    return sum(1 for o in outcomes if o.redeliver)


def _ce_attr(event: Any, name: str) -> str | None:
    try:
        value = event[name]
    except (KeyError, TypeError):
        return None
    return None if value is None else str(value)
