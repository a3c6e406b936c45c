# mypy: disable-error-code="no-untyped-call"
"""handle_signal / handle_job logic in-process, with fake clients passed through a Runtime."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from redrive import entry
from redrive.adapters.cloudtasks import CloudTasks
from redrive.adapters.log import OutcomeLog
from redrive.adapters.ratelimit import TokenBucket
from redrive.core import errors
from redrive.core.config import Settings
from redrive.runtime import Runtime
from tests.test_tasks_adapter import NAME, FakeTasks, proto_task

QUEUE = NAME.rsplit("/tasks/", 1)[0]
NOW = datetime(2026, 11, 29, 8, 5, tzinfo=UTC)  # 5 minutes after the failed attempt


class Event(dict[str, Any]):
    """What functions-framework hands over: attributes by key, the data dict as `.data`."""

    def __init__(self, data: Any, **attrs: Any) -> None:
        super().__init__(id="m-1", time=NOW.isoformat(), **attrs)
        self.data = data


def event(payload: bytes, message_id: str = "m-1") -> Event:
    return Event(
        {
            "message": {
                "data": base64.b64encode(payload).decode(),
                "messageId": message_id,
                "publishTime": (NOW - timedelta(minutes=1)).isoformat(),
            }
        }
    )


def runtime(fake: FakeTasks, **settings: Any) -> tuple[Runtime, io.StringIO]:
    stream = io.StringIO()
    values: dict[str, Any] = {
        "REDRIVE_ALLOWED_QUEUES": QUEUE,
        "REDRIVE_FIX_CHECK": "none",
        **settings,
    }
    rt = Runtime(
        Settings.from_env(values),
        tasks=CloudTasks(fake, retry_deadline_s=0.05, backoff_initial_s=0.001),
        log=OutcomeLog(stream),
        clock=lambda: NOW,
    )
    return rt, stream


def records(stream: io.StringIO, event_name: str = "redrive.outcome") -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    return [x for x in lines if x.get("event") == event_name]


def test_direct_mode_runs_once_and_logs_a_summary():
    fake = FakeTasks(get_task=[proto_task(1)], run_task=[proto_task(2)])
    rt, out = runtime(fake)
    entry.handle_signal(event(NAME.encode()), rt)
    (line,) = records(out)
    assert line["outcome"] == "DISPATCHED" and line["run"]["dispatch_count_after"] == 2
    (summary,) = records(out, "redrive.signal")
    assert summary["counts"] == {"DISPATCHED": 1}


def test_transient_fault_logs_then_raises_for_redelivery():
    fake = FakeTasks(get_task=[gexc.ServiceUnavailable("down")] * 10_000)
    rt, out = runtime(fake)
    with pytest.raises(errors.RedeliverError):
        entry.handle_signal(event(NAME.encode()), rt)
    assert [x["outcome"] for x in records(out)] == ["FAILED"]
    assert records(out, "redrive.signal")[0]["outcome"] == "FAILED"


def test_throttle_without_a_slot_is_failed_not_run():
    fake = FakeTasks(get_task=[proto_task(1)], run_task=[proto_task(2)])
    rt, out = runtime(fake, REDRIVE_RETRY_DEADLINE_S="0")
    rt.limiter = TokenBucket(0.001, clock=lambda: 0.0, sleep=lambda s: None)
    assert rt.limiter.acquire()  # the only token is gone for ~17 minutes
    with pytest.raises(errors.RedeliverError):
        entry.handle_signal(event(NAME.encode()), rt)
    (line,) = records(out)
    assert line["outcome"] == "FAILED" and "rate limit" in line["reason"]
    assert fake.count("run_task") == 0


def test_queued_dry_run_enqueues_nothing():
    fake = FakeTasks(get_task=[proto_task(1)])
    rt, out = runtime(
        fake,
        REDRIVE_QUEUE="projects/acme/locations/europe-west1/queues/redrive",
        REDRIVE_JOB_URL="https://run-job.example/",
        REDRIVE_DRY_RUN="true",
    )
    entry.handle_signal(event(NAME.encode()), rt)
    (line,) = records(out)
    assert line["outcome"] == "DRY_RUN" and line["job"]
    assert fake.count("create_task") == 0


@pytest.mark.parametrize("data", [b"not a dict", ["list"]])
def test_cloudevent_data_that_is_not_an_object_is_invalid(data):
    rt, out = runtime(FakeTasks())
    entry.handle_signal(Event(data), rt)
    assert [x["outcome"] for x in records(out)] == ["INVALID_SIGNAL"]


def test_run_job_in_direct_mode_is_refused():
    rt, out = runtime(FakeTasks())
    status, body = entry.handle_job(b"{}", {"X-CloudTasks-QueueName": "redrive"}, rt)
    assert status == 403 and body["outcome"] == "INVALID_SIGNAL"
    assert "REDRIVE_QUEUE" in records(out)[0]["reason"]
