"""Production fidelity (issue #13): quotas, Retry-After, redirects, header rules, queue name reuse,
RunTask rescheduling, retry headers, schedule times, error texts, signed OIDC tokens, TTLs,
read_mask, BufferTask and ListLocations.

Every test goes through an official google-cloud-tasks client (gRPC and REST transports, both API
versions where the method exists in REST) or gcloud, against a real local HTTP target that records
what it receives (tests/emulator/target.py). docs/emulator.md names the test of each row.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth.transport.requests
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2, tasks_v2beta3
from google.oauth2 import id_token
from google.protobuf import duration_pb2, field_mask_pb2

from cloudtasks_emulator import Emulator, Quotas, tasks_client
from cloudtasks_emulator.oidc import ISSUER
from cloudtasks_emulator.quota import project_number

from .conftest import LOCATION, wait_until
from .target import Reply, TargetServer

TYPES = {"v2": tasks_v2, "v2beta3": tasks_v2beta3}
PROJECT = LOCATION.split("/")[1]
COMBOS = [("grpc", "v2"), ("grpc", "v2beta3"), ("rest", "v2"), ("rest", "v2beta3")]
BOTH = pytest.mark.parametrize(("transport", "api"), COMBOS)
SA = "invoker@demo-project.iam.gserviceaccount.com"


def _client(emu: Emulator, transport: str, api: str) -> Any:
    target = emu.grpc_target if transport == "grpc" else emu.rest_url
    return tasks_client(target, api=api, transport=transport)


def _answer(exc: gexc.GoogleAPICallError) -> tuple[str, str]:
    """(google.rpc code name, message) as the server sent them, whichever the transport: the
    REST client raises by HTTP status and prefixes the message with the URL, so read the body."""
    if exc.response is not None and hasattr(exc.response, "json"):
        error = exc.response.json()["error"]
        return str(error["status"]), str(error["message"])
    assert exc.grpc_status_code is not None
    return exc.grpc_status_code.name, str(exc.message)


def _d(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def _queue(c: Any, qid: str, parent: str = LOCATION, **fields: Any) -> str:
    return str(
        c.create_queue(parent=parent, queue={"name": f"{parent}/queues/{qid}", **fields}).name
    )


def _task(
    c: Any, queue: str, tid: str, request: dict[str, Any], response_view: int = 0, **fields: Any
) -> Any:
    task = {"name": f"{queue}/tasks/{tid}", "http_request": request, **fields}
    return c.create_task(request={"parent": queue, "task": task, "response_view": response_view})


def _answered(c: Any, name: str, n: int) -> Callable[[], bool]:
    return lambda: bool(c.get_task(name=name).response_count >= n)


def _gone(c: Any, name: str) -> bool:
    try:
        c.get_task(name=name)
    except gexc.NotFound:
        return True
    return False


SLOW_RETRY = {"max_attempts": -1, "min_backoff": _d(3600), "max_backoff": _d(3600)}


# -- 1. quotas --------------------------------------------------------------------------------
@BOTH
def test_run_task_quota_refuses_the_61st_call_of_a_minute(
    emulator: Emulator, target: TargetServer, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)  # production quotas, real-time clock
    q = _queue(c, "quota", retry_config=SLOW_RETRY)
    c.pause_queue(name=q)
    target.set_default(500)
    task = _task(c, q, "t", {"url": f"{target.url}/q"})
    for _ in range(60):
        c.run_task(name=task.name)
    # gRPC raises ResourceExhausted, REST its HTTP-status parent TooManyRequests
    with pytest.raises(gexc.TooManyRequests) as refused:
        c.run_task(name=task.name)
    want = (
        "Quota exceeded for quota metric 'Force run requests' and limit 'Force run requests per "
        f"minute' of service 'cloudtasks.googleapis.com' for consumer "
        f"'project_number:{project_number(PROJECT)}'."
    )
    assert _answer(refused.value) == ("RESOURCE_EXHAUSTED", want)
    assert refused.value.code == 429  # RESOURCE_EXHAUSTED is HTTP 429 on both transports
    assert refused.value.reason == "RATE_LIMIT_EXCEEDED"  # google.rpc.ErrorInfo in the details
    # a refused call changed nothing: 60 dispatches, and the run log says why
    assert c.get_task(name=task.name).dispatch_count == 60
    assert emulator.control.run_log()[-1].code.name == "RESOURCE_EXHAUSTED"
    # another project has its own quota
    other = "projects/other-project/locations/europe-west1"
    oq = _queue(c, "quota", parent=other, retry_config=SLOW_RETRY)
    c.pause_queue(name=oq)
    assert c.run_task(name=_task(c, oq, "t", {"url": f"{target.url}/q"}).name).dispatch_count == 1


def test_run_task_quota_frees_up_a_minute_later(make_emulator: Any, target: TargetServer) -> None:
    emu = make_emulator(time_scale=60.0, quotas=Quotas(run_per_min=3))  # a minute: 1 real second
    c = _client(emu, "grpc", "v2beta3")
    q = _queue(c, "window", retry_config=SLOW_RETRY)
    c.pause_queue(name=q)
    target.set_default(500)
    task = _task(c, q, "t", {"url": f"{target.url}/w"})

    def refused() -> bool:
        try:
            c.run_task(name=task.name)
        except gexc.ResourceExhausted:
            return True
        return False

    assert wait_until(refused, step_s=0)

    def let_through() -> bool:
        return not refused()

    assert wait_until(let_through, step_s=0.05)
    times = [r.emulated_time.timestamp() for r in emu.control.run_log() if r.code.name == "OK"]
    # never more than 3 calls let through in any 60 emulated seconds
    assert all(sum(1 for u in times if t <= u < t + 60) <= 3 for t in times)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_list_quota_covers_list_tasks_queues_and_locations(
    make_emulator: Any, transport: str
) -> None:
    emu = make_emulator(quotas=Quotas(list_per_min=5))
    c = _client(emu, transport, "v2")
    q = _queue(c, "lists")
    list(c.list_tasks(parent=q))
    list(c.list_queues(parent=LOCATION))
    c.list_locations(request={"name": f"projects/{PROJECT}"})
    list(c.list_tasks(parent=q))
    list(c.list_queues(parent=LOCATION))
    with pytest.raises(gexc.TooManyRequests, match="quota metric 'List requests'"):
        list(c.list_tasks(parent=q))
    with pytest.raises(gexc.TooManyRequests, match="limit 'List requests per minute'"):
        c.list_locations(request={"name": f"projects/{PROJECT}"})
    assert c.get_queue(name=q).name == q  # not a list call


def test_list_quota_is_600_a_minute_by_default(emulator: Emulator) -> None:
    c = _client(emulator, "grpc", "v2beta3")
    q = _queue(c, "lists")
    for _ in range(600):
        list(c.list_tasks(request={"parent": q}, retry=None))
    with pytest.raises(gexc.TooManyRequests, match="List requests"):
        list(c.list_tasks(request={"parent": q}, retry=None))


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_api_quota_covers_every_call(make_emulator: Any, transport: str) -> None:
    emu = make_emulator(quotas=Quotas(api_per_min=4))
    c = _client(emu, transport, "v2beta3")
    q = _queue(c, "api")  # 1
    c.pause_queue(name=q)  # 2
    c.get_queue(name=q)  # 3
    with pytest.raises(gexc.NotFound):
        c.get_task(name=f"{q}/tasks/missing")  # 4: a call that fails still counts
    with pytest.raises(gexc.TooManyRequests, match="quota metric 'API requests'"):
        c.get_queue(name=q, retry=None)


def test_lifted_quotas_let_bursts_through(make_emulator: Any, target: TargetServer) -> None:
    emu = make_emulator(quotas=Quotas.lifted())
    c = _client(emu, "grpc", "v2")
    q = _queue(c, "burst", retry_config=SLOW_RETRY)
    c.pause_queue(name=q)
    target.set_default(500)
    task = _task(c, q, "t", {"url": f"{target.url}/b"})
    for _ in range(80):
        c.run_task(name=task.name)
    assert c.get_task(name=task.name).dispatch_count == 80


# -- 2. Retry-After on 429 and 503 ------------------------------------------------------------
@BOTH
def test_retry_after_is_honoured_for_429_and_503(
    emulator: Emulator, target: TargetServer, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)
    retry = {"max_attempts": -1, "min_backoff": _d(2), "max_backoff": _d(3600)}
    q = _queue(c, "retry-after", retry_config=retry)
    c.pause_queue(name=q)  # only forced runs: each reschedule is seen exactly
    in_two_minutes = email.utils.formatdate(time.time() + 120, usegmt=True)
    target.script(
        "/ra",
        Reply(503, headers={"Retry-After": "300"}),
        Reply(429, headers={"Retry-After": in_two_minutes}),
        Reply(500, headers={"Retry-After": "900"}),  # other codes: the header is not used
    )
    task = _task(c, q, "t", {"url": f"{target.url}/ra"})
    gaps = []
    for n in (1, 2, 3):
        c.run_task(name=task.name)
        assert wait_until(_answered(c, task.name, n))
        got = c.get_task(name=task.name)
        gaps.append((got.schedule_time - got.last_attempt.dispatch_time).total_seconds())
    assert gaps[0] == pytest.approx(300, abs=0.01)
    assert 115 <= gaps[1] <= 121  # an HTTP date: seconds left until then
    assert gaps[2] == pytest.approx(8, abs=0.01)  # the backoff alone: 2 s doubled twice


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_retry_after_is_capped_by_max_backoff(
    emulator: Emulator, target: TargetServer, transport: str
) -> None:
    c = _client(emulator, transport, "v2")
    q = _queue(c, "capped", retry_config={"min_backoff": _d(1), "max_backoff": _d(60)})
    c.pause_queue(name=q)
    target.script("/cap", Reply(503, headers={"Retry-After": "86400"}))
    task = _task(c, q, "t", {"url": f"{target.url}/cap"})
    c.run_task(name=task.name)
    assert wait_until(_answered(c, task.name, 1))
    got = c.get_task(name=task.name)
    assert (got.schedule_time - got.last_attempt.dispatch_time).total_seconds() == 60


# -- 3. redirects -----------------------------------------------------------------------------
@BOTH
def test_redirects_are_followed_within_one_attempt(
    emulator: Emulator, target: TargetServer, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)
    q = _queue(c, "redirects", retry_config=SLOW_RETRY)
    target.script("/moved", Reply(302, headers={"Location": "/here?x=1"}))
    target.script("/temp", Reply(307, headers={"Location": f"{target.url}/kept"}))
    target.script("/not-modified", Reply(304))
    target.script("/nowhere", Reply(301))  # no Location: a failed attempt
    for tid, path in (("a", "/moved"), ("b", "/temp"), ("c", "/not-modified"), ("d", "/nowhere")):
        _task(c, q, tid, {"url": f"{target.url}{path}", "body": b"payload"})
    assert target.wait_for(1, "/here") and target.wait_for(1, "/kept")
    # done in one attempt, so deleted
    assert wait_until(lambda: all(_gone(c, f"{q}/tasks/{tid}") for tid in ("a", "b", "c")))
    (here,) = target.received("/here")
    assert (here.method, here.path, here.body) == ("GET", "/here?x=1", b"")  # 302 after POST
    (kept,) = target.received("/kept")
    assert (kept.method, kept.body) == ("POST", b"payload")  # 307 keeps method and body
    assert wait_until(_answered(c, f"{q}/tasks/d", 1))
    failed = c.get_task(name=f"{q}/tasks/d")
    assert failed.dispatch_count == 1
    assert failed.last_attempt.response_status.message == "HTTP status code 301"
    assert len(target.received("/not-modified")) == 1  # 304 is not retried


@BOTH
def test_app_engine_tasks_do_not_follow_redirects(
    make_emulator: Any, target: TargetServer, transport: str, api: str
) -> None:
    emu = make_emulator(app_engine_host=target.url)
    c = _client(emu, transport, api)
    q = _queue(c, "gae-redirect", retry_config=SLOW_RETRY)
    target.script("/gae", Reply(302, headers={"Location": "/elsewhere"}))
    c.create_task(
        request={
            "parent": q,
            "task": {"name": f"{q}/tasks/g", "app_engine_http_request": {"relative_uri": "/gae"}},
        }
    )
    assert wait_until(_answered(c, f"{q}/tasks/g", 1))
    assert c.get_task(name=f"{q}/tasks/g").dispatch_count == 1
    assert target.received("/elsewhere") == []


# -- 4, 8 and 12. headers: Content-Type, reserved names, stored User-Agent ---------------------
@BOTH
def test_http_task_headers_follow_the_api_rules(
    emulator: Emulator, target: TargetServer, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)
    q = _queue(c, "hdr-rules")
    c.pause_queue(name=q)  # read the stored task before its dispatch deletes it
    sent = {
        "x-cloudtasks-taskretrycount": "99",
        "X-AppEngine-QueueName": "spoofed",
        "X-Google-Internal": "spoofed",
        "user-agent": "mine/1.0",
        "Content-Length": "1",
        "X-Mixed-Case": "preserve-me",
    }
    made = _task(
        c, q, "h", {"url": f"{target.url}/rules", "body": b"{}", "headers": sent},
        response_view=TYPES[api].Task.View.FULL,
    )  # fmt: skip
    # stored as the real service stores them: reserved names gone, its User-Agent set
    assert dict(made.http_request.headers) == {
        "User-Agent": "Google-Cloud-Tasks",
        "X-Mixed-Case": "preserve-me",
    }
    assert dict(c.get_task(name=made.name).http_request.headers) == dict(made.http_request.headers)
    c.resume_queue(name=q)
    (req,) = target.wait_for(1, "/rules")
    names = [name.lower() for name, _ in req.raw_headers]
    assert names.count("user-agent") == 1 and req.headers["user-agent"] == "Google-Cloud-Tasks"
    assert names.count("x-cloudtasks-taskretrycount") == 1
    assert req.headers["x-cloudtasks-taskretrycount"] == "0"
    assert "x-appengine-queuename" not in names and "x-google-internal" not in names
    assert "content-type" not in names  # Cloud Tasks does not set it for HTTP targets
    assert req.headers["content-length"] == "2"
    assert req.headers["x-mixed-case"] == "preserve-me"


@BOTH
def test_app_engine_task_headers_follow_the_api_rules(
    make_emulator: Any, target: TargetServer, transport: str, api: str
) -> None:
    emu = make_emulator(app_engine_host=target.url)
    c = _client(emu, transport, api)
    q = _queue(c, "gae-rules")
    full = TYPES[api].Task.View.FULL
    plain = c.create_task(
        request={
            "parent": q,
            "task": {"name": f"{q}/tasks/a", "app_engine_http_request": {
                "relative_uri": "/gae-a", "body": b'{"hello":"world"}',
                "headers": {"X-AppEngine-TaskName": "spoofed", "User-Agent": "mine"},
            }},
            "response_view": full,
        }
    )  # fmt: skip
    assert dict(plain.app_engine_http_request.headers) == {
        "Content-Length": "17",
        "Content-Type": "application/octet-stream",
        "User-Agent": "mine AppEngine-Google; (+http://code.google.com/appengine)",
    }
    (req,) = target.wait_for(1, "/gae-a")
    assert req.headers["content-type"] == "application/octet-stream"
    assert req.headers["x-appengine-taskname"] == "a"
    assert req.headers["user-agent"].endswith(
        "AppEngine-Google; (+http://code.google.com/appengine)"
    )


# -- 5. a deleted queue's name is not free at once -------------------------------------------
@BOTH
def test_a_deleted_queue_cannot_be_created_again_at_once(
    make_emulator: Any, transport: str, api: str
) -> None:
    emu = make_emulator(time_scale=1000.0, queue_reuse_delay_s=3600.0)  # 3.6 real seconds
    c = _client(emu, transport, api)
    q = _queue(c, "reused")
    c.delete_queue(name=q)
    with pytest.raises(gexc.BadRequest) as refused:  # FAILED_PRECONDITION is HTTP 400
        _queue(c, "reused")
    assert _answer(refused.value) == (
        "FAILED_PRECONDITION",
        "The queue cannot be created because a queue with this name existed too recently.",
    )
    with pytest.raises(gexc.NotFound, match="Queue does not exist"):
        c.get_queue(name=q)

    def created() -> bool:
        try:
            _queue(c, "reused")
        except gexc.BadRequest:
            return False
        return True

    assert wait_until(created, timeout_s=15, step_s=0.2)


def test_queue_reuse_delay_defaults_to_seven_days(emulator: Emulator) -> None:
    c = _client(emulator, "grpc", "v2")
    q = _queue(c, "week")
    c.delete_queue(name=q)
    expiry = emulator.store.queue_tombstones[q]
    assert expiry - emulator.clock.now_s() == pytest.approx(7 * 86400, abs=5)


# -- 6. a failed RunTask reschedules from the call, not the answer ----------------------------
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_failed_run_task_reschedules_from_the_call_time(
    make_emulator: Any, target: TargetServer, transport: str
) -> None:
    emu = make_emulator(time_scale=100.0)
    c = _client(emu, transport, "v2beta3")
    q = _queue(c, "from-call", retry_config={"min_backoff": _d(60), "max_backoff": _d(60)})
    c.pause_queue(name=q)
    release = __import__("threading").Event()
    target.script("/late", Reply(500, hold=release))
    task = _task(c, q, "t", {"url": f"{target.url}/late"})
    called = c.run_task(name=task.name).last_attempt.dispatch_time
    assert target.wait_inflight(1) == 1
    time.sleep(0.5)  # 50 emulated seconds before the target answers
    release.set()
    assert wait_until(_answered(c, task.name, 1))
    got = c.get_task(name=task.name)
    assert (got.last_attempt.response_time - called).total_seconds() >= 40
    assert (got.schedule_time - called).total_seconds() == pytest.approx(60, abs=1e-5)


# -- 7. retry headers -------------------------------------------------------------------------
@BOTH
def test_retry_headers_of_http_and_app_engine_tasks(
    make_emulator: Any, target: TargetServer, transport: str, api: str
) -> None:
    emu = make_emulator(time_scale=1000.0, app_engine_host=target.url)
    c = _client(emu, transport, api)
    q = _queue(c, "retry-hdrs", retry_config={"min_backoff": _d(1), "max_backoff": _d(1)})
    target.script("/h", 503, 404, 500, 200)
    target.script("/g", 503, 404, 500, 200)
    _task(c, q, "h", {"url": f"{target.url}/h"})
    c.create_task(
        request={
            "parent": q,
            "task": {"name": f"{q}/tasks/g", "app_engine_http_request": {"relative_uri": "/g"}},
        }
    )
    http = target.wait_for(4, "/h")
    gae = target.wait_for(4, "/g")
    assert [r.headers["x-cloudtasks-taskretrycount"] for r in http] == ["0", "1", "2", "3"]
    assert [r.headers.get("x-cloudtasks-taskpreviousresponse") for r in http] == [
        None, "503", "404", "500",
    ]  # fmt: skip
    # present and empty on every retry of an HTTP task, as captures of the real service show
    assert [r.headers.get("x-cloudtasks-taskretryreason") for r in http] == [None, "", "", ""]
    # HTTP: answers below 500 count; App Engine: every answer but 503 (no instance) counts
    assert [r.headers["x-cloudtasks-taskexecutioncount"] for r in http] == ["0", "0", "1", "1"]
    assert [r.headers["x-appengine-taskexecutioncount"] for r in gae] == ["0", "0", "1", "2"]
    assert [r.headers.get("x-appengine-taskpreviousresponse") for r in gae] == [
        None, "503", "404", "500",
    ]  # fmt: skip


# -- 9. a past schedule_time becomes now -----------------------------------------------------
@BOTH
def test_a_past_schedule_time_is_set_to_now(emulator: Emulator, transport: str, api: str) -> None:
    c = _client(emulator, transport, api)
    q = _queue(c, "past")
    c.pause_queue(name=q)
    before = emulator.clock.now()
    made = _task(
        c, q, "p", {"url": "http://127.0.0.1:9/x"}, schedule_time=datetime(2001, 1, 1, tzinfo=UTC)
    )
    assert made.schedule_time >= before - timedelta(seconds=1)
    assert c.get_task(name=made.name).schedule_time == made.schedule_time


# -- 10. error texts --------------------------------------------------------------------------
def _error_cases(api: str) -> list[tuple[str, Callable[[Any, str], Any], str, str]]:
    other = f"{LOCATION}/queues/other"
    return [
        (
            "invalid queue name",
            lambda c, q: c.get_queue(name=f"{LOCATION}/queues/bad_name!"),
            "INVALID_ARGUMENT",
            'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/'
            'queues/<QUEUE_ID>".',
        ),
        (
            "invalid task id",
            lambda c, q: _task(c, q, "not a valid id", {"url": "http://127.0.0.1:9/"}),
            "INVALID_ARGUMENT",
            'Task ID "not a valid id" can contain only letters ([A-Za-z]), numbers ([0-9]), '
            "hyphens (-), or underscores (_). Task ID must between 1 and 500 characters.",
        ),
        (
            "task of another queue",
            lambda c, q: c.create_task(
                request={
                    "parent": q,
                    "task": {
                        "name": f"{other}/tasks/t",
                        "http_request": {"url": "http://127.0.0.1:9/"},
                    },
                }
            ),
            "INVALID_ARGUMENT",
            f"The queue name from request ('{LOCATION}/queues/errors') must be the same as the "
            f"queue name in the named task ('{other}').",
        ),
        (
            "delete a missing queue",
            lambda c, q: c.delete_queue(name=other),
            "NOT_FOUND",
            "Requested entity was not found.",
        ),
        (
            "get a missing queue",
            lambda c, q: c.get_queue(name=other),
            "NOT_FOUND",
            "Queue does not exist. If you just created the queue, wait at least a minute for "
            "the queue to initialize.",
        ),
        (
            "get a missing task",
            lambda c, q: c.get_task(name=f"{q}/tasks/never"),
            "NOT_FOUND",
            "Requested entity was not found.",
        ),
        (
            "min backoff above max",
            lambda c, q: _queue(c, "b", retry_config={"min_backoff": _d(9), "max_backoff": _d(1)}),
            "INVALID_ARGUMENT",
            "RetryConfig.minBackoff must be less than or equal to RetryConfig.maxBackoff.",
        ),
        (
            "rate too high",
            lambda c, q: _queue(c, "r", rate_limits={"max_dispatches_per_second": 501}),
            "INVALID_ARGUMENT",
            "RateLimits.maxDispatchesPerSecond must be less than or equal to 500.",
        ),
        (
            "max attempts below -1",
            lambda c, q: _queue(c, "m", retry_config={"max_attempts": -2}),
            "INVALID_ARGUMENT",
            "RetryConfig.maxAttempts must be greater or equal to -1.",
        ),
        (
            "url without scheme",
            lambda c, q: _task(c, q, "u", {"url": "example.com/x"}),
            "INVALID_ARGUMENT",
            "HttpTarget.url must start with 'http://' or 'https://'.",
        ),
        (
            "url missing",
            lambda c, q: _task(c, q, "e", {"url": ""}),
            "INVALID_ARGUMENT",
            "HttpRequest.url is required.",
        ),
        (
            "queue exists",
            lambda c, q: _queue(c, "errors"),
            "ALREADY_EXISTS",
            "Queue already exists",
        ),
    ]


@BOTH
def test_error_texts_are_the_real_services(emulator: Emulator, transport: str, api: str) -> None:
    c = _client(emulator, transport, api)
    q = _queue(c, "errors")
    for label, call, code, message in _error_cases(api):
        with pytest.raises(gexc.GoogleAPICallError) as raised:
            call(c, q)
        assert _answer(raised.value) == (code, message), label


# -- 11. signed OIDC tokens ------------------------------------------------------------------
@BOTH
def test_oidc_tokens_verify_against_the_published_keys(
    emulator: Emulator, target: TargetServer, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)
    q = _queue(c, "oidc")
    audience = "https://billing-worker.example"
    _task(
        c,
        q,
        "o",
        {
            "url": f"{target.url}/oidc",
            "oidc_token": {"service_account_email": SA, "audience": audience},
        },
    )
    (req,) = target.wait_for(1, "/oidc")
    token = req.headers["authorization"].removeprefix("Bearer ")
    # google-auth, as an application verifies Cloud Tasks tokens, with the emulator's certs
    http = google.auth.transport.requests.Request()
    claims = id_token.verify_token(
        token, http, audience=audience, certs_url=f"{emulator.rest_url}/oauth2/v1/certs"
    )
    assert claims["iss"] == ISSUER and claims["aud"] == audience
    assert claims["email"] == SA and claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 3600 and abs(claims["iat"] - time.time()) < 60
    with pytest.raises(ValueError):
        id_token.verify_token(
            token,
            http,
            audience="https://someone-else",
            certs_url=f"{emulator.rest_url}/oauth2/v1/certs",
        )
    # the discovery document leads to a JWKS whose key checks the RS256 signature
    discovery = httpx.get(f"{emulator.rest_url}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == ISSUER
    (jwk,) = httpx.get(discovery["jwks_uri"]).json()["keys"]
    signing_input, _, signature = token.rpartition(".")
    public = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    public.verify(_unb64(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int(text: str) -> int:
    return int.from_bytes(_unb64(text), "big")


def test_oidc_tokens_can_be_signed_with_a_given_key(
    make_emulator: Any, target: TargetServer, tmp_path: Any
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    emu = make_emulator(oidc_key_file=pem)
    c = _client(emu, "grpc", "v2")
    q = _queue(c, "own-key")
    _task(c, q, "k", {"url": f"{target.url}/k", "oidc_token": {"service_account_email": SA}})
    (req,) = target.wait_for(1, "/k")
    signing_input, _, signature = (
        req.headers["authorization"].removeprefix("Bearer ").rpartition(".")
    )
    key.public_key().verify(
        _unb64(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


# -- 12. the smaller ones ---------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_tombstone_and_task_ttl_ranges_are_checked(emulator: Emulator, transport: str) -> None:
    c = _client(emulator, transport, "v2beta3")
    with pytest.raises(gexc.BadRequest, match="between 1 hour and 9 days"):
        _queue(c, "short", tombstone_ttl=_d(60))
    with pytest.raises(gexc.BadRequest, match="between 1 hour and 9 days"):
        _queue(c, "long", tombstone_ttl=_d(10 * 86400))
    with pytest.raises(gexc.BadRequest, match="between 10 days and 10 years"):
        _queue(c, "ttl", task_ttl=_d(86400))
    made = c.create_queue(
        parent=LOCATION,
        queue={"name": f"{LOCATION}/queues/ok", "tombstone_ttl": _d(7200), "task_ttl": _d(864000)},
    )
    assert made.tombstone_ttl == timedelta(hours=2) and made.task_ttl == timedelta(days=10)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_task_ttl_deletes_old_tasks(make_emulator: Any, transport: str) -> None:
    emu = make_emulator(time_scale=2e6)  # 10 days pass in about half a real second
    c = _client(emu, transport, "v2beta3")
    q = _queue(c, "ttl", task_ttl=_d(10 * 86400))
    c.pause_queue(name=q)
    made = _task(c, q, "old", {"url": "http://127.0.0.1:9/x"})
    assert wait_until(lambda: _gone(c, made.name), timeout_s=10)
    assert list(c.list_tasks(parent=q)) == []


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_read_mask_selects_the_queue_fields(emulator: Emulator, transport: str) -> None:
    c = _client(emulator, transport, "v2beta3")
    q = _queue(c, "masked", rate_limits={"max_dispatches_per_second": 7})
    got = c.get_queue(
        request={"name": q, "read_mask": field_mask_pb2.FieldMask(paths=["name", "rate_limits"])}
    )
    assert got.name == q and got.rate_limits.max_dispatches_per_second == 7
    assert not got.retry_config.max_attempts and not got.state  # not in the mask
    listed = list(c.list_queues(request={"parent": LOCATION, "read_mask": {"paths": ["state"]}}))
    assert [x.name for x in listed] == [""] and listed[0].state == tasks_v2beta3.Queue.State.RUNNING
    with pytest.raises(gexc.BadRequest):
        c.get_queue(request={"name": q, "read_mask": {"paths": ["no_such_field"]}})


@BOTH
def test_durations_are_truncated_as_documented(
    emulator: Emulator, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)
    retry = {"min_backoff": _d(1.5), "max_backoff": _d(30.9), "max_retry_duration": _d(100.25)}
    made = c.create_queue(
        parent=LOCATION, queue={"name": f"{LOCATION}/queues/trunc", "retry_config": retry}
    )
    assert made.retry_config.min_backoff == timedelta(seconds=1)
    assert made.retry_config.max_backoff == timedelta(seconds=30)
    assert made.retry_config.max_retry_duration == timedelta(seconds=100)
    c.pause_queue(name=made.name)
    task = _task(
        c, made.name, "d", {"url": "http://127.0.0.1:9/x"}, dispatch_deadline=_d(15.0004567)
    )
    assert task.dispatch_deadline == timedelta(seconds=15)


@BOTH
def test_list_locations_shows_the_cloud_tasks_regions(
    emulator: Emulator, transport: str, api: str
) -> None:
    c = _client(emulator, transport, api)
    _queue(c, "here", parent=f"projects/{PROJECT}/locations/local-dev")
    listed = c.list_locations(request={"name": f"projects/{PROJECT}"})
    ids = [loc.location_id for loc in listed.locations]
    assert {"us-central1", "europe-west1", "local-dev"} <= set(ids)
    assert all(
        loc.name == f"projects/{PROJECT}/locations/{loc.location_id}" for loc in listed.locations
    )
    one = c.get_location(request={"name": f"projects/{PROJECT}/locations/europe-west1"})
    assert one.location_id == "europe-west1"


@pytest.mark.parametrize("api", ["v2", "v2beta3"])
def test_buffer_task_over_rest(emulator: Emulator, target: TargetServer, api: str) -> None:
    # google-cloud-tasks 2.26 has no buffer_task: the REST call as gcloud and curl make it
    c = _client(emulator, "grpc", api)
    host = target.url.removeprefix("http://")
    hostname, port = host.split(":")
    q = _queue(
        c,
        "buffered",
        http_target={
            "uri_override": {
                "host": hostname,
                "port": int(port),
                "scheme": 1,
                "path_override": {"path": "/buf"},
            }
        },
    )
    reply = httpx.post(
        f"{emulator.rest_url}/{api}/{q}/tasks/b1:buffer",
        json={"body": {"contentType": "application/json", "data": "eyJhIjogMX0="}},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["task"]["name"] == f"{q}/tasks/b1"
    (req,) = target.wait_for(1, "/buf")
    assert (req.method, req.body) == ("POST", b'{"a": 1}')
    assert req.headers["content-type"] == "application/json"
    generated = httpx.post(f"{emulator.rest_url}/{api}/{q}/tasks:buffer", json={})
    assert generated.json()["task"]["name"].startswith(f"{q}/tasks/")
    plain = _queue(c, "no-target")
    refused = httpx.post(f"{emulator.rest_url}/{api}/{plain}/tasks:buffer", json={})
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "FAILED_PRECONDITION"
