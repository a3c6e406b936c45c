"""Canaries, pure: the fate of one canary, the verdict on a queue's canaries, the gate job's body
and name, and the settings that shape them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.canary import (
    Canary,
    Fate,
    Gate,
    Verdict,
    fate_of,
    gate_id,
    is_gate,
    judge,
)
from redrive.core.config import MAX_CANARIES, ConfigError, Settings
from redrive.core.decide import SignalRef
from redrive.core.errors import InvalidJobError
from redrive.core.names import TASK_ID_RE, QueueName, TaskName
from redrive.core.state import TaskState
from redrive.core.statuses import StatusFilter

Q = QueueName.parse("projects/p/locations/l/queues/billing")
T = TaskName.parse(f"{Q}/tasks/t1")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def state(
    count: int,
    *,
    code: int | None = None,
    message: str | None = None,
    dispatched: datetime | None = NOW,
    answered: datetime | None = NOW + timedelta(seconds=1),
) -> TaskState:
    return TaskState(
        T,
        dispatch_count=count,
        last_dispatch_time=dispatched if count else None,
        last_response_time=answered if code is not None else None,
        last_status_code=code,
        last_status_message=message,
    )


FORCED = Canary(T, answered_from=3)  # the failed attempt was the 2nd


@pytest.mark.parametrize(
    ("now", "fate", "status"),
    [
        (None, Fate.SUCCEEDED, None),  # gone: Cloud Tasks deletes a task that succeeded
        (state(2, code=13, message="HTTP 500"), Fate.WAITING, None),  # not dispatched again yet
        (state(3, code=None), Fate.WAITING, None),  # dispatched, not answered: in flight
        (
            state(3, code=13, message="HTTP status code 500"),
            Fate.FAILED_AGAIN,
            "INTERNAL (HTTP 500)",
        ),
        (
            state(4, code=14, message="HTTP status code 503"),
            Fate.FAILED_AGAIN,
            "UNAVAILABLE (HTTP 503)",
        ),
        (state(3, code=0), Fate.SUCCEEDED, None),
        # the forced attempt is in flight again (answered earlier, dispatched after)
        (
            state(3, code=13, dispatched=NOW + timedelta(seconds=5), answered=NOW),
            Fate.WAITING,
            None,
        ),
        # an attempt without an HTTP answer (the deadline) is over, and failed
        (state(3, code=4, answered=None), Fate.FAILED_AGAIN, "DEADLINE_EXCEEDED"),
    ],
)
def test_fate_of_one_canary(now: TaskState | None, fate: Fate, status: str | None) -> None:
    assert fate_of(FORCED, now) == (fate, status)


def test_a_new_task_is_answered_from_its_first_attempt() -> None:
    copy = Canary(TaskName.parse(f"{Q}/tasks/t1--rc1"), answered_from=1, origin=T)
    assert fate_of(copy, state(0)) == (Fate.WAITING, None)
    assert fate_of(copy, state(1, code=13, message="HTTP 500"))[0] is Fate.FAILED_AGAIN


S, F, W = (Fate.SUCCEEDED, None), (Fate.FAILED_AGAIN, "INTERNAL (HTTP 500)"), (Fate.WAITING, None)


@pytest.mark.parametrize(
    ("fates", "threshold", "timed_out", "verdict"),
    [
        ([S, S, S], 1, False, Verdict.RELEASE),
        ([S, S, W], 1, False, Verdict.WAIT),
        ([S, F, W], 1, False, Verdict.HALT),  # one failure halts at once, nothing waited for
        ([S, F, W], 2, False, Verdict.WAIT),
        ([S, F, S], 2, False, Verdict.RELEASE),
        ([F, F, W], 2, False, Verdict.HALT),
        ([S, W, W], 1, True, Verdict.RELEASE),  # at the timeout one success is enough
        ([W, W, W], 1, True, Verdict.HALT),  # silence is not success
        ([F, W, W], 2, True, Verdict.HALT),  # failures and silence, nothing succeeded
        ([F, S, W], 2, True, Verdict.RELEASE),
        ([W], 1, False, Verdict.WAIT),
        ([S], 1, False, Verdict.RELEASE),
    ],
)
def test_judge(fates: list[Any], threshold: int, timed_out: bool, verdict: Verdict) -> None:
    judged = judge(fates, failures_to_halt=threshold, timed_out=timed_out, timeout_s=60)
    assert judged.verdict is verdict, judged.reason
    assert judged.succeeded + judged.failed + judged.waiting == len(fates)


def test_a_halt_names_the_status_the_canaries_failed_with() -> None:
    other = (Fate.FAILED_AGAIN, "UNAVAILABLE (HTTP 503)")
    judged = judge([F, F, other], failures_to_halt=2, timed_out=False, timeout_s=60)
    assert judged.verdict is Verdict.HALT
    assert judged.statuses == {"INTERNAL (HTTP 500)": 2, "UNAVAILABLE (HTTP 503)": 1}
    assert "3 of 3 canaries failed again (INTERNAL (HTTP 500) x2, UNAVAILABLE" in judged.reason
    silent = judge([W, W], failures_to_halt=1, timed_out=True, timeout_s=120)
    assert "no canary answered within 120 s" in silent.reason


@given(
    st.lists(st.sampled_from([S, F, W]), min_size=1, max_size=MAX_CANARIES),
    st.integers(1, MAX_CANARIES),
    st.booleans(),
)
def test_judge_never_releases_past_the_threshold(
    fates: list[Any], threshold: int, timed_out: bool
) -> None:
    judged = judge(fates, failures_to_halt=threshold, timed_out=timed_out, timeout_s=1)
    failed = sum(1 for f, _ in fates if f is Fate.FAILED_AGAIN)
    if failed >= threshold:
        assert judged.verdict is Verdict.HALT
    if judged.verdict is Verdict.RELEASE:
        assert judged.succeeded >= 1 and (judged.waiting == 0 or timed_out)
    if timed_out:
        assert judged.verdict is not Verdict.WAIT


def gate(**kwargs: Any) -> Gate:
    values: dict[str, Any] = {
        "redrive": "rd-0123456789ab",
        "queue": Q,
        "canaries": (FORCED, Canary(TaskName.parse(f"{Q}/tasks/c--rc"), 1, T)),
        "until": NOW,
        "timeout_s": 120.0,
        "failures_to_halt": 1,
        "signal": SignalRef("deploy", "plain", "m-1", NOW),
        "deployed_at": NOW - timedelta(minutes=1),
        "statuses": StatusFilter.parse("500,5xx,UNAVAILABLE"),
        "services": ("billing",),
        "basis": "signal",
        "selected": 40,
    }
    values.update(kwargs)
    return Gate(**values)


@pytest.mark.parametrize(
    "changes",
    [{}, {"statuses": None, "deployed_at": None, "selected": None, "services": ()}],
)
def test_a_gate_body_reads_back_as_written(changes: dict[str, Any]) -> None:
    written = gate(**changes)
    body = written.to_json()
    assert is_gate(body)
    read = Gate.parse(body)
    assert read == written


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d.update(v=2), "v=1"),
        (lambda d: d["gate"].pop("queue"), "gate must be an object"),
        (lambda d: d["gate"].update(queue="nope"), "gate:"),
        (lambda d: d["gate"].update(canaries=[]), "1 to 20"),
        (lambda d: d["gate"].update(failures_to_halt=0), "failures_to_halt"),
        (lambda d: d["gate"].update(timeout_s="x"), "timeout_s"),
        (lambda d: d["gate"].update(until="yesterday"), "gate.until"),
        (lambda d: d["gate"].update(statuses="7xx"), "gate.statuses"),
        (lambda d: d["gate"].update(selected=-1), "gate.selected"),
        (lambda d: d["gate"]["canaries"][0].update(answered_from=True), "answered_from"),
        (lambda d: d["gate"]["signal"].pop("kind"), "gate.signal"),
    ],
)
def test_a_bad_gate_body_is_refused_with_the_reason(mutate: Any, says: str) -> None:
    data = json.loads(gate().to_json())
    mutate(data)
    with pytest.raises(InvalidJobError, match=re.escape(says)):
        Gate.parse(json.dumps(data).encode())


def test_not_json_is_not_a_gate() -> None:
    assert not is_gate(b"\xff")
    deep = b"[" * 100_000 + b'"gate"' + b"]" * 100_000
    assert not is_gate(deep)
    with pytest.raises(InvalidJobError):
        Gate.parse(deep)
    assert not is_gate(b'{"v":1,"task":"x"}')
    with pytest.raises(InvalidJobError):
        Gate.parse(b"[]")


@given(st.from_regex(r"[a-z][a-z0-9-]{0,99}", fullmatch=True))
def test_gate_ids_are_task_ids_one_per_redrive_and_queue(queue_id: str) -> None:
    queue = QueueName.parse(f"projects/p/locations/l/queues/{queue_id}")
    one = gate_id("rd-0123456789ab", queue)
    assert re.fullmatch(TASK_ID_RE, one) and len(one) <= 500
    assert one == gate_id("rd-0123456789ab", queue)
    assert one != gate_id("rd-ba9876543210", queue)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"REDRIVE_CANARIES": "21"}, "REDRIVE_CANARIES must be a whole number from 0"),
        ({"REDRIVE_CANARIES": "-1"}, "REDRIVE_CANARIES"),
        ({"REDRIVE_CANARIES": "2.5"}, "whole number"),
        ({"REDRIVE_CANARIES": "3", "REDRIVE_CANARY_FAILURES": "4"}, "more could never halt"),
        ({"REDRIVE_CANARY_FAILURES": "0"}, "REDRIVE_CANARY_FAILURES must be from 1"),
        ({"REDRIVE_CANARY_TIMEOUT_S": "-5"}, "REDRIVE_CANARY_TIMEOUT_S"),
        ({"REDRIVE_CANARY_TIMEOUT_S": "7200"}, "REDRIVE_CANARY_TIMEOUT_S"),
    ],
)
def test_canary_settings_are_checked(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        Settings.from_env(env)


def test_canary_defaults() -> None:
    s = Settings.from_env({})
    assert (s.canaries, s.canary_failures, s.canary_timeout_s) == (3, 1, 120.0)
    off = Settings.from_env({"REDRIVE_CANARIES": "0", "REDRIVE_CANARY_FAILURES": "9"})
    assert off.canaries == 0  # no canaries: the threshold does not matter
