"""The REST front end over real HTTP (httpx): how paths, bodies and query parameters become request
messages, how answers and errors are written, and the control endpoints.

The Cloud Tasks service behind it is a recorder here, so that each test sees exactly the request
message the front end built; tests/emulator/test_rest_clients.py runs the real service."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from google.cloud import tasks_v2, tasks_v2beta3
from google.cloud.location import locations_pb2
from google.cloud.run_v2 import GetServiceRequest
from google.protobuf import empty_pb2, field_mask_pb2

from cloudtasks_emulator.clock import Clock
from cloudtasks_emulator.cloudrun import CloudRunFake
from cloudtasks_emulator.control import Control, RunRecord
from cloudtasks_emulator.errors import RpcError
from cloudtasks_emulator.rest import HTTP_STATUS, RestServer

LOC = "projects/demo/locations/us-central1"
QUEUE = f"{LOC}/queues/q1"
TASK = f"{QUEUE}/tasks/t1"
TYPES = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}


@dataclass
class RecordingService:
    """Answers every call from `answers` (a value, or a callable of the request) and keeps it."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)

    def call(self, api: str, method: str, request: Any) -> Any:
        self.calls.append((api, method, request))
        answer = self.answers.get(method, empty_pb2.Empty())
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


@dataclass
class Stack:
    server: RestServer
    service: RecordingService
    control: Control
    cloudrun: CloudRunFake
    http: httpx.Client

    @property
    def last(self) -> tuple[str, str, Any]:
        return self.service.calls[-1]


@pytest.fixture
def stack() -> Iterator[Stack]:
    service = RecordingService()
    control = Control()
    cloudrun = CloudRunFake(control, Clock())
    server = RestServer("127.0.0.1", 0, service=service, control=control, cloudrun=cloudrun)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
            yield Stack(server, service, control, cloudrun, http)
    finally:
        server.stop()


def _expected_requests(api: str) -> list[tuple[str, str, dict[str, Any] | None, str, Any]]:
    t = TYPES[api]
    view = t.Task.View.FULL
    return [
        ("GET", f"{LOC}/queues", None, "ListQueues", t.ListQueuesRequest(parent=LOC)),
        (
            "POST",
            f"{LOC}/queues",
            {"name": QUEUE, "rateLimits": {"maxDispatchesPerSecond": 5}},
            "CreateQueue",
            t.CreateQueueRequest(
                parent=LOC,
                queue=t.Queue(name=QUEUE, rate_limits=t.RateLimits(max_dispatches_per_second=5)),
            ),
        ),
        ("GET", QUEUE, None, "GetQueue", t.GetQueueRequest(name=QUEUE)),
        (
            "PATCH",
            QUEUE + "?updateMask=retryConfig.maxAttempts,rateLimits.maxConcurrentDispatches",
            {"retryConfig": {"maxAttempts": -1}, "rateLimits": {"maxConcurrentDispatches": 2}},
            "UpdateQueue",
            t.UpdateQueueRequest(
                queue=t.Queue(
                    name=QUEUE,
                    retry_config=t.RetryConfig(max_attempts=-1),
                    rate_limits=t.RateLimits(max_concurrent_dispatches=2),
                ),
                update_mask=field_mask_pb2.FieldMask(
                    paths=["retry_config.max_attempts", "rate_limits.max_concurrent_dispatches"]
                ),
            ),
        ),
        ("DELETE", QUEUE, None, "DeleteQueue", t.DeleteQueueRequest(name=QUEUE)),
        ("POST", f"{QUEUE}:pause", {}, "PauseQueue", t.PauseQueueRequest(name=QUEUE)),
        ("POST", f"{QUEUE}:resume", None, "ResumeQueue", t.ResumeQueueRequest(name=QUEUE)),
        ("POST", f"{QUEUE}:purge", {}, "PurgeQueue", t.PurgeQueueRequest(name=QUEUE)),
        (
            "GET",
            f"{QUEUE}/tasks?responseView=FULL&pageSize=7&pageToken=abc",
            None,
            "ListTasks",
            t.ListTasksRequest(parent=QUEUE, response_view=view, page_size=7, page_token="abc"),
        ),
        (
            "POST",
            f"{QUEUE}/tasks",
            {
                "task": {
                    "name": TASK,
                    "scheduleTime": "2026-01-02T03:04:05Z",
                    "httpRequest": {
                        "url": "http://127.0.0.1:9/x",
                        "httpMethod": "PUT",
                        "headers": {"A": "b"},
                        "body": "aGk=",
                        "oidcToken": {"serviceAccountEmail": "sa@demo.iam.gserviceaccount.com"},
                    },
                },
                "responseView": "FULL",
            },
            "CreateTask",
            t.CreateTaskRequest(
                parent=QUEUE,
                response_view=view,
                task=t.Task(
                    name=TASK,
                    schedule_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                    http_request=t.HttpRequest(
                        url="http://127.0.0.1:9/x",
                        http_method=t.HttpMethod.PUT,
                        headers={"A": "b"},
                        body=b"hi",
                        oidc_token=t.OidcToken(
                            service_account_email="sa@demo.iam.gserviceaccount.com"
                        ),
                    ),
                ),
            ),
        ),
        (
            "GET",
            f"{TASK}?responseView=BASIC",
            None,
            "GetTask",
            t.GetTaskRequest(name=TASK, response_view=t.Task.View.BASIC),
        ),
        ("DELETE", TASK, None, "DeleteTask", t.DeleteTaskRequest(name=TASK)),
        (
            "POST",
            f"{TASK}:run",
            {"responseView": "FULL"},
            "RunTask",
            t.RunTaskRequest(name=TASK, response_view=view),
        ),
    ]


