"""The pure parts of parking: the stop rule, the park rule, the parked copy's record and names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudtasks_emulator import model as emulator_model
from redrive.core.names import QueueName, TaskName
from redrive.core.parking import (
    PARKED_HOST,
    URL_MAX,
    Parked,
    RestoreScope,
    RetryRule,
    Verdict,
    Why,
    park_check,
    parked_name,
    restored_name,
    retries_exhausted,
    url_safe_owner,
)
from redrive.core.recreate import original_id
from redrive.core.state import TaskState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
QUEUE = QueueName("p", "l", "billing")
TASK = QUEUE.task("inv-441")
PARKING = QueueName("p", "l", "redrive-parking")


def emulator_rule(rule: RetryRule) -> SimpleNamespace:
    seconds = int(rule.max_retry_duration_s)
    return SimpleNamespace(
        max_attempts=rule.max_attempts,
        max_retry_duration=SimpleNamespace(seconds=seconds, nanos=0),
    )


@given(
    st.integers(min_value=-1, max_value=50).filter(lambda n: n != 0),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=60),
    st.integers(min_value=0, max_value=20_000),
)
def test_the_stop_rule_matches_the_emulators_model(attempts_max, duration_s, attempts, age_s):
    rule = RetryRule(attempts_max, float(duration_s))
    assert retries_exhausted(rule, attempts, float(age_s)) == emulator_model.retries_exhausted(
        emulator_rule(rule), attempts, float(age_s)
    )


@pytest.mark.parametrize(
    ("rule", "attempts", "age_s", "deleted"),
    [
        (RetryRule(3, 0), 2, 0, False),
        (RetryRule(3, 0), 3, 0, True),
        (RetryRule(-1, 0), 10_000, 10**9, False),  # both unlimited: until the retention limit
        (RetryRule(-1, 600), 99, 599, False),
        (RetryRule(-1, 600), 2, 600, True),  # -1 attempts: the duration alone decides
        (RetryRule(5, 600), 5, 599, False),  # both limits must be used up
        (RetryRule(5, 600), 4, 601, False),
        (RetryRule(5, 600), 5, 600, True),
        (RetryRule(1, 0), 1, 0, True),
    ],
)
def test_stop_rule_table(rule, attempts, age_s, deleted):
    assert retries_exhausted(rule, attempts, age_s) is deleted


def failing(
    dispatch_count: int,
    *,
    next_in_s: float = 3600,
    first_ago_s: float = 600,
    created_ago_s: float = 700,
    deadline_s: float | None = None,
    in_flight: bool = False,
    status: int | None = 13,
) -> TaskState:
    last = NOW - timedelta(seconds=5)
    return TaskState(
        TASK,
        dispatch_count=dispatch_count,
        response_count=dispatch_count,
        schedule_time=NOW + timedelta(seconds=next_in_s),
        create_time=NOW - timedelta(seconds=created_ago_s),
        first_dispatch_time=NOW - timedelta(seconds=first_ago_s),
        last_dispatch_time=last,
        last_response_time=None if in_flight else last + timedelta(seconds=1),
        last_status_code=None if in_flight else status,
        dispatch_deadline_s=deadline_s,
    )


def check(state: TaskState, rule: RetryRule, **kwargs):
    return park_check(state, rule, now=NOW, margin_s=30, **kwargs)


@pytest.mark.parametrize(
    ("state", "rule", "verdict", "why"),
    [
        (failing(2), RetryRule(3, 0), Verdict.PARK, Why.LAST_ATTEMPT),
        (failing(1), RetryRule(3, 0), Verdict.NOT_LAST, None),
        (failing(9), RetryRule(-1, 0), Verdict.NOT_LAST, None),
        # max_retry_duration 2 h, first attempt 10 min ago, next in 1 h: not yet...
        (failing(5, next_in_s=3600), RetryRule(-1, 7200), Verdict.NOT_LAST, None),
        # ...next in 1 h 45 min plus the 10-minute dispatch deadline: past the 2 h, the last one.
        (failing(5, next_in_s=6300), RetryRule(-1, 7200), Verdict.PARK, Why.LAST_ATTEMPT),
        # A short dispatch deadline moves that point.
        (
            failing(5, next_in_s=6300, deadline_s=60),
            RetryRule(-1, 7200),
            Verdict.NOT_LAST,
            None,
        ),
        # Both limits: attempts not used up yet, however old.
        (failing(2, first_ago_s=10**6), RetryRule(5, 60), Verdict.NOT_LAST, None),
        (failing(4, first_ago_s=10**6), RetryRule(5, 60), Verdict.PARK, Why.LAST_ATTEMPT),
        # Due too soon, or overdue (a paused queue): not parked, said why.
        (failing(2, next_in_s=10), RetryRule(3, 0), Verdict.TOO_SOON, Why.LAST_ATTEMPT),
        (failing(2, next_in_s=-100), RetryRule(3, 0), Verdict.TOO_SOON, Why.LAST_ATTEMPT),
        (failing(2, in_flight=True), RetryRule(3, 0), Verdict.IN_FLIGHT, None),
        (failing(2, status=0), RetryRule(3, 0), Verdict.NOT_FAILING, None),
        # Unlimited retries, created 30 days ago, next attempt in 12 h: retention.
        (
            failing(40, next_in_s=12 * 3600, created_ago_s=30 * 86400, first_ago_s=30 * 86400),
            RetryRule(-1, 0),
            Verdict.PARK,
            Why.RETENTION,
        ),
        (
            failing(40, next_in_s=3600, created_ago_s=20 * 86400, first_ago_s=20 * 86400),
            RetryRule(-1, 0),
            Verdict.NOT_LAST,
            None,
        ),
    ],
)
def test_park_rule(state, rule, verdict, why):
    got = check(state, rule)
    assert (got.verdict, got.why) == (verdict, why), got.reason
    assert got.reason


def test_a_tasks_own_retry_config_wins() -> None:
    queue = RetryRule(100, 0)
    own = TaskState(TASK, retry_max_attempts=3)
    assert queue.merged(own) == RetryRule(3, 0)
    assert queue.merged(TaskState(TASK)) == queue
    assert queue.merged(TaskState(TASK, retry_max_duration_s=60.0)) == RetryRule(100, 60.0)


def test_no_schedule_means_nothing_to_decide() -> None:
    state = TaskState(TASK, dispatch_count=2, last_status_code=13, last_dispatch_time=NOW)
    assert check(state, RetryRule(3, 0)).verdict is Verdict.NO_SCHEDULE


task_ids = st.from_regex(r"[A-Za-z0-9_-]{1,500}", fullmatch=True)


@given(task_ids, st.integers(min_value=0, max_value=10**6), st.integers(1, 20))
def test_names_stay_in_the_grammar_and_apart(task_id, dispatch_count, rung):
    origin = QueueName("p", "l", "q" * 100).task(task_id)
    copy = parked_name(PARKING, origin, dispatch_count, rung)
    assert len(copy.task) <= 500 and copy.queue_name == PARKING
    assert copy != parked_name(PARKING, origin, dispatch_count, rung + 1)
    assert copy != parked_name(PARKING, origin, dispatch_count + 1, rung)
    again = restored_name(origin, copy, rung)
    assert len(again.task) <= 500 and again.queue_name == origin.queue_name
    # Restored again and again, the name never grows: the copy suffix is replaced.
    assert original_id(restored_name(again, copy, rung)) == original_id(origin)


times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


parked_records = st.builds(
    Parked,
    origin=task_ids.map(QUEUE.task),
    dispatch_count=st.integers(min_value=0, max_value=10**9),
    parked_at=times,
    why=st.sampled_from(list(Why)),
    api=st.sampled_from(["v2", "v2beta3"]),
    status=st.one_of(st.none(), st.sampled_from(["INTERNAL", "UNAVAILABLE"])),
    status_code=st.one_of(st.none(), st.integers(min_value=0, max_value=16)),
    failed_at=st.one_of(st.none(), times),
    first_attempt_at=st.one_of(st.none(), times),
    origin_created_at=st.one_of(st.none(), times),
    owner=st.text(max_size=100),
)


@given(parked_records)
def test_the_parked_record_survives_its_url(parked):
    url = parked.url()
    assert url.startswith(f"https://{PARKED_HOST}/") and len(url) <= URL_MAX
    assert Parked.from_url(url) == replace(parked, owner=url_safe_owner(parked.owner))


def test_the_longest_names_fit_cloud_tasks_url_limit() -> None:
    longest = TaskName("p" * 100, "l" * 63, "q" * 100, "t" * 500)
    when = datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    parked = Parked(
        longest,
        10**9,
        when,
        Why.LAST_ATTEMPT,
        "v2beta3",
        status="UNAUTHENTICATED",
        status_code=16,
        failed_at=when,
        first_attempt_at=when,
        origin_created_at=when,
        owner="\u2603" * 200,
    )
    assert len(parked.url()) <= URL_MAX


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "https://example.com/v1?task=x",
        f"https://{PARKED_HOST}/other?task=x",
        f"https://{PARKED_HOST}/v1?task=not-a-task&dc=1&at=2026-01-01T00:00:00Z&why=retention",
        f"https://{PARKED_HOST}/v1?task={TASK}&dc=x&at=2026-01-01T00:00:00Z&why=retention",
        f"https://{PARKED_HOST}/v1?task={TASK}&dc=1&at=2026-01-01T00:00:00Z&why=bored",
        f"https://{PARKED_HOST}/v1?dc=1",
    ],
)
def test_anything_else_is_no_parked_record(url):
    assert Parked.from_url(url) is None


def test_restore_scopes() -> None:
    parked = Parked(TASK, 2, NOW, Why.LAST_ATTEMPT, "v2beta3", failed_at=NOW - timedelta(hours=1))
    copy = parked_name(PARKING, TASK, 2, 1)
    assert RestoreScope(queues=frozenset({QUEUE})).takes(parked, copy)
    assert RestoreScope(tasks=frozenset({str(TASK)})).takes(parked, copy)
    assert RestoreScope(tasks=frozenset({str(copy)})).takes(parked, copy)
    assert RestoreScope(everything=True).takes(parked, copy)
    assert not RestoreScope(queues=frozenset({QueueName("p", "l", "other")})).takes(parked, copy)
    assert not RestoreScope().takes(parked, copy)
    # A deploy restores only failures that came before it.
    assert RestoreScope(everything=True, fixed_by=NOW).takes(parked, copy)
    assert not RestoreScope(everything=True, fixed_by=NOW - timedelta(hours=2)).takes(parked, copy)
    untimed = Parked(TASK, 2, NOW, Why.LAST_ATTEMPT, "v2beta3")
    assert not RestoreScope(everything=True, fixed_by=NOW).takes(untimed, copy)  # parked at NOW
    assert RestoreScope(everything=True, fixed_by=NOW + timedelta(seconds=1)).takes(untimed, copy)


def test_a_task_name_is_a_task_name() -> None:
    assert TaskName.parse(str(parked_name(PARKING, TASK, 1, 1)))
