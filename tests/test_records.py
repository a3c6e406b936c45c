# mypy: disable-error-code="no-untyped-call"
"""The outcome record: built as a dict, emitted as exactly one JSON line."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest

from redrive.adapters.log import OutcomeLog
from redrive.core.decide import FixEvidence, RunResult, SignalRef
from redrive.core.names import TaskName
from redrive.core.outcomes import Outcome
from redrive.core.records import (
    OUTCOME_EVENT,
    SIGNAL_EVENT,
    build_record,
    build_summary,
    message_outcome,
)
from redrive.core.state import TaskState

T0 = datetime(2026, 11, 29, 8, 14, 57, 705000, tzinfo=UTC)
TASK = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-441")
STATE = TaskState(
    TASK,
    3,
    3,
    last_dispatch_time=T0,
    last_response_time=T0,
    last_status_code=13,
    target_url="https://billing.example/invoice?token=SECRET-IN-URL",
)


def record(outcome: Outcome = Outcome.DISPATCHED) -> dict:
    return build_record(
        outcome=outcome,
        reason="RunTask dispatched the task",
        task=TASK,
        signal=SignalRef("dead-letter", "dead-letter", "9117", T0),
        seen_at=T0,
        failed_dispatch_count=3,
        state=STATE,
        fix=FixEvidence(
            "revision",
            T0,
            "projects/acme/locations/europe-west1/services/billing",
            "projects/acme/locations/europe-west1/services/billing/revisions/b-2",
        ),
        run=RunResult(True, TaskState(TASK, 4, 3, last_dispatch_time=T0)),
        duration_ms=12.345,
        api_version="v2",
    )


def test_record_fields():
    r = record()
    assert r["event"] == OUTCOME_EVENT
    assert r["outcome"] == "DISPATCHED" and r["severity"] == "INFO"
    assert r["message"].startswith("DISPATCHED projects/acme/")
    assert "\n" not in r["message"]
    assert r["task_parts"] == {
        "project": "acme",
        "location": "europe-west1",
        "queue": "billing",
        "task_id": "inv-441",
    }
    assert r["queue"] == "projects/acme/locations/europe-west1/queues/billing"
    assert r["signal"] == {
        "kind": "dead-letter",
        "source": "dead-letter",
        "message_id": "9117",
        "publish_time": "2026-11-29T08:14:57.705000Z",
    }
    assert r["task_state"]["dispatch_count"] == 3
    assert r["task_state"]["last_status"] == "INTERNAL"
    assert r["fix"]["live_since"] == "2026-11-29T08:14:57.705000Z"
    assert r["run"]["dispatch_count_after"] == 4
    assert r["duration_ms"] == 12.3 and r["api_version"] == "v2" and r["dry_run"] is False
    assert r["labels"] == {"outcome": "DISPATCHED", "component": "redrive"}
    assert "SECRET-IN-URL" not in json.dumps(r)


@pytest.mark.parametrize(
    ("outcome", "severity"),
    [
        (Outcome.FAILED, "ERROR"),
        (Outcome.PERMISSION_DENIED, "ERROR"),
        (Outcome.INVALID_SIGNAL, "WARNING"),
        (Outcome.DEFERRED, "INFO"),
        (Outcome.SKIPPED_RETRY_DUE, "INFO"),
        (Outcome.SKIPPED_FIX_INEFFECTIVE, "WARNING"),
    ],
)
def test_severity_follows_meaning(outcome, severity):
    assert record(outcome)["severity"] == severity


def test_emit_writes_one_json_line_with_severity_and_labels():
    stream = io.StringIO()
    OutcomeLog(stream).emit(record(Outcome.FAILED))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["severity"] == "ERROR"
    assert line["outcome"] == "FAILED" and line["event"] == OUTCOME_EVENT
    assert line["logging.googleapis.com/labels"]["outcome"] == "FAILED"
    assert line["logging.googleapis.com/labels"]["component"] == "redrive"
    assert line["message"].startswith("FAILED ")


def test_summary_is_a_different_event():
    s = build_summary(
        outcome=Outcome.DISPATCHED,
        kind="dead-letter",
        signal=None,
        counts={"DISPATCHED": 2, "NOT_FOUND": 1},
        duration_ms=1,
        dry_run=False,
        api_version="v2beta3",
        mode="direct",
    )
    assert s["event"] == SIGNAL_EVENT and s["counts"] == {"DISPATCHED": 2, "NOT_FOUND": 1}


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], Outcome.IGNORED),
        ([Outcome.DISPATCHED, Outcome.FAILED], Outcome.FAILED),
        ([Outcome.NOT_FOUND, Outcome.DISPATCHED], Outcome.DISPATCHED),
        ([Outcome.NOT_FOUND, Outcome.NOT_FOUND], Outcome.NOT_FOUND),
        ([Outcome.INVALID_SIGNAL], Outcome.INVALID_SIGNAL),
        ([Outcome.SKIPPED_DUPLICATE, Outcome.QUEUED], Outcome.QUEUED),
    ],
)
def test_message_outcome(outcomes, expected):
    assert message_outcome(outcomes) is expected
