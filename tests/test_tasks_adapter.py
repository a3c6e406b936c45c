# mypy: disable-error-code="no-untyped-call"
"""The Cloud Tasks adapter against a fake client (a Protocol parameter, no patching)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2beta3

from redrive.adapters.cloudtasks import CloudTasks
from redrive.adapters.translate import translate
from redrive.core import errors
from redrive.core.jobs import JobTask
from redrive.core.names import QueueName, TaskName
from redrive.core.state import TaskState

NAME = "projects/acme/locations/europe-west1/queues/billing/tasks/inv-441"
TASK = TaskName.parse(NAME)


def proto_task(dispatch_count: int = 3) -> tasks_v2beta3.Task:
    return tasks_v2beta3.Task(
        name=NAME,
        dispatch_count=dispatch_count,
        response_count=3,
        http_request={"url": "https://billing.example/x", "body": b"{}"},
        last_attempt={
            "dispatch_time": datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
            "response_time": datetime(2026, 11, 29, 8, 0, 1, tzinfo=UTC),
            "response_status": {"code": 13, "message": "HTTP status code 500"},
        },
    )


class FakeTasks:
    """Answers from scripts: each method pops the next item (an exception or a Task)."""

    def __init__(self, **scripts: list[Any]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def _answer(self, method: str, request: dict[str, Any], kwargs: dict[str, Any]) -> Any:
        self.calls.append((method, request, kwargs))
        item = self.scripts[method].pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def get_task(self, request: Any = None, **kwargs: Any) -> Any:
        return self._answer("get_task", request, kwargs)

    def run_task(self, request: Any = None, **kwargs: Any) -> Any:
        return self._answer("run_task", request, kwargs)

    def create_task(self, request: Any = None, **kwargs: Any) -> Any:
        return self._answer("create_task", request, kwargs)

    def list_tasks(self, request: Any = None, **kwargs: Any) -> Any:
        return self._answer("list_tasks", request, kwargs)

    def delete_task(self, request: Any = None, **kwargs: Any) -> Any:
        return self._answer("delete_task", request, kwargs)

    def get_queue(self, request: Any = None, **kwargs: Any) -> Any:
        return self._answer("get_queue", request, kwargs)

    def count(self, method: str) -> int:
        return sum(1 for m, _, _ in self.calls if m == method)


def adapter(fake: FakeTasks, view: str = "BASIC", deadline_s: float = 2.0) -> CloudTasks:
    return CloudTasks(
        fake,
        response_view=view,
        retry_deadline_s=deadline_s,
        backoff_initial_s=0.001,
    )


def test_get_reads_state_and_disables_the_client_retry():
    fake = FakeTasks(get_task=[proto_task()])
    state = adapter(fake, view="FULL").get(TASK)
    assert state == TaskState.from_task(proto_task())
    assert state is not None and state.last_status_code == 13 and state.in_flight is False
    _, request, kwargs = fake.calls[0]
    assert request == {"name": NAME, "response_view": 2}
    assert kwargs["retry"] is None


def test_get_not_found_is_none():
    assert adapter(FakeTasks(get_task=[gexc.NotFound("gone")])).get(TASK) is None


def test_get_retries_transient_codes_then_succeeds():
    fake = FakeTasks(
        get_task=[gexc.ServiceUnavailable("x"), gexc.DeadlineExceeded("y"), proto_task()]
    )
    assert adapter(fake).get(TASK) is not None
    assert fake.count("get_task") == 3


def test_get_gives_up_at_the_deadline_as_transient():
    fake = FakeTasks(get_task=[gexc.ServiceUnavailable("down")] * 10_000)
    with pytest.raises(errors.TransientError):
        adapter(fake, deadline_s=0.05).get(TASK)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (gexc.PermissionDenied("no"), errors.PermissionDeniedError),
        (gexc.Unauthenticated("no"), errors.PermissionDeniedError),
        (gexc.InvalidArgument("bad"), errors.InvalidRequestError),
        (gexc.FailedPrecondition("pull"), errors.InvalidRequestError),
    ],
)
def test_get_permanent_errors_are_translated_without_retry(exc, expected):
    fake = FakeTasks(get_task=[exc, proto_task()])
    with pytest.raises(expected):
        adapter(fake).get(TASK)
    assert fake.count("get_task") == 1


def test_run_returns_the_dispatched_state():
    fake = FakeTasks(run_task=[proto_task(4)])
    result = adapter(fake).run(TASK, TaskState.from_task(proto_task(3)))
    assert result.dispatched and result.confirmed_by == "RunTask"
    assert result.state is not None and result.state.dispatch_count == 4
    assert fake.calls[0][2]["retry"] is None


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (gexc.NotFound("done"), errors.NotFoundError),
        (gexc.PermissionDenied("run"), errors.PermissionDeniedError),
        (gexc.ResourceExhausted("quota"), errors.QuotaExceededError),
    ],
)
def test_run_errors_are_not_retried(exc, expected):
    fake = FakeTasks(run_task=[exc, proto_task(4)])
    with pytest.raises(expected):
        adapter(fake).run(TASK, TaskState.from_task(proto_task()))
    assert fake.count("run_task") == 1 and fake.count("get_task") == 0


def test_run_timeout_that_did_dispatch_is_confirmed_by_get_and_not_repeated():
    fake = FakeTasks(run_task=[gexc.DeadlineExceeded("slow")], get_task=[proto_task(4)])
    result = adapter(fake).run(TASK, TaskState.from_task(proto_task(3)))
    assert result.dispatched and result.confirmed_by == "GetTask"
    assert fake.count("run_task") == 1


@pytest.mark.parametrize("exc", [gexc.ServiceUnavailable("blip"), gexc.DeadlineExceeded("slow")])
def test_run_whose_outcome_is_unknown_is_never_called_again(exc):
    # The service may still dispatch after the look: a second RunTask could run it twice.
    fake = FakeTasks(run_task=[exc, proto_task(4)], get_task=[proto_task(3)])
    with pytest.raises(errors.OutcomeUnknownError):
        adapter(fake).run(TASK, TaskState.from_task(proto_task(3)))
    assert [m for m, _, _ in fake.calls] == ["run_task", "get_task"]


def test_run_timeout_and_task_gone_is_not_found():
    fake = FakeTasks(run_task=[gexc.DeadlineExceeded("slow")], get_task=[gexc.NotFound("gone")])
    with pytest.raises(errors.NotFoundError):
        adapter(fake).run(TASK, TaskState.from_task(proto_task(3)))


def test_get_full_reads_the_body_with_the_full_view():
    task = proto_task(2)
    task.http_request.body = b'{"v":1}'
    fake = FakeTasks(get_task=[task, gexc.NotFound("gone")])
    state, body = adapter(fake).get_full(str(TASK)) or (None, b"")
    assert state is not None and state.dispatch_count == 2 and body == b'{"v":1}'
    assert fake.calls[0][1]["response_view"] == 2
    assert adapter(fake).get_full(str(TASK)) is None


JOB = JobTask(
    name="projects/acme/locations/europe-west1/queues/redrive/tasks/abc-d3",
    url="https://run-job.example/",
    body=b'{"v":1}',
    service_account="redrive@acme.iam.gserviceaccount.com",
)
REDRIVE = QueueName.parse("projects/acme/locations/europe-west1/queues/redrive")


def test_create_job_request_and_duplicate():
    fake = FakeTasks(create_task=[tasks_v2beta3.Task(name=JOB.name), gexc.AlreadyExists("dup")])
    tasks = adapter(fake)
    assert tasks.create(REDRIVE, JOB) is True
    assert tasks.create(REDRIVE, JOB) is False
    request = fake.calls[0][1]
    assert request["parent"] == str(REDRIVE)
    assert request["task"]["http_request"]["oidc_token"]["audience"] == JOB.url
    # The request dict is accepted by the real request type of both versions.
    tasks_v2beta3.CreateTaskRequest(request)
    from google.cloud import tasks_v2

    tasks_v2.CreateTaskRequest(request)


def test_create_retries_transient_then_meets_its_own_name():
    fake = FakeTasks(create_task=[gexc.ServiceUnavailable("lost"), gexc.AlreadyExists("dup")])
    assert adapter(fake).create(REDRIVE, JOB) is False
    assert fake.count("create_task") == 2


def test_retry_error_is_translated_with_its_cause():
    err = translate(gexc.RetryError("deadline", gexc.ResourceExhausted("quota")))
    assert isinstance(err, errors.QuotaExceededError)
