"""TaskState.from_task: every field, from both API versions, proto-plus and raw protobuf alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import tasks_v2, tasks_v2beta3

from redrive.core.names import TaskName
from redrive.core.state import TaskState

NAME = "projects/acme/locations/europe-west1/queues/billing/tasks/inv-441"


def full_task(module: Any) -> Any:
    return module.Task(
        name=NAME,
        dispatch_count=4,
        response_count=3,
        schedule_time=datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
        create_time=datetime(2026, 11, 29, 7, 0, tzinfo=UTC),
        http_request={"url": "https://billing.example/x", "body": b"secret"},
        first_attempt={"dispatch_time": datetime(2026, 11, 29, 7, 0, 1, 250_000, tzinfo=UTC)},
        last_attempt={
            "schedule_time": datetime(2026, 11, 29, 7, 59, 59, tzinfo=UTC),
            "dispatch_time": datetime(2026, 11, 29, 8, 0, 0, 123_456, tzinfo=UTC),
            "response_time": datetime(2026, 11, 29, 8, 0, 1, tzinfo=UTC),
            "response_status": {"code": 13, "message": "HTTP status code 500"},
        },
    )


EXPECTED = TaskState(
    name=TaskName.parse(NAME),
    dispatch_count=4,
    response_count=3,
    schedule_time=datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
    create_time=datetime(2026, 11, 29, 7, 0, tzinfo=UTC),
    first_dispatch_time=datetime(2026, 11, 29, 7, 0, 1, 250_000, tzinfo=UTC),
    last_schedule_time=datetime(2026, 11, 29, 7, 59, 59, tzinfo=UTC),
    last_dispatch_time=datetime(2026, 11, 29, 8, 0, 0, 123_456, tzinfo=UTC),
    last_response_time=datetime(2026, 11, 29, 8, 0, 1, tzinfo=UTC),
    last_status_code=13,
    last_status_message="HTTP status code 500",
    target_url="https://billing.example/x",
)


@pytest.mark.parametrize("module", [tasks_v2, tasks_v2beta3], ids=["v2", "v2beta3"])
@pytest.mark.parametrize("raw", [False, True], ids=["proto-plus", "raw"])
def test_every_field_is_read(module: Any, raw: bool) -> None:
    task = full_task(module)
    state = TaskState.from_task(module.Task.pb(task) if raw else task)
    assert state == EXPECTED
    assert state.last_failed and not state.in_flight and state.last_status == "INTERNAL"
    assert state.failed_at == EXPECTED.last_dispatch_time


@pytest.mark.parametrize("module", [tasks_v2, tasks_v2beta3], ids=["v2", "v2beta3"])
def test_unset_fields_stay_none(module: Any) -> None:
    state = TaskState.from_task(module.Task(name=NAME))
    assert state == TaskState(name=TaskName.parse(NAME))
    assert state.last_status is None and not state.in_flight and not state.last_failed


def test_in_flight_attempt_and_ok_status_are_told_apart() -> None:
    dispatched = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    running = TaskState.from_task(
        tasks_v2.Task(name=NAME, dispatch_count=1, last_attempt={"dispatch_time": dispatched})
    )
    assert running.in_flight and running.last_status_code is None
    ok = TaskState.from_task(
        tasks_v2.Task(
            name=NAME,
            last_attempt={
                "dispatch_time": dispatched,
                "response_time": dispatched,
                "response_status": {"code": 0},
            },
        )
    )
    assert ok.last_status == "OK" and not ok.last_failed and ok.last_status_message is None
