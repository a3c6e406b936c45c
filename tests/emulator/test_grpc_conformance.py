"""Every Cloud Tasks method through the official client over gRPC, for v2 and v2beta3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from cloudtasks_emulator import Emulator

from .conftest import LOCATION, client

TYPES = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}
APIS = ["v2", "v2beta3"]
FAR = "http://127.0.0.1:9/never"  # tasks scheduled far ahead are never dispatched here


def _future(days: float = 1) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(UTC) + timedelta(days=days))
    return ts


def _queue(c: Any, qid: str, **fields: Any) -> Any:
    return c.create_queue(parent=LOCATION, queue={"name": f"{LOCATION}/queues/{qid}", **fields})


def _task(c: Any, queue: str, tid: str | None = None, **fields: Any) -> Any:
    task: dict[str, Any] = {
        "http_request": {"url": FAR, "body": b"payload"},
        "schedule_time": _future(),
        **fields,
    }
    if tid:
        task["name"] = f"{queue}/tasks/{tid}"
    return c.create_task(request={"parent": queue, "task": task})


@pytest.mark.parametrize("api", APIS)
def test_queue_lifecycle(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    t = TYPES[api]
    q = _queue(
        c,
        "billing",
        rate_limits={"max_dispatches_per_second": 5, "max_concurrent_dispatches": 7},
        retry_config={"max_attempts": 5, "min_backoff": duration_pb2.Duration(seconds=10)},
    )
    assert q.name == f"{LOCATION}/queues/billing"
    assert q.state == t.Queue.State.RUNNING
    assert q.rate_limits.max_dispatches_per_second == 5
    assert q.rate_limits.max_concurrent_dispatches == 7
    assert q.rate_limits.max_burst_size >= 1
    assert q.retry_config.max_attempts == 5
    assert q.retry_config.min_backoff == timedelta(seconds=10)
    assert q.retry_config.max_backoff == timedelta(seconds=3600)  # default filled in
    assert q.retry_config.max_doublings == 16
    assert c.get_queue(name=q.name) == q

    with pytest.raises(gexc.AlreadyExists):
        _queue(c, "billing")

    paused = c.pause_queue(name=q.name)
    assert paused.state == t.Queue.State.PAUSED
    assert c.get_queue(name=q.name).state == t.Queue.State.PAUSED
    assert c.resume_queue(name=q.name).state == t.Queue.State.RUNNING

    _task(c, q.name, "a")
    _task(c, q.name, "b")
    purged = c.purge_queue(name=q.name)
    assert purged.purge_time is not None and purged.purge_time.year >= 2024
    assert list(c.list_tasks(parent=q.name)) == []

    c.delete_queue(name=q.name)
    with pytest.raises(gexc.NotFound):
        c.get_queue(name=q.name)
    with pytest.raises(gexc.NotFound):
        c.delete_queue(name=q.name)


@pytest.mark.parametrize("api", APIS)
def test_update_queue_with_and_without_mask(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    q = _queue(c, "upd", rate_limits={"max_dispatches_per_second": 5})
    q2 = c.update_queue(
        queue={"name": q.name, "rate_limits": {"max_dispatches_per_second": 2}},
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert q2.rate_limits.max_dispatches_per_second == 2
    assert q2.retry_config == q.retry_config
    masked = c.update_queue(
        queue={"name": q.name, "retry_config": {"max_attempts": 3}},
        update_mask=field_mask_pb2.FieldMask(paths=["retry_config.max_attempts"]),
    )
    assert masked.retry_config.max_attempts == 3
    assert masked.rate_limits.max_dispatches_per_second == 2
    # without a mask every field is replaced: unset ones fall back to the defaults
    full = c.update_queue(queue={"name": q.name, "retry_config": {"max_attempts": 9}})
    assert full.retry_config.max_attempts == 9
    assert full.rate_limits.max_dispatches_per_second == 500
    with pytest.raises(gexc.InvalidArgument):
        c.update_queue(
            queue={"name": q.name},
            update_mask=field_mask_pb2.FieldMask(paths=["no_such_field"]),
        )
    with pytest.raises(gexc.InvalidArgument):
        c.update_queue(queue={"name": q.name, "rate_limits": {"max_dispatches_per_second": 501}})
    # UpdateQueue creates a missing queue
    created = c.update_queue(queue={"name": f"{LOCATION}/queues/made-by-update"})
    assert c.get_queue(name=created.name).name == created.name


@pytest.mark.parametrize("api", APIS)
def test_task_methods(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    t = TYPES[api]
    q = _queue(c, "work")
    created = _task(c, q.name, "inv-441", dispatch_deadline=duration_pb2.Duration(seconds=60))
    assert created.name == f"{q.name}/tasks/inv-441"
    assert created.view == t.Task.View.BASIC
    assert created.http_request.body == b""
    assert created.dispatch_count == 0 and created.response_count == 0
    assert created.dispatch_deadline == timedelta(seconds=60)
    assert created.create_time.microsecond == 0  # truncated to seconds

    got = c.get_task(request={"name": created.name, "response_view": t.Task.View.FULL})
    assert got.view == t.Task.View.FULL
    assert got.http_request.body == b"payload"
    assert got.http_request.url == FAR

    generated = _task(c, q.name)
    assert generated.name.startswith(f"{q.name}/tasks/")
    assert generated.name.rsplit("/", 1)[1].isdigit()

    names = [x.name for x in c.list_tasks(parent=q.name)]
    assert names == [created.name, generated.name]

    c.delete_task(name=generated.name)
    with pytest.raises(gexc.NotFound):
        c.get_task(name=generated.name)
    with pytest.raises(gexc.NotFound):
        c.delete_task(name=generated.name)

    ran = c.run_task(name=created.name)
    assert ran.dispatch_count == 1
    assert ran.last_attempt.dispatch_time is not None
    assert ran.first_attempt.dispatch_time == ran.last_attempt.dispatch_time


@pytest.mark.parametrize("api", APIS)
def test_errors(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    q = _queue(c, "errs")
    missing_q = f"{LOCATION}/queues/nope"
    with pytest.raises(gexc.NotFound):
        c.get_queue(name=missing_q)
    with pytest.raises(gexc.NotFound):
        _task(c, missing_q, "x")
    with pytest.raises(gexc.NotFound):
        c.get_task(name=f"{q.name}/tasks/never")
    with pytest.raises(gexc.NotFound):
        c.run_task(name=f"{q.name}/tasks/never")
    with pytest.raises(gexc.InvalidArgument):
        c.get_task(name=f"{q.name}/tasks/bad.id")
    with pytest.raises(gexc.InvalidArgument):
        c.get_queue(name=f"{LOCATION}/queues/under_score")
    with pytest.raises(gexc.InvalidArgument):
        _queue(c, "a" * 101)
    with pytest.raises(gexc.InvalidArgument):
        _task(c, q.name, "t", http_request={"url": "ftp://x/y"})
    with pytest.raises(gexc.InvalidArgument):
        _task(c, q.name, "t", http_request={"url": FAR, "http_method": "GET", "body": b"x"})
    with pytest.raises(gexc.InvalidArgument):
        _task(c, q.name, "t", dispatch_deadline=duration_pb2.Duration(seconds=5))
    with pytest.raises(gexc.InvalidArgument):
        _task(c, q.name, "t", schedule_time=_future(days=31))
    with pytest.raises(gexc.InvalidArgument):
        c.create_task(request={"parent": q.name, "task": {"name": f"{q.name}/tasks/t"}})
    with pytest.raises(gexc.InvalidArgument):
        _task(c, q.name, None, name=f"{LOCATION}/queues/other/tasks/t")
    _task(c, q.name, "dup")
    with pytest.raises(gexc.AlreadyExists):
        _task(c, q.name, "dup")


@pytest.mark.parametrize("api", APIS)
def test_iam_methods_are_unimplemented(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    q = _queue(c, "iam")
    with pytest.raises(gexc.MethodNotImplemented, match="IAM"):
        c.get_iam_policy(request={"resource": q.name})
    with pytest.raises(gexc.MethodNotImplemented):
        c.set_iam_policy(request={"resource": q.name, "policy": {}})
    with pytest.raises(gexc.MethodNotImplemented):
        c.test_iam_permissions(request={"resource": q.name, "permissions": ["x"]})