@pytest.mark.parametrize(
    ("api", "case"),
    [(api, i) for api in TYPES for i in range(len(_expected_requests(api)))],
)
def test_every_route_builds_the_request_message(stack: Stack, api: str, case: int) -> None:
    method, path, body, rpc, expected = _expected_requests(api)[case]
    reply = stack.http.request(method, f"/{api}/{path}", json=body)
    assert reply.status_code == 200, reply.text
    called_api, called_rpc, request = stack.last
    assert (called_api, called_rpc) == (api, rpc)
    assert type(request) is type(expected)
    assert request == expected


def test_path_wins_over_the_body_for_the_resource_name(stack: Stack) -> None:
    stack.http.patch(f"/v2/{QUEUE}", json={"name": f"{LOC}/queues/other"})
    assert stack.last[2].queue.name == QUEUE


def test_enums_in_bodies_may_be_numbers(stack: Stack) -> None:
    reply = stack.http.post(
        f"/v2beta3/{QUEUE}/tasks",
        json={"task": {"httpRequest": {"url": "http://x", "httpMethod": 4}}, "responseView": 2},
    )
    assert reply.status_code == 200
    request = stack.last[2]
    assert request.task.http_request.http_method == tasks_v2beta3.HttpMethod.PUT
    assert request.response_view == tasks_v2beta3.Task.View.FULL
    stack.http.get(f"/v2/{TASK}", params={"responseView": "2"})
    assert stack.last[2].response_view == tasks_v2.Task.View.FULL


@pytest.mark.parametrize(
    ("query", "expected_state"),
    [
        ("", "PAUSED"),
        ("?alt=json", "PAUSED"),
        ("?$alt=json;enum-encoding=int", 2),
        ("?%24alt=json%3Benum-encoding%3Dint", 2),
        ("?alt=json&prettyPrint=false&fields=name", "PAUSED"),
    ],
)
def test_enum_encoding_of_answers(stack: Stack, query: str, expected_state: Any) -> None:
    stack.service.answers["GetQueue"] = lambda r: tasks_v2.Queue(
        name=r.name,
        state=tasks_v2.Queue.State.PAUSED,
        rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=500.0),
    )
    reply = stack.http.get(f"/v2/{QUEUE}{query}")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == {
        "name": QUEUE,
        "state": expected_state,
        "rateLimits": {"maxDispatchesPerSecond": 500.0},
    }


def test_pretty_print_false_gives_compact_json(stack: Stack) -> None:
    stack.service.answers["GetQueue"] = tasks_v2.Queue(name=QUEUE)
    assert stack.http.get(f"/v2/{QUEUE}?prettyPrint=false").text == f'{{"name":"{QUEUE}"}}\n'
    assert stack.http.get(f"/v2/{QUEUE}").text == f'{{\n  "name": "{QUEUE}"\n}}\n'


