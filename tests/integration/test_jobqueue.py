"""JobQueue (many CreateTask calls on one event loop) against the real emulator."""

from __future__ import annotations

import grpc
import pytest

from redrive.adapters.jobqueue import JobQueue
from redrive.core import errors
from redrive.core.config import Settings
from redrive.core.jobs import JobTask
from redrive.core.names import QueueName
from tests.integration.helpers import Stack

URL = "http://127.0.0.1:9/run_job"


def settings(stack: Stack, api: str = "v2beta3") -> Settings:
    return Settings.from_env(
        {**stack.emu.env(), "REDRIVE_TASKS_API": api, "REDRIVE_RETRY_DEADLINE_S": "0.5"}
    )


def names_in(stack: Stack, queue: str) -> set[str]:
    return {t.name for t in stack.client.list_tasks(request={"parent": queue, "page_size": 1000})}


def jobs(queue: str, prefix: str, n: int) -> list[JobTask]:
    return [JobTask(f"{queue}/tasks/{prefix}-{i:03d}", URL, b"{}", None) for i in range(n)]


@pytest.mark.parametrize("api", ["v2", "v2beta3"])
def test_creates_each_job_once_and_answers_in_order(stack: Stack, api: str) -> None:
    queue = stack.queue(f"jq-{api}", paused=True)
    specs = jobs(queue, "j", 60)
    creator = JobQueue(settings(stack, api), concurrency=8)
    try:
        assert creator.create_all(QueueName.parse(queue), specs) == [True] * 60
        # The same names again (a redelivered sweep): ALREADY_EXISTS for each, nothing new.
        again = specs[:30] + jobs(queue, "k", 2)
        assert creator.create_all(QueueName.parse(queue), again) == [False] * 30 + [True] * 2
        assert creator.create_all(QueueName.parse(queue), []) == []
    finally:
        creator.close()
        creator.close()  # idempotent
    assert names_in(stack, queue) == {s.name for s in specs} | {s.name for s in jobs(queue, "k", 2)}
    task = stack.client.get_task(request={"name": specs[0].name, "response_view": 2})
    assert task.http_request.url == URL and task.http_request.http_method.name == "POST"


def test_one_jobs_error_does_not_hide_the_others(stack: Stack) -> None:
    queue = stack.queue("jq-errors", paused=True)
    creator = JobQueue(settings(stack), concurrency=4)
    stack.emu.control.fail("CreateTask", grpc.StatusCode.PERMISSION_DENIED, times=1)
    try:
        answers = creator.create_all(QueueName.parse(queue), jobs(queue, "e", 20))
    finally:
        stack.emu.control.clear()
        creator.close()
    denied = [a for a in answers if isinstance(a, errors.PermissionDeniedError)]
    assert len(denied) == 1 and "PERMISSION_DENIED" in str(denied[0])
    assert answers.count(True) == 19


def test_transient_faults_are_retried_within_the_deadline(stack: Stack) -> None:
    queue = stack.queue("jq-transient", paused=True)
    creator = JobQueue(settings(stack), concurrency=4)
    try:
        stack.emu.control.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, times=3)
        assert creator.create_all(QueueName.parse(queue), jobs(queue, "t", 5)) == [True] * 5
        # A fault that outlasts the 0.5 s retry deadline: a transient error per job, never True.
        stack.emu.control.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, times=-1)
        answers = creator.create_all(QueueName.parse(queue), jobs(queue, "u", 3))
    finally:
        stack.emu.control.clear()
        creator.close()
    assert all(isinstance(a, errors.TransientError) for a in answers), answers
    assert names_in(stack, queue) == {s.name for s in jobs(queue, "t", 5)}


def test_concurrency_must_be_positive(stack: Stack) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        JobQueue(settings(stack), concurrency=0)
