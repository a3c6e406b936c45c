"""Dispatch semantics against a real local HTTP target, through the official gRPC clients."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import duration_pb2

from cloudtasks_emulator import Emulator
from cloudtasks_emulator.control import Control
from cloudtasks_emulator.errors import RpcError
from cloudtasks_emulator.model import backoff_s

from .conftest import LOCATION, client, wait_until
from .target import Reply, TargetServer

TYPES = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}
APIS = ["v2", "v2beta3"]


def _d(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def _queue(c: Any, qid: str, **fields: Any) -> str:
    q = c.create_queue(parent=LOCATION, queue={"name": f"{LOCATION}/queues/{qid}", **fields})
    return str(q.name)


def _create(c: Any, queue: str, tid: str, url: str, **fields: Any) -> Any:
    task = {"name": f"{queue}/tasks/{tid}", "http_request": {"url": url}, **fields}
    return c.create_task(request={"parent": queue, "task": task})


def _gone(c: Any, name: str) -> bool:
    try:
        c.get_task(name=name)
    except gexc.NotFound:
        return True
    return False


def _answered(c: Any, name: str, n: int) -> Callable[[], bool]:
    return lambda: bool(c.get_task(name=name).response_count >= n)


def _claims(authorization: str) -> dict[str, Any]:
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer"
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.mark.parametrize("api", APIS)
def test_success_deletes_the_task_and_later_calls_say_not_found(
    emulator: Emulator, target: TargetServer, api: str
) -> None:
    c = client(emulator, api)
    q = _queue(c, "ok")
    task = _create(c, q, "t1", f"{target.url}/work")
    assert target.wait_for(1, "/work")
    assert wait_until(lambda: _gone(c, task.name))
    with pytest.raises(gexc.NotFound, match="existed recently"):
        c.run_task(name=task.name)
    with pytest.raises(gexc.NotFound):
        c.delete_task(name=task.name)
    with pytest.raises(gexc.AlreadyExists):  # the name is in the de-duplication window
        _create(c, q, "t1", f"{target.url}/work")
    assert len(target.received("/work")) == 1


@pytest.mark.parametrize("api", APIS)
def test_last_failed_attempt_deletes_the_task(
    make_emulator: Any, target: TargetServer, api: str
) -> None:
    emu = make_emulator(time_scale=1000.0)
    c = client(emu, api)
    retry = {"max_attempts": 3, "min_backoff": _d(1), "max_backoff": _d(10), "max_doublings": 2}
    q = _queue(c, "fails", retry_config=retry)
    target.set_default(500)
    task = _create(c, q, "doomed", f"{target.url}/fail")
    got = target.wait_for(3, "/fail")
    assert wait_until(lambda: _gone(c, task.name))
    got = target.received("/fail")
    assert len(got) == 3
    assert [r.headers["x-cloudtasks-taskretrycount"] for r in got] == ["0", "1", "2"]
    with pytest.raises(gexc.NotFound):
        c.run_task(name=task.name)


@pytest.mark.parametrize("api", APIS)
def test_forced_failures_follow_the_documented_backoff_schedule(
    emulator: Emulator, target: TargetServer, api: str
) -> None:
    # Paused queue: only RunTask dispatches, so each reschedule is observed exactly.
    c = client(emulator, api)
    retry = {"max_attempts": -1, "min_backoff": _d(10), "max_backoff": _d(300), "max_doublings": 3}
    q = _queue(c, "backoff", retry_config=retry)
    c.pause_queue(name=q)
    target.set_default(503)
    task = _create(c, q, "t", f"{target.url}/b")
    gaps = []
    for n in range(1, 10):
        c.run_task(name=task.name)
        assert target.wait_for(n, "/b")
        assert wait_until(_answered(c, task.name, n))
        got = c.get_task(name=task.name)
        assert got.last_attempt.response_status.code == 14  # UNAVAILABLE for HTTP 503
        assert got.last_attempt.response_status.message == "HTTP status code 503"
        # a forced run reschedules from the time RunTask was called (= its dispatch time)
        gaps.append((got.schedule_time - got.last_attempt.dispatch_time).total_seconds())
    assert gaps == pytest.approx([10, 20, 40, 80, 160, 240, 300, 300, 300], abs=1e-5)


def test_backoff_formula_table() -> None:
    rc = tasks_v2beta3.RetryConfig.pb()(min_backoff=_d(10), max_backoff=_d(300), max_doublings=3)
    assert [backoff_s(rc, k) for k in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]
    rc = tasks_v2beta3.RetryConfig.pb()(min_backoff=_d(1), max_backoff=_d(1000), max_doublings=0)
    assert [backoff_s(rc, k) for k in range(1, 5)] == [1, 2, 3, 4]


@pytest.mark.parametrize("api", APIS)
def test_scheduled_retries_run_in_emulated_time(
    make_emulator: Any, target: TargetServer, api: str
) -> None:
    emu = make_emulator(time_scale=500.0)
    c = client(emu, api)
    retry = {"max_attempts": 5, "min_backoff": _d(10), "max_backoff": _d(300), "max_doublings": 3}
    q = _queue(c, "scaled", retry_config=retry)
    target.script("/s", 500, 500, 500, 200)
    task = _create(c, q, "t", f"{target.url}/s")
    got = target.wait_for(4, "/s")
    assert len(got) == 4
    assert wait_until(lambda: _gone(c, task.name))
    etas = [float(r.headers["x-cloudtasks-tasketa"]) for r in got]
    gaps = [b - a for a, b in itertools.pairwise(etas)]
    # each retry waits at least its backoff in emulated time (plus emulated dispatch latency)
    for gap, want in zip(gaps, [10, 20, 40], strict=True):
        assert gap >= want
    assert [r.headers["x-cloudtasks-taskpreviousresponse"] for r in got[1:]] == ["500"] * 3
    assert all("x-cloudtasks-taskretryreason" in r.headers for r in got[1:])
    assert "x-cloudtasks-taskpreviousresponse" not in got[0].headers


@pytest.mark.parametrize("api", APIS)
def test_max_retry_duration_keeps_retrying_past_max_attempts(
    make_emulator: Any, target: TargetServer, api: str
) -> None:
    emu = make_emulator(time_scale=200.0)
    c = client(emu, api)
    retry = {
        "max_attempts": 2,
        "max_retry_duration": _d(60),
        "min_backoff": _d(10),
        "max_backoff": _d(10),
    }
    q = _queue(c, "aged", retry_config=retry)
    target.set_default(500)
    task = _create(c, q, "t", f"{target.url}/aged")
    assert wait_until(lambda: _gone(c, task.name))
    # 2 attempts are not enough to stop: retries go on every 10 s until 60 s passed since the
    # first attempt (emulated dispatch latency can only make them fewer than 1 + 60 / 10)
    assert 3 <= len(target.received("/aged")) <= 7


@pytest.mark.parametrize("api", APIS)
def test_headers_body_method_and_oidc(emulator: Emulator, target: TargetServer, api: str) -> None:
    c = client(emulator, api)
    q = _queue(c, "hdrs")
    sa = "invoker@demo-project.iam.gserviceaccount.com"
    task = c.create_task(
        request={
            "parent": q,
            "task": {
                "name": f"{q}/tasks/h-1",
                "http_request": {
                    "url": f"{target.url}/h?x=1",
                    "http_method": TYPES[api].HttpMethod.PUT,
                    "headers": {"Content-Type": "application/json", "X-Custom": "yes"},
                    "body": b'{"a": 1}',
                    "oidc_token": {"service_account_email": sa, "audience": "https://aud"},
                },
            },
        }
    )
    (req,) = target.wait_for(1, "/h")
    assert req.method == "PUT"
    assert req.path == "/h?x=1"
    assert req.body == b'{"a": 1}'
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-custom"] == "yes"
    assert req.headers["x-cloudtasks-queuename"] == "hdrs"
    assert req.headers["x-cloudtasks-taskname"] == "h-1"
    assert req.headers["x-cloudtasks-taskretrycount"] == "0"
    assert req.headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(req.headers["x-cloudtasks-tasketa"]) == pytest.approx(
        task.schedule_time.timestamp(), abs=1e-6
    )
    claims = _claims(req.headers["authorization"])
    assert claims["email"] == sa and claims["sub"].isdigit() and claims["azp"] == claims["sub"]
    assert claims["aud"] == "https://aud"

    oauth = c.create_task(
        request={
            "parent": q,
            "task": {
                "http_request": {
                    "url": f"{target.url}/oauth",
                    "oauth_token": {"service_account_email": sa},
                }
            },
        }
    )
    (req,) = target.wait_for(1, "/oauth")
    access = req.headers["authorization"].removeprefix("Bearer ")
    info = httpx.get(f"{emulator.rest_url}/oauth2/v3/tokeninfo", params={"access_token": access})
    assert info.json()["email"] == sa  # an opaque access token, described by tokeninfo
    assert req.headers["x-cloudtasks-taskname"] == oauth.name.rsplit("/", 1)[1]
    # the default audience of an OIDC token is the target URL
    c.create_task(
        request={
            "parent": q,
            "task": {
                "http_request": {
                    "url": f"{target.url}/aud",
                    "oidc_token": {"service_account_email": sa},
                }
            },
        }
    )
    (req,) = target.wait_for(1, "/aud")
    assert _claims(req.headers["authorization"])["aud"] == f"{target.url}/aud"
    assert req.method == "POST"


@pytest.mark.parametrize("api", APIS)
def test_app_engine_target_goes_to_the_configured_host(
    make_emulator: Any, target: TargetServer, api: str
) -> None:
    emu = make_emulator(app_engine_host=target.url)
    c = client(emu, api)
    q = _queue(c, "gae")
    c.create_task(
        request={
            "parent": q,
            "task": {
                "name": f"{q}/tasks/g",
                "app_engine_http_request": {"relative_uri": "/gae/path?y=2", "body": b"b"},
            },
        }
    )
    (req,) = target.wait_for(1, "/gae/path")
    assert req.method == "POST" and req.path == "/gae/path?y=2" and req.body == b"b"
    assert req.headers["x-appengine-queuename"] == "gae"
    assert req.headers["x-appengine-taskname"] == "g"


@pytest.mark.parametrize("api", APIS)
def test_run_task_on_a_paused_queue_dispatches_now(
    emulator: Emulator, target: TargetServer, api: str
) -> None:
    c = client(emulator, api)
    q = _queue(c, "paused")
    c.pause_queue(name=q)
    task = _create(c, q, "p", f"{target.url}/p")
    assert target.wait_for(1, "/p", timeout_s=0.3) == []  # paused: nothing is dispatched
    ran = c.run_task(name=task.name)
    assert ran.dispatch_count == 1
    assert ran.last_attempt.dispatch_time is not None
    assert not ran.last_attempt.response_time  # returned before the target answered
    assert len(target.wait_for(1, "/p")) == 1
    assert wait_until(lambda: _gone(c, task.name))
    with pytest.raises(gexc.NotFound):
        c.run_task(name=task.name)


@pytest.mark.parametrize("api", APIS)
def test_run_task_on_an_in_flight_task_dispatches_a_second_time(
    emulator: Emulator, target: TargetServer, api: str
) -> None:
    c = client(emulator, api)
    q = _queue(c, "inflight")
    release = threading.Event()
    target.script("/slow", Reply(200, hold=release), Reply(500, hold=release))
    try:
        task = _create(c, q, "slow", f"{target.url}/slow")
        assert target.wait_inflight(1) == 1
        seen = c.get_task(name=task.name)
        assert seen.dispatch_count == 1 and seen.response_count == 0
        assert seen.last_attempt.dispatch_time is not None
        assert not seen.last_attempt.response_time  # outstanding: no response time yet
        forced = c.run_task(name=task.name)
        assert forced.dispatch_count == 2
        assert target.wait_inflight(2) == 2  # two concurrent dispatches at the target
    finally:
        release.set()
    assert wait_until(lambda: _gone(c, task.name))
    assert target.max_inflight == 2
    log = emulator.control.run_log()
    assert [(r.task, r.code, r.dispatch_count) for r in log] == [(task.name, grpc.StatusCode.OK, 2)]


@pytest.mark.parametrize("api", APIS)
def test_response_view_on_every_task_method(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    view = TYPES[api].Task.View
    q = _queue(c, "views")
    c.pause_queue(name=q)
    body = b"secret body"
    req = {"url": "http://127.0.0.1:9/x", "body": body}
    basic = c.create_task(
        request={"parent": q, "task": {"name": f"{q}/tasks/v", "http_request": req}}
    )
    assert basic.view == view.BASIC and basic.http_request.body == b""
    full = c.create_task(
        request={"parent": q, "task": {"http_request": req}, "response_view": view.FULL}
    )
    assert full.view == view.FULL and full.http_request.body == body
    assert c.get_task(name=basic.name).http_request.body == b""
    assert (
        c.get_task(request={"name": basic.name, "response_view": view.FULL}).http_request.body
        == body
    )
    listed = list(c.list_tasks(parent=q))
    assert {t.view for t in listed} == {view.BASIC} and all(not t.http_request.body for t in listed)
    listed = list(c.list_tasks(request={"parent": q, "response_view": view.FULL}))
    assert {t.http_request.body for t in listed} == {body}
    ran = c.run_task(request={"name": basic.name, "response_view": view.FULL})
    assert ran.view == view.FULL and ran.http_request.body == body
    ran = c.run_task(name=full.name)
    assert ran.view == view.BASIC and ran.http_request.body == b""


@pytest.mark.parametrize("api", APIS)
def test_dedup_window_is_configurable_and_covers_deleted_tasks(
    make_emulator: Any, api: str
) -> None:
    emu = make_emulator(time_scale=100.0, dedup_window_s=60.0)  # 0.6 s of real time
    c = client(emu, api)
    q = _queue(c, "dedup")
    c.pause_queue(name=q)
    _create(c, q, "once", "http://127.0.0.1:9/x")
    c.delete_task(name=f"{q}/tasks/once")
    with pytest.raises(gexc.AlreadyExists, match="too recently"):
        _create(c, q, "once", "http://127.0.0.1:9/x")

    def recreated() -> bool:
        try:
            _create(c, q, "once", "http://127.0.0.1:9/x")
        except gexc.AlreadyExists:
            return False
        return True

    assert wait_until(recreated, step_s=0.05)


@pytest.mark.parametrize("api", APIS)
def test_paging_is_stable_and_complete(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    q = _queue(c, "pages")
    c.pause_queue(name=q)
    names = [_create(c, q, f"t{i:03d}", "http://127.0.0.1:9/x").name for i in range(25)]
    first = c.list_tasks(request={"parent": q, "page_size": 10})
    pages = list(first.pages)
    assert [len(p.tasks) for p in pages] == [10, 10, 5]
    assert [t.name for p in pages for t in p.tasks] == names
    # a deletion between pages neither repeats nor skips a task
    page1 = c.list_tasks(request={"parent": q, "page_size": 10})._response
    c.delete_task(name=names[3])
    rest = c.list_tasks(request={"parent": q, "page_size": 10, "page_token": page1.next_page_token})
    assert [t.name for t in rest] == names[10:]
    with pytest.raises(gexc.InvalidArgument):
        list(c.list_tasks(request={"parent": q, "page_token": "garbage"}))
    for i in range(5):
        _queue(c, f"more-{i}")
    qpages = list(c.list_queues(request={"parent": LOCATION, "page_size": 2}).pages)
    listed = [x.name for p in qpages for x in p.queues]
    assert len(listed) == 6 and len(set(listed)) == 6 and len(qpages) == 3
    paused = list(c.list_queues(request={"parent": LOCATION, "filter": "state: PAUSED"}))
    assert [x.name for x in paused] == [q]


@pytest.mark.parametrize("api", APIS)
def test_rate_limit_is_respected(emulator: Emulator, target: TargetServer, api: str) -> None:
    c = client(emulator, api)
    rate = 20.0
    q = _queue(c, "rated", rate_limits={"max_dispatches_per_second": rate})
    burst = c.get_queue(name=q).rate_limits.max_burst_size
    c.pause_queue(name=q)
    n = 30
    for i in range(n):
        _create(c, q, f"r{i}", f"{target.url}/r")
    c.resume_queue(name=q)
    got = target.wait_for(n, "/r")
    assert len(got) == n
    times = sorted(r.received_at for r in got)
    # token bucket: the i-th dispatch cannot come before (i - burst) / rate seconds
    for i, t in enumerate(times):
        assert t - times[0] >= (i - burst) / rate - 0.02


@pytest.mark.parametrize("api", APIS)
def test_max_concurrent_dispatches_is_respected(
    emulator: Emulator, target: TargetServer, api: str
) -> None:
    c = client(emulator, api)
    q = _queue(c, "narrow", rate_limits={"max_concurrent_dispatches": 2})
    release = threading.Event()
    target.set_default(Reply(200, hold=release))
    try:
        for i in range(6):
            _create(c, q, f"c{i}", f"{target.url}/c")
        assert target.wait_inflight(2) == 2
        assert target.wait_for(3, "/c", timeout_s=0.3) and len(target.received("/c")) == 2
    finally:
        release.set()
    assert len(target.wait_for(6, "/c")) == 6
    assert target.max_inflight == 2


@pytest.mark.parametrize("api", APIS)
def test_deadline_and_connection_errors_are_failed_attempts(
    make_emulator: Any, target: TargetServer, api: str
) -> None:
    emu = make_emulator(time_scale=100.0)
    c = client(emu, api)
    q = _queue(c, "errs", retry_config={"min_backoff": _d(3600), "max_backoff": _d(3600)})
    release = threading.Event()
    target.script("/hang", Reply(200, hold=release))
    try:
        slow = _create(c, q, "slow", f"{target.url}/hang", dispatch_deadline=_d(15))
        assert wait_until(lambda: c.get_task(name=slow.name).last_attempt.response_status.code)
        got = c.get_task(name=slow.name)
        assert got.last_attempt.response_status.code == 4  # DEADLINE_EXCEEDED
        assert got.dispatch_count == 1 and got.response_count == 0
    finally:
        release.set()
    dead = _create(c, q, "dead", "http://127.0.0.1:9/refused")
    assert wait_until(lambda: c.get_task(name=dead.name).last_attempt.response_status.code)
    got = c.get_task(name=dead.name)
    assert got.last_attempt.response_status.code == 2  # UNKNOWN, as the service reports it
    assert got.dispatch_count == 1 and got.response_count == 0
    assert got.schedule_time > got.last_attempt.response_time


@pytest.mark.parametrize("api", APIS)
def test_fault_injection_counts_and_run_log(emulator: Emulator, api: str) -> None:
    c = client(emulator, api)
    control = emulator.control
    q = _queue(c, "faults")
    c.pause_queue(name=q)
    task = _create(c, q, "f", "http://127.0.0.1:9/x")
    control.reset_counters()

    control.fail("RunTask", grpc.StatusCode.UNAVAILABLE, times=2)
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            c.run_task(name=task.name)
    assert c.run_task(name=task.name).dispatch_count == 1

    # GetTask is retried by the client on UNAVAILABLE: 2 failures then the answer
    control.fail(f"{api}.GetTask", grpc.StatusCode.UNAVAILABLE, times=2)
    assert c.get_task(name=task.name).name == task.name
    assert control.call_counts()["GetTask"] == 3

    control.fail("GetQueue", grpc.StatusCode.PERMISSION_DENIED, times=-1, message="nope")
    for _ in range(3):
        with pytest.raises(gexc.PermissionDenied, match="nope"):
            c.get_queue(name=q)
    control.clear()
    assert c.get_queue(name=q).name == q

    control.delay("ListQueues", 2.0)
    with pytest.raises(gexc.DeadlineExceeded):
        list(c.list_queues(parent=LOCATION, retry=gretry.Retry(timeout=0.2), timeout=0.2))
    assert [x.name for x in c.list_queues(parent=LOCATION)] == [q]

    counts = control.call_counts()
    assert counts["RunTask"] == 3 and counts[f"{api}.RunTask"] == 3
    log = control.run_log()
    assert [r.code for r in log] == [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.OK,
    ]
    assert {r.task for r in log} == {task.name} and {r.api for r in log} == {api}
    assert log[0].wall_time <= log[1].wall_time <= log[2].wall_time
    assert log[2].dispatch_count == 1
    control.reset_counters()
    assert control.call_counts() == {} and control.run_log() == []


def test_timestamps_are_emulated_time(make_emulator: Any) -> None:
    emu = make_emulator(time_scale=3600.0)  # one emulated hour per real second
    c = client(emu, "v2beta3")
    q = _queue(c, "clock")
    c.pause_queue(name=q)
    a = _create(c, q, "a", "http://127.0.0.1:9/x")
    assert wait_until(lambda: emu.clock.now() - a.create_time > timedelta(minutes=30))
    b = _create(c, q, "b", "http://127.0.0.1:9/x")
    assert b.create_time - a.create_time > timedelta(minutes=30)


def test_queue_stats_on_request(emulator: Emulator) -> None:
    c = client(emulator, "v2beta3")
    q = _queue(c, "stats")
    c.pause_queue(name=q)
    for i in range(3):
        _create(c, q, f"s{i}", "http://127.0.0.1:9/x")
    plain = c.get_queue(name=q)
    assert not plain.stats.tasks_count
    got = c.get_queue(request={"name": q, "read_mask": {"paths": ["name", "stats"]}})
    assert got.stats.tasks_count == 3
    assert got.stats.oldest_estimated_arrival_time is not None


@pytest.mark.parametrize("api", APIS)
def test_queue_http_target_overrides(emulator: Emulator, target: TargetServer, api: str) -> None:
    c = client(emulator, api)
    sa = "q@demo-project.iam.gserviceaccount.com"
    q = _queue(
        c,
        "overrides",
        http_target={
            "http_method": TYPES[api].HttpMethod.PATCH,
            "header_overrides": [{"header": {"key": "X-Queue", "value": "q"}}],
            "oidc_token": {"service_account_email": sa},
        },
    )
    _create(c, q, "o", f"{target.url}/o")
    (req,) = target.wait_for(1, "/o")
    assert req.method == "PATCH"
    assert req.headers["x-queue"] == "q"
    assert _claims(req.headers["authorization"])["email"] == sa


def test_fault_after_lets_calls_through_and_bad_arguments_are_refused() -> None:
    control = Control()
    control.fail("ListTasks", grpc.StatusCode.INTERNAL, times=2, after=1)
    control.before_call("ListTasks")
    for _ in range(2):
        with pytest.raises(RpcError) as raised:
            control.before_call("ListTasks", api="v2")
        assert raised.value.code is grpc.StatusCode.INTERNAL
    control.before_call("ListTasks")
    for times, after in ((1, -1), (0, 0), (-2, 0)):
        with pytest.raises(ValueError):
            control.fail("ListTasks", grpc.StatusCode.INTERNAL, times=times, after=after)
    with pytest.raises(ValueError):
        control.fail("ListTasks", grpc.StatusCode.OK)
    assert control.call_counts()["ListTasks"] == 4