def test_answers_are_camel_case_and_skip_defaults(stack: Stack) -> None:
    stack.service.answers["GetTask"] = tasks_v2beta3.Task(
        name=TASK,
        dispatch_count=2,
        http_request=tasks_v2beta3.HttpRequest(url="http://x", body=b"hi"),
        last_attempt=tasks_v2beta3.Attempt(
            dispatch_time=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    )
    reply = stack.http.get(f"/v2beta3/{TASK}")
    assert reply.json() == {
        "name": TASK,
        "dispatchCount": 2,
        "httpRequest": {"url": "http://x", "body": "aGk="},
        "lastAttempt": {"dispatchTime": "2026-01-01T00:00:00Z"},
    }
    stack.service.answers["DeleteTask"] = empty_pb2.Empty()
    assert stack.http.delete(f"/v2beta3/{TASK}").json() == {}


@pytest.mark.parametrize(
    ("code", "http_status"),
    [(c, s) for c, s in HTTP_STATUS.items() if c != grpc.StatusCode.OK],
    ids=str,
)
def test_service_errors_become_google_error_bodies(
    stack: Stack, code: grpc.StatusCode, http_status: int
) -> None:
    stack.service.answers["GetTask"] = RpcError(code, f"told to fail with {code.name}")
    reply = stack.http.get(f"/v2/{TASK}")
    assert reply.status_code == http_status
    assert reply.json() == {
        "error": {
            "code": http_status,
            "message": f"told to fail with {code.name}",
            "status": code.name,
        }
    }


def test_the_documented_status_mapping() -> None:
    expected = {
        "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
        "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "UNIMPLEMENTED": 501, "INTERNAL": 500,
        "UNAUTHENTICATED": 401,
    }  # fmt: skip
    assert {c.name: s for c, s in HTTP_STATUS.items() if c.name in expected} == expected


def test_an_emulator_bug_is_a_500_with_the_same_body(stack: Stack) -> None:
    stack.service.answers["GetQueue"] = KeyError("boom")
    reply = stack.http.get(f"/v2/{QUEUE}")
    assert reply.status_code == 500
    assert reply.json()["error"]["status"] == "INTERNAL"


@pytest.mark.parametrize(
    ("method", "path", "content", "expected"),
    [
        ("POST", f"/v2/{QUEUE}/tasks", b"{not json", (400, "INVALID_ARGUMENT")),
        ("POST", f"/v2/{QUEUE}/tasks", b"[1, 2]", (400, "INVALID_ARGUMENT")),
        ("POST", f"/v2/{QUEUE}/tasks", b'{"task": {"bogusField": 1}}', (400, "INVALID_ARGUMENT")),
        ("POST", f"/v2/{QUEUE}/tasks", b'{"responseView": "NOPE"}', (400, "INVALID_ARGUMENT")),
        ("GET", f"/v2/{QUEUE}/tasks?pageSize=ten", None, (400, "INVALID_ARGUMENT")),
        ("GET", f"/v2/{QUEUE}/tasks?unknownParam=1", None, (400, "INVALID_ARGUMENT")),
        ("GET", "/v3/" + QUEUE, None, (404, "NOT_FOUND")),
        ("GET", "/v2/projects/demo/queues/q1", None, (404, "NOT_FOUND")),
        ("GET", "/", None, (404, "NOT_FOUND")),
        ("PUT", f"/v2/{QUEUE}", b"{}", (404, "NOT_FOUND")),
        ("GET", f"/v2/{TASK}:run", None, (404, "NOT_FOUND")),
        ("POST", f"/v2/{QUEUE}:getIamPolicy", b"{}", (501, "UNIMPLEMENTED")),
        ("POST", f"/v2beta3/{QUEUE}:setIamPolicy", b"{}", (501, "UNIMPLEMENTED")),
        ("POST", f"/v2/{QUEUE}:testIamPermissions", b"{}", (501, "UNIMPLEMENTED")),
        ("POST", f"/v2beta3/{QUEUE}/tasks:batchCreate", b"{}", (501, "UNIMPLEMENTED")),
        ("GET", f"/v2/{LOC}/cmekConfig", None, (501, "UNIMPLEMENTED")),
    ],
)
def test_refusals_before_the_service(
    stack: Stack, method: str, path: str, content: bytes | None, expected: tuple[int, str]
) -> None:
    status, grpc_status = expected
    reply = stack.http.request(method, path, content=content)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == status
    assert error["status"] == grpc_status
    assert error["message"]
    assert stack.service.calls == []


def test_locations_go_to_the_service_as_location_requests(stack: Stack) -> None:
    stack.service.answers["GetLocation"] = lambda request: locations_pb2.Location(
        name=request.name, location_id=request.name.rsplit("/", 1)[1]
    )
    reply = stack.http.get(f"/v2/{LOC}")
    assert reply.json() == {"name": LOC, "locationId": "us-central1"}
    assert stack.last == ("v2", "GetLocation", locations_pb2.GetLocationRequest(name=LOC))
    stack.service.answers["ListLocations"] = locations_pb2.ListLocationsResponse()
    assert stack.http.get("/v2beta3/projects/demo/locations?pageSize=5").status_code == 200
    assert stack.last == (
        "v2beta3",
        "ListLocations",
        locations_pb2.ListLocationsRequest(name="projects/demo", page_size=5),
    )


def test_requests_are_served_concurrently(stack: Stack) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_or_fast(request: Any) -> Any:
        if request.name.endswith("/slow"):
            entered.set()
            assert release.wait(10)
        return tasks_v2.Queue(name=request.name)

    stack.service.answers["GetQueue"] = slow_or_fast
    results: dict[str, int] = {}

    def fetch(queue: str) -> None:
        with httpx.Client(base_url=stack.server.url, timeout=10) as own:
            results[queue] = own.get(f"/v2/{LOC}/queues/{queue}").status_code

    slow = threading.Thread(target=fetch, args=("slow",))
    slow.start()
    assert entered.wait(10)
    fetch("fast")  # answered while the slow request is still held
    assert results == {"fast": 200}
    release.set()
    slow.join(10)
    assert results == {"fast": 200, "slow": 200}


def test_request_log_shows_what_clients_called(stack: Stack) -> None:
    stack.http.get(f"/v2/{QUEUE}?alt=json")
    stack.http.get("/nowhere")
    assert list(stack.server.requests) == [
        ("GET", f"/v2/{QUEUE}?alt=json", 200),
        ("GET", "/nowhere", 404),
    ]


def test_stop_releases_the_port() -> None:
    control = Control()
    server = RestServer(
        "127.0.0.1", 0, service=RecordingService(), control=control,
        cloudrun=CloudRunFake(control, Clock()),
    )  # fmt: skip
    server.start()
    port = server.port
    assert port != 0
    server.stop()
    server.stop()  # idempotent
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


# -- control endpoints -------------------------------------------------------------------------


def _raises(fn: Callable[[], None]) -> RpcError:
    with pytest.raises(RpcError) as err:
        fn()
    return err.value


def test_post_fault_injects_through_control(stack: Stack) -> None:
    reply = stack.http.post(
        "/_emulator/faults",
        json={"method": "RunTask", "code": "RESOURCE_EXHAUSTED", "times": 2, "message": "quota"},
    )
    assert reply.status_code == 200, reply.text
    for _ in range(2):
        err = _raises(lambda: stack.control.before_call("RunTask"))
        assert (err.code, err.message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")
    stack.control.before_call("RunTask")  # the third call passes

    stack.http.post("/_emulator/faults", json={"method": "GetTask", "code": 14, "times": -1})
    for _ in range(3):
        assert _raises(lambda: stack.control.before_call("GetTask")).code == (
            grpc.StatusCode.UNAVAILABLE
        )
    assert stack.http.delete("/_emulator/faults").status_code == 200
    stack.control.before_call("GetTask")


def test_post_fault_after_lets_calls_through_first(stack: Stack) -> None:
    reply = stack.http.post(
        "/_emulator/faults",
        json={"method": "ListTasks", "code": "UNAVAILABLE", "times": 1, "after": 2},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["after"] == 2
    stack.control.before_call("ListTasks")
    stack.control.before_call("ListTasks")
    assert _raises(lambda: stack.control.before_call("ListTasks")).code == (
        grpc.StatusCode.UNAVAILABLE
    )
    stack.control.before_call("ListTasks")  # the fault was used up


def test_post_delay_is_accepted(stack: Stack) -> None:
    reply = stack.http.post("/_emulator/faults", json={"method": "GetTask", "delay_s": 0.01})
    assert reply.status_code == 200
    assert reply.json() == {"method": "GetTask", "delay_s": 0.01, "times": 1}
    stack.control.before_call("GetTask")


@pytest.mark.parametrize(
    "body",
    [
        {"code": "UNAVAILABLE"},
        {"method": "GetTask"},
        {"method": "GetTask", "code": "UNAVAILABLE", "delay_s": 1},
        {"method": "GetTask", "code": "NOT_A_CODE"},
        {"method": "GetTask", "code": "OK"},
        {"method": "GetTask", "code": "UNAVAILABLE", "times": 0},
        {"method": "GetTask", "code": "UNAVAILABLE", "times": -2},
        {"method": "GetTask", "code": "UNAVAILABLE", "message": 3},
        {"method": "GetTask", "delay_s": -1},
        {"method": "GetTask", "delay_s": "1"},
        {"method": "GetTask", "code": "UNAVAILABLE", "after": -1},
        {"method": "GetTask", "code": "UNAVAILABLE", "after": "1"},
        {"method": "GetTask", "delay_s": 1, "after": 1},
    ],
)
def test_bad_fault_bodies_are_refused(stack: Stack, body: dict[str, Any]) -> None:
    reply = stack.http.post("/_emulator/faults", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    stack.control.before_call("GetTask")  # nothing was injected


def test_calls_and_reset(stack: Stack) -> None:
    stack.control.before_call("GetTask", api="v2")
    stack.control.before_call("run.GetService")
    calls = stack.http.get("/_emulator/calls").json()["calls"]
    assert calls == {"GetTask": 1, "v2.GetTask": 1, "run.GetService": 1}
    assert stack.http.delete("/_emulator/calls").status_code == 200
    assert stack.http.get("/_emulator/calls").json() == {"calls": {}}


def test_run_log(stack: Stack) -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    stack.control.record_run(
        RunRecord(task=TASK, api="v2", wall_time=1.5, emulated_time=at,
                  code=grpc.StatusCode.OK, dispatch_count=3)
    )  # fmt: skip
    assert stack.http.get("/_emulator/runs").json() == {
        "runs": [
            {"task": TASK, "api": "v2", "wall_time": 1.5, "emulated_time": "2026-01-01T12:00:00Z",
             "code": "OK", "message": "", "dispatch_count": 3}
        ]
    }  # fmt: skip


def test_deploy_endpoint_drives_the_cloud_run_fake(stack: Stack) -> None:
    service = "projects/demo/locations/us-central1/services/worker"
    reply = stack.http.post(
        "/_emulator/run/deploy",
        json={"service": service, "uri": "http://127.0.0.1:9/", "at": "2026-01-01T00:00:00Z"},
    )
    assert reply.status_code == 200, reply.text
    revision = reply.json()["revision"]
    assert revision.startswith(f"{service}/revisions/worker-00001-")
    seen = stack.cloudrun.get_service(GetServiceRequest(name=service))
    assert seen.latest_ready_revision == revision
    assert seen.uri == "http://127.0.0.1:9/"
    assert seen.create_time == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"service": "worker"},
        {"service": "projects/demo/locations/us-central1/services/worker", "uri": 5},
        {"service": "projects/demo/locations/us-central1/services/worker", "at": "yesterday"},
        {"service": "projects/demo/locations/us-central1/services/worker", "at": "2026-01-01"},
    ],
)
def test_bad_deploy_bodies_are_refused(stack: Stack, body: dict[str, Any]) -> None:
    reply = stack.http.post("/_emulator/run/deploy", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert stack.cloudrun.service_names() == []


def test_unknown_control_endpoint(stack: Stack) -> None:
    reply = stack.http.get("/_emulator/nothing")
    assert reply.status_code == 404
    assert "/_emulator/faults" in reply.json()["error"]["message"]
    assert stack.http.get("/_emulator/health").json() == {"ok": True}
