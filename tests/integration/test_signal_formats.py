"""Every signal format, through the real handle_signal over HTTP (functions-framework + emulator).

Each fixture of tests/data/signals/ is posted as Eventarc would post it. What the pure parser makes
of it (table-tested in tests/test_signals.py) decides what the function must do: a task failure
reaches the decision (GetTask: the fixture tasks do not exist here, so NOT_FOUND), a deploy or a
queue alert starts a sweep, an ignorable message is IGNORED and bad input INVALID_SIGNAL — every one
acknowledged with 200, none retried.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from redrive.core.signals import Deploy, Ignored, Invalid, QueueAlert, TaskFailure, parse_message
from tests.integration.helpers import FunctionServer, Stack, now_rfc3339, post_signal
from tests.test_signals import fixture_message

DATA = Path(__file__).resolve().parents[1] / "data" / "signals"
FIXTURES = sorted(p.name for p in DATA.glob("*.json"))
LOCATION = "projects/acme-prod/locations/europe-west1"
QUEUE = f"{LOCATION}/queues/billing"


@pytest.fixture(scope="module")
def server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    stack.client.create_queue(request={"parent": LOCATION, "queue": {"name": QUEUE}})
    env = {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": (
            f"{LOCATION}/queues/*,projects/acme-prod/locations/us-central1/queues/*"
        ),
        "REDRIVE_SERVICE_MAP": json.dumps({f"{LOCATION}/services/billing": [QUEUE]}),
        "REDRIVE_FIX_CHECK": "none",
        # The fixtures carry fixed times; age is not what this test is about.
        "REDRIVE_MAX_SIGNAL_AGE": "3650d",
    }
    logs = tmp_path_factory.mktemp("formats")
    fn = FunctionServer("handle_signal", "cloudevent", env, logs / "handle_signal.log")
    yield fn
    fn.stop()


def expected_counts(name: str) -> Counter[str]:
    expected: Counter[str] = Counter()
    for signal in parse_message(fixture_message(name)).signals:
        if isinstance(signal, TaskFailure):
            expected["NOT_FOUND"] += 1
        elif isinstance(signal, Deploy | QueueAlert):
            expected["SWEEP"] += 1
        elif isinstance(signal, Ignored):
            expected["IGNORED"] += 1
        else:
            assert isinstance(signal, Invalid)
            expected["INVALID_SIGNAL"] += 1
    return expected


@pytest.mark.parametrize("name", FIXTURES)
def test_each_format_reaches_the_outcome_the_design_expects(server, name):
    message = fixture_message(name)
    message_id = f"fmt-{name}"
    response = post_signal(
        server,
        message.data,
        message_id,
        now_rfc3339(),
        attributes=dict(message.attributes),
        mode="raw" if "dead_letter" in name else "binary",
    )
    assert response.status_code == 200, response.text
    (summary,) = server.summaries(message_id)
    assert Counter(summary["counts"]) == expected_counts(name), summary["message"]
    for line in server.outcomes(signal__message_id=message_id):
        assert line["reason"], line
        if line["outcome"] == "INVALID_SIGNAL":
            assert line["severity"] == "WARNING"


def test_the_fixture_set_covers_every_kind_of_signal():
    kinds: Counter[str] = Counter()
    for name in FIXTURES:
        kinds.update(type(s).__name__ for s in parse_message(fixture_message(name)).signals)
    assert {"TaskFailure", "QueueAlert", "Deploy", "Ignored", "Invalid"} <= set(kinds)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b'{"task": "projects/acme-prod/queues/billing/tasks/x"}',
        b"[]",
    ],
)
def test_bad_input_is_acknowledged_as_invalid_signal(server, payload):
    message_id = f"bad-{payload.hex()[:16]}"
    response = post_signal(server, payload, message_id, now_rfc3339())
    assert response.status_code == 200
    (summary,) = server.summaries(message_id)
    assert summary["outcome"] == "INVALID_SIGNAL" and "INVALID_SIGNAL" in summary["counts"]
