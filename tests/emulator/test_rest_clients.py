"""REST conformance: the official google-cloud-tasks clients with `transport="rest"` (v2 and
v2beta3) against the whole emulator, every queue and task method, with a real local HTTP target."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import httpx
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import duration_pb2, field_mask_pb2

from cloudtasks_emulator import Emulator

PARENT = "projects/demo/locations/us-central1"
APIS = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}


@dataclass
class Target:
    """A local HTTP target that records what it receives and answers `status`."""

    url: str
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def target() -> Iterator[Target]:
    holder: list[Target] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._answer()

        def do_PUT(self) -> None:
            self._answer()

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record = holder[0]
            record.received.append((self.command, self.path, dict(self.headers.items()), body))
            record.arrived.set()
            self.send_response(record.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Target(url=f"http://127.0.0.1:{server.server_port}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(params=sorted(APIS))
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Rest:
    emu: Emulator
    api: str
    t: ModuleType
    client: Any

    def queue_name(self, request: pytest.FixtureRequest) -> str:
        # One queue per test and version on the shared emulator.
        slug = request.node.name.replace("_", "-").replace("[", "-").replace("]", "")
        return f"{PARENT}/queues/{slug[-90:].strip('-')}"


@pytest.fixture
def rest(emulator: Emulator, api: str) -> Rest:
    module = APIS[api]
    client = module.CloudTasksClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": emulator.rest_url},
    )
    return Rest(emulator, api, module, client)


def test_queue_methods(rest: Rest, request: pytest.FixtureRequest) -> None:
    t, client = rest.t, rest.client
    name = rest.queue_name(request)
    created = client.create_queue(
        parent=PARENT,
        queue=t.Queue(
            name=name,
            rate_limits=t.RateLimits(max_dispatches_per_second=5, max_concurrent_dispatches=3),
            retry_config=t.RetryConfig(
                max_attempts=7, min_backoff=duration_pb2.Duration(seconds=2)
            ),
        ),
    )
    assert created.name == name
    assert created.state == t.Queue.State.RUNNING
    assert created.rate_limits.max_dispatches_per_second == 5
    assert created.rate_limits.max_concurrent_dispatches == 3
    assert created.retry_config.max_attempts == 7
    assert created.retry_config.min_backoff == timedelta(seconds=2)

    assert client.get_queue(name=name) == created
    with pytest.raises(gexc.Conflict):
        client.create_queue(parent=PARENT, queue=t.Queue(name=name))

    updated = client.update_queue(
        queue=t.Queue(
            name=name,
            rate_limits=t.RateLimits(max_dispatches_per_second=9, max_concurrent_dispatches=1),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["rate_limits.max_dispatches_per_second"]),
    )
    assert updated.rate_limits.max_dispatches_per_second == 9
    assert updated.rate_limits.max_concurrent_dispatches == 3  # not in the mask: kept
    assert client.get_queue(name=name).rate_limits.max_dispatches_per_second == 9

    assert client.pause_queue(name=name).state == t.Queue.State.PAUSED
    assert client.get_queue(name=name).state == t.Queue.State.PAUSED
    assert client.resume_queue(name=name).state == t.Queue.State.RUNNING

    client.delete_queue(name=name)
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=name)


def test_list_queues_pages(rest: Rest, request: pytest.FixtureRequest) -> None:
    parent = f"projects/list-{rest.api}/locations/europe-west1"
    names = [f"{parent}/queues/q{i}" for i in range(5)]
    for name in names:
        rest.client.create_queue(parent=parent, queue=rest.t.Queue(name=name))
    pager = rest.client.list_queues(request={"parent": parent, "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.queues) for p in pages] == [2, 2, 1]
    assert sorted(q.name for p in pages for q in p.queues) == names


def _future(hours: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def test_task_methods(rest: Rest, target: Target, request: pytest.FixtureRequest) -> None:
    t, client = rest.t, rest.client
    queue = rest.queue_name(request)
    client.create_queue(parent=PARENT, queue=t.Queue(name=queue))
    full_view, basic_view = t.Task.View.FULL, t.Task.View.BASIC

    created = client.create_task(
        request={
            "parent": queue,
            "task": t.Task(
                name=f"{queue}/tasks/a",
                schedule_time=_future(),
                http_request=t.HttpRequest(
                    url=f"{target.url}/work",
                    http_method=t.HttpMethod.PUT,
                    headers={"X-Kind": "test"},
                    body=b"payload",
                ),
            ),
            "response_view": full_view,
        }
    )
    assert created.name == f"{queue}/tasks/a"
    assert created.http_request.body == b"payload"
    assert created.http_request.http_method == t.HttpMethod.PUT
    assert created.dispatch_count == 0

    assert client.get_task(name=created.name).http_request.body == b""
    full = client.get_task(request={"name": created.name, "response_view": full_view})
    assert full.http_request.body == b"payload"
    assert full.view == full_view
    assert (
        client.get_task(request={"name": created.name, "response_view": basic_view}).view
        == basic_view
    )

    with pytest.raises(gexc.Conflict):
        client.create_task(
            parent=queue,
            task=t.Task(name=created.name, http_request=t.HttpRequest(url=target.url)),
        )

    for i in range(4):
        client.create_task(
            parent=queue,
            task=t.Task(
                schedule_time=_future(),
                http_request=t.HttpRequest(url=f"{target.url}/n{i}", body=b"x"),
            ),
        )
    pages = list(client.list_tasks(request={"parent": queue, "page_size": 2}).pages)
    assert [len(p.tasks) for p in pages] == [2, 2, 1]
    listed = [task for p in pages for task in p.tasks]
    assert created.name in {task.name for task in listed}
    assert all(task.http_request.body == b"" for task in listed)  # basic_view by default
    full_list = client.list_tasks(request={"parent": queue, "response_view": full_view})
    assert {task.http_request.body for task in full_list} == {b"payload", b"x"}

    # RunTask dispatches now, even on a paused queue, and answers before the target does.
    target.status = 500
    client.pause_queue(name=queue)
    ran = client.run_task(name=created.name)
    assert ran.name == created.name
    assert ran.dispatch_count == 1
    assert ran.last_attempt.dispatch_time is not None
    assert target.arrived.wait(10)
    method, path, headers, body = target.received[0]
    assert (method, path, body) == ("PUT", "/work", b"payload")
    assert headers["X-Kind"] == "test"
    assert headers["X-CloudTasks-TaskName"] == "a"

    client.delete_task(name=created.name)
    with pytest.raises(gexc.NotFound):
        client.get_task(name=created.name)
    with pytest.raises(gexc.NotFound):
        client.run_task(name=created.name)
    with pytest.raises(gexc.NotFound):
        client.delete_task(name=created.name)

    purged = client.purge_queue(name=queue)
    assert purged.name == queue
    assert list(client.list_tasks(parent=queue)) == []


def test_errors_reach_the_client_as_google_exceptions(rest: Rest) -> None:
    t, client = rest.t, rest.client
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=f"{PARENT}/queues/never-made")
    with pytest.raises(gexc.BadRequest):
        client.get_queue(name=f"{PARENT}/queues/bad_id")
    with pytest.raises(gexc.NotFound):
        client.create_task(
            parent=f"{PARENT}/queues/never-made",
            task=t.Task(http_request=t.HttpRequest(url="http://127.0.0.1:9/")),
        )
    with pytest.raises(gexc.MethodNotImplemented):
        client.get_iam_policy(request={"resource": f"{PARENT}/queues/never-made"})


def test_injected_faults_and_call_counts(rest: Rest, request: pytest.FixtureRequest) -> None:
    queue = rest.queue_name(request)
    rest.client.create_queue(parent=PARENT, queue=rest.t.Queue(name=queue))
    http = httpx.Client(base_url=rest.emu.rest_url, timeout=10)
    with http:
        before = http.get("/_emulator/calls").json()["calls"].get("GetQueue", 0)
        injected = http.post(
            "/_emulator/faults",
            json={"method": f"{rest.api}.GetQueue", "code": "PERMISSION_DENIED", "times": 1},
        )
        assert injected.status_code == 200
        with pytest.raises(gexc.Forbidden):
            rest.client.get_queue(name=queue)
        assert rest.client.get_queue(name=queue).name == queue
        http.post(
            "/_emulator/faults",
            json={"method": f"{rest.api}.GetQueue", "code": "UNAVAILABLE", "times": -1},
        )
        try:
            with pytest.raises(gexc.ServiceUnavailable):
                rest.client.get_queue(name=queue, retry=None)
        finally:
            http.delete("/_emulator/faults")
        assert rest.client.get_queue(name=queue).name == queue
        after = http.get("/_emulator/calls").json()["calls"]["GetQueue"]
        assert after - before == 4


def test_the_client_asks_for_integer_enums_and_gets_them(
    rest: Rest, request: pytest.FixtureRequest
) -> None:
    queue = rest.queue_name(request)
    rest.client.create_queue(parent=PARENT, queue=rest.t.Queue(name=queue))
    assert rest.client.pause_queue(name=queue).state == rest.t.Queue.State.PAUSED
    pause_calls = [r for r in rest.emu.rest.requests if r[1].startswith(f"/{rest.api}/{queue}:")]
    assert pause_calls and "enum-encoding=int" in pause_calls[-1][1]
    raw = httpx.get(f"{rest.emu.rest_url}/{rest.api}/{queue}?$alt=json;enum-encoding=int")
    assert raw.json()["state"] == int(rest.t.Queue.State.PAUSED)
    assert httpx.get(f"{rest.emu.rest_url}/{rest.api}/{queue}").json()["state"] == "PAUSED"
