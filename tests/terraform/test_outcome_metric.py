"""The outcome metric counts each decision once: its filter and label extractors, evaluated on
real lines written by the code.

The lines come from `redrive.entry.handle_signal` run in process against the project's Cloud Tasks
emulator (direct mode, fix check none), with the outcome log captured: decisions, the per-signal
summaries, a deploy sweep's summary and the start-up lines. Each line becomes the LogEntry Cloud
Logging makes of it (the JSON line is the jsonPayload, less the fields the agent lifts out; the
resource is the function's Cloud Run revision), and the filter the module plans
(fixtures/outcome-metric.json, checked against a real plan in test_plan.py) is evaluated on it.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from redrive import entry
from redrive.adapters.log import OutcomeLog
from redrive.core.config import Settings
from redrive.runtime import Runtime
from tests.integration.helpers import Stack, dead_letter, now_rfc3339
from tests.terraform.conftest import FIXTURES
from tests.terraform.logfilter import extract, matches, parse

SPECIAL = {"severity", "httpRequest", "time", "timestamp"}  # lifted out of jsonPayload
OLD_FILTER = (  # the filter the module had: it also matched the summaries
    'resource.type="cloud_run_revision" AND '
    'resource.labels.service_name=("redrive-signal" OR "redrive-job") AND jsonPayload.outcome:*'
)


class Event(dict[str, Any]):
    data: Any


def cloud_event(payload: bytes, message_id: str) -> Event:
    event = Event(id=message_id, time=now_rfc3339())
    event.data = {
        "message": {
            "data": base64.b64encode(payload).decode(),
            "messageId": message_id,
            "publishTime": now_rfc3339(),
        }
    }
    return event


def log_entry(line: dict[str, Any], service: str = "redrive-signal") -> dict[str, Any]:
    payload = {
        k: v for k, v in line.items() if k not in SPECIAL and not k.startswith("logging.googleapis")
    }
    return {
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
        "severity": line.get("severity", "DEFAULT"),
        "labels": line.get("logging.googleapis.com/labels", {}),
        "jsonPayload": payload,
    }


@pytest.fixture(scope="module")
def lines() -> Iterator[list[dict[str, Any]]]:
    stack = Stack()
    try:
        queue = stack.queue("metric")
        failing = [stack.failed_task(queue, f"inv-{i}", f"/metric/{i}") for i in range(3)]
        stream = io.StringIO()
        rt = Runtime(
            Settings.from_env(
                {
                    **stack.emu.env(),
                    "REDRIVE_ALLOWED_QUEUES": queue,
                    "REDRIVE_FIX_CHECK": "none",
                    "REDRIVE_RETRY_DEADLINE_S": "2",
                    "REDRIVE_DIRECT_RATE_PER_S": "1000",
                    "REDRIVE_DRY_RUN": "true",
                }
            ),
            log=OutcomeLog(stream),
        )
        rt.announce()
        entry.handle_signal(cloud_event(dead_letter(failing[0]), "one-task"), rt)
        entry.handle_signal(cloud_event(dead_letter(f"{queue}/tasks/gone"), "gone"), rt)
        entry.handle_signal(cloud_event(b"not json at all", "garbage"), rt)
        deploy = json.dumps({"deployed": {"queues": [queue], "at": now_rfc3339()}}).encode()
        entry.handle_signal(cloud_event(deploy, "deploy"), rt)
        yield [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def metric() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((FIXTURES / "outcome-metric.json").read_text())
    parse(spec["filter"])  # inside the evaluator's subset
    return spec


def test_the_lines_cover_every_kind_of_record(lines: list[dict[str, Any]]) -> None:
    events = Counter(line.get("event") for line in lines)
    assert events["redrive.startup"] >= 1
    assert events["redrive.signal"] == 4  # one summary per message
    assert events["redrive.sweep"] >= 1
    assert events["redrive.outcome"] >= 6  # 1 + NOT_FOUND + INVALID_SIGNAL + the sweep's 3
    # Summaries carry an outcome too: that is what the old filter double-counted.
    assert all("outcome" in line for line in lines if line.get("event") == "redrive.signal")


def test_each_decision_is_counted_once_and_nothing_else(
    lines: list[dict[str, Any]], metric: dict[str, Any]
) -> None:
    entries = [log_entry(line) for line in lines]
    counted = [e for e in entries if matches(metric["filter"], e)]
    decisions = [e for e in entries if e["jsonPayload"].get("event") == "redrive.outcome"]
    assert counted == decisions
    old = [e for e in entries if matches(OLD_FILTER, e)]
    assert len(old) > len(counted), "the old filter should have counted the summaries as well"


def test_label_extractors_give_outcome_and_function(
    lines: list[dict[str, Any]], metric: dict[str, Any]
) -> None:
    decisions = [log_entry(x, "redrive-job") for x in lines if x.get("event") == "redrive.outcome"]
    extracted = Counter(extract(metric["label_extractors"]["outcome"], e) for e in decisions)
    want = Counter(x["outcome"] for x in lines if x.get("event") == "redrive.outcome")
    assert extracted == want
    assert {"DRY_RUN", "NOT_FOUND", "INVALID_SIGNAL"} <= set(extracted)
    functions = {extract(metric["label_extractors"]["function"], e) for e in decisions}
    assert functions == {"redrive-job"}


def test_other_services_logs_are_not_counted(
    lines: list[dict[str, Any]], metric: dict[str, Any]
) -> None:
    decision = next(x for x in lines if x.get("event") == "redrive.outcome")
    assert not matches(metric["filter"], log_entry(decision, "billing"))


@pytest.mark.parametrize(
    ("text", "entry_", "expected"),
    [
        ('a.b="x" AND c:*', {"a": {"b": "x"}, "c": 1}, True),
        ('a.b="x" c:*', {"a": {"b": "x"}}, False),
        ('a="1" AND b="2" OR c="3"', {"a": "1", "c": "3"}, True),  # OR binds tighter
        ('a=("x" OR "y")', {"a": "y"}, True),
        ('NOT a="x"', {"a": "x"}, False),
        ('a!="x"', {}, True),
        ('a:"BC"', {"a": "abcd"}, True),
        ('a=~"^ab"', {"a": "abc"}, True),
    ],
)
def test_the_evaluator_follows_logging_rules(
    text: str, entry_: dict[str, Any], expected: bool
) -> None:
    assert matches(text, entry_) is expected
