"""Re-create re-drives through the real servers: the emulator, functions-framework serving
handle_signal, an HTTP target that records every request.

A re-created task's request at the target is the original's (method, URL, headers, body, the OIDC
token's audience and account) apart from Cloud Tasks' own headers; the original is gone; every
redelivery, fault and race ends with the work run exactly once.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from redrive_tools.devserver import wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    now_rfc3339,
    post_signal,
)

ACCOUNT = "tasks-invoker@demo.iam.gserviceaccount.com"
AUDIENCE = "https://billing.example/hooks"
SECRET = "R3CREATE-SECRET-77a1"


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    return {api: stack.queue(f"rc-{api}") for api in ("v2", "v2beta3")}


@pytest.fixture
def server(stack: Stack, queues: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    started: list[FunctionServer] = []

    def start(api: str = "v2beta3", **extra: str) -> FunctionServer:
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": ",".join(queues.values()),
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_METHOD": "recreate",
            "REDRIVE_RECREATE_DELAY_S": "0.5",
            "REDRIVE_TASKS_API": api,
            "REDRIVE_RESPONSE_VIEW": "FULL",
            "REDRIVE_RETRY_DEADLINE_S": "1",
            "REDRIVE_RPC_TIMEOUT_S": "0.5",
            "REDRIVE_MAX_SIGNAL_AGE": "1h",
            **extra,
        }
        fn = FunctionServer("handle_signal", "cloudevent", env, tmp_path / f"fn-{len(started)}.log")
        started.append(fn)
        return fn

    yield start
    for fn in started:
        fn.stop()


_ids = iter(range(10_000))


def failed_task(stack: Stack, queue: str, name: str) -> tuple[str, str]:
    """A task with everything a request carries (method, headers, body, OIDC token), whose first
    attempt failed; the target succeeds from now on. Returns the task and its path."""
    path = f"/rc/{name}-{next(_ids)}"
    task = f"{queue}/tasks/{name}-{next(_ids)}"
    stack.client.create_task(
        request={
            "parent": queue,
            "task": {
                "name": task,
                "http_request": {
                    "url": stack.target.url(path) + "?job=7",
                    "http_method": "PUT",
                    "headers": {
                        "Content-Type": "application/json",
                        "X-Tenant": "acme",
                        "X-Secret": SECRET,
                    },
                    "body": json.dumps({"invoice": 441, "secret": SECRET}).encode(),
                    "oidc_token": {"service_account_email": ACCOUNT, "audience": AUDIENCE},
                },
            },
        }
    )
    stack.target.statuses[path] = 500
    wait_for(
        lambda: (t := stack.get(task)) is not None and "response_status" in t.last_attempt,
        "the failed first attempt",
    )
    stack.target.statuses[path] = 200
    return task, path


def requests_to(stack: Stack, path: str) -> list[tuple[str, dict[str, str], bytes]]:
    return [r for r in stack.target.requests if r[0].split("?")[0] == path]


def claims_of(headers: dict[str, str]) -> dict[str, Any]:
    token = headers["Authorization"].removeprefix("Bearer ")
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def own_headers(headers: dict[str, str]) -> dict[str, str]:
    """The request's headers without Cloud Tasks' own (and the per-request token)."""
    return {
        k: v
        for k, v in headers.items()
        if not k.lower().startswith(("x-cloudtasks-", "x-appengine-"))
        and k.lower() not in ("authorization", "content-length", "host", "user-agent")
    }


def deploy(queue: str) -> bytes:
    return json.dumps({"deployed": {"queues": [queue], "at": now_rfc3339()}}).encode()


@pytest.mark.parametrize("api", ["v2", "v2beta3"])
def test_the_copy_sends_the_originals_request_and_the_original_is_gone(stack, queues, server, api):
    fn = server(api)
    task, path = failed_task(stack, queues[api], "same")
    response = post_signal(fn, deploy(queues[api]), f"rc-{api}", now_rfc3339())
    assert response.status_code == 200, response.text
    (line,) = fn.outcomes(task=task)
    assert line["outcome"] == "RECREATED", line["reason"]
    copy = line["run"]["copy"]
    assert line["run"]["method"] == "recreate" and line["run"]["original"] == task
    assert copy != task and copy.startswith(queues[api] + "/tasks/same-")
    assert stack.gone(task)
    wait_for(lambda: len(requests_to(stack, path)) == 2, "the copy's request")
    (_, first, first_body), (_, again, again_body) = requests_to(stack, path)
    assert again_body == first_body and own_headers(again) == own_headers(first)
    assert again["X-CloudTasks-TaskName"] == copy.rsplit("/", 1)[1]
    assert first["X-CloudTasks-TaskName"] == task.rsplit("/", 1)[1]
    for token in (claims_of(first), claims_of(again)):
        assert token["aud"] == AUDIENCE and token["email"] == ACCOUNT
    wait_for(lambda: stack.gone(copy), "the copy to complete")
    summary = [x for x in fn.lines() if x.get("event") == "redrive.sweep"][-1]
    assert summary["methods"][queues[api]]["method"] == "recreate"
    # Bodies and headers were read (FULL view) but reach no line.
    assert SECRET not in fn.log_path.read_text()


def test_a_copy_withdrawn_on_a_refused_delete_leaves_the_next_attempt_free(stack, queues, server):
    """The original cannot be deleted (DeleteTask refused): the copy is withdrawn before it is
    due and the claim's rung ended; once the grant is fixed the signal comes again, the next
    attempt makes a copy of another name, and the work runs once."""
    fn = server(REDRIVE_RECREATE_DELAY_S="5")
    queue = queues["v2beta3"]
    task, path = failed_task(stack, queue, "withdrawn")
    stack.emu.control.fail("DeleteTask", grpc.StatusCode.PERMISSION_DENIED, times=1)
    message = f"rc-w-{next(_ids)}"
    first = post_signal(fn, deploy(queue), message, now_rfc3339())
    stack.emu.control.clear()
    assert first.status_code == 200  # a missing grant is acknowledged, loudly
    (refused,) = fn.outcomes(task=task)
    assert refused["outcome"] == "PERMISSION_DENIED" and "withdrawn" in refused["reason"]
    assert not stack.gone(task)
    again = post_signal(fn, deploy(queue), message, now_rfc3339())
    assert again.status_code == 200
    line = fn.outcomes(task=task)[-1]
    assert line["outcome"] == "RECREATED" and line["claim"]["rung"] == 2, line
    wait_for(lambda: stack.gone(line["run"]["copy"]), "the copy to run and complete")
    assert len(requests_to(stack, path)) == 2  # the failed first attempt, then one copy
    assert stack.gone(task)


def test_a_half_done_recreate_is_finished_by_the_next_delivery(stack, queues, server):
    """The copy is made, then the original cannot be deleted before the copy is due: the copy
    stays (it carries the work) and the signal comes back; the next delivery finds the copy
    through its claim and deletes the original instead of copying again."""
    fn = server()  # copies due 0.5 s after they are made
    queue = queues["v2beta3"]
    task, path = failed_task(stack, queue, "half")
    stack.emu.control.fail("DeleteTask", grpc.StatusCode.UNAVAILABLE, times=-1)
    message = f"rc-h-{next(_ids)}"
    try:
        first = post_signal(fn, deploy(queue), message, now_rfc3339())
    finally:
        stack.emu.control.clear()
    assert first.status_code == 500
    (failed,) = fn.outcomes(task=task)
    assert "stays" in failed["reason"] and "delete the original" in failed["reason"], failed
    wait_for(lambda: len(requests_to(stack, path)) == 2, "the copy to run")  # it was due
    for _ in range(40):  # Pub/Sub's redeliveries, until the claim's window lets them judge
        again = post_signal(fn, deploy(queue), message, now_rfc3339())
        if again.status_code == 200:
            break
        time.sleep(0.25)
    line = fn.outcomes(task=task)[-1]
    assert line["outcome"] == "RECREATED" and line["claim"].get("resumed") is True, line
    assert stack.gone(task)
    assert len(requests_to(stack, path)) == 2  # never a second copy


def test_an_original_that_runs_while_it_is_copied_withdraws_the_copy(stack, queues):
    """The race the margin guards, forced: the original disappears (it ran) between the FULL read
    and the delete. The copy is withdrawn before it is due: the work runs exactly once."""
    from redrive import pipeline
    from redrive.adapters.log import OutcomeLog
    from redrive.core.config import Settings
    from redrive.core.decide import Failure, SignalRef
    from redrive.core.names import TaskName
    from redrive.runtime import Runtime

    queue = queues["v2beta3"]
    task, path = failed_task(stack, queue, "race")
    settings = Settings.from_env(
        {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": queue,
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_METHOD": "recreate",
            "REDRIVE_RECREATE_DELAY_S": "2",
        }
    )
    rt = Runtime(settings, log=OutcomeLog(open("/dev/null", "w")))  # noqa: SIM115
    real_create = rt.tasks.create_copy

    def create_then_the_original_runs(original: Any, name: Any, due: Any) -> bool:
        created = real_create(original, name, due)
        stack.client.run_task(request={"name": task})  # someone runs it now: 200, gone
        wait_for(lambda: stack.gone(task), "the original to run and complete")
        return created

    rt.tasks.create_copy = create_then_the_original_runs  # type: ignore[method-assign,assignment]
    failure = Failure(TaskName.parse(task), rt.clock(), SignalRef("test", "test", "race"), 1)
    result = pipeline.process(pipeline.Request(failure, pipeline.Act.RECREATE, owner="t"), rt)
    assert result.outcome.value == "NOT_FOUND" and "withdrawn" in result.reason, result.reason
    copy = next(n for n in [result.reason.split("copy ")[1].split(" ")[0]])
    assert stack.gone(f"{queue}/tasks/{copy}")
    time.sleep(2.5)  # past the copy's due time: it never runs
    assert len(requests_to(stack, path)) == 2  # the failed first attempt, the original's run


def test_a_task_whose_own_retry_is_near_is_not_recreated(stack, server):
    fn = server()
    queue = stack.queue(f"rc-soon-{next(_ids)}", min_backoff_s=120.0)  # due in 2 min < 5 min
    task, _ = failed_task(stack, queue, "soon")
    env_queue = queue
    fn = server(REDRIVE_ALLOWED_QUEUES=env_queue)
    response = post_signal(fn, deploy(queue), f"rc-s-{next(_ids)}", now_rfc3339())
    assert response.status_code == 200
    (line,) = fn.outcomes(task=task)
    assert line["outcome"] == "SKIPPED_RETRY_DUE" and "REDRIVE_RECREATE_MARGIN_S" in line["reason"]
    assert not stack.gone(task)


def test_auto_runs_a_small_sweep_and_recreates_a_large_one(stack, server):
    small = stack.queue(f"rc-auto-s-{next(_ids)}")
    large = stack.queue(f"rc-auto-l-{next(_ids)}")
    few = [failed_task(stack, small, "few")[0] for _ in range(2)]
    many = [failed_task(stack, large, "many")[0] for _ in range(4)]
    fn = server(
        REDRIVE_ALLOWED_QUEUES=f"{small},{large}",
        REDRIVE_METHOD="auto",
        REDRIVE_DIRECT_RATE_PER_S="100",
        # Three tasks fit the quota within the time: two are run, four are re-created.
        REDRIVE_RUN_QUOTA_PER_MIN="60",
        REDRIVE_AUTO_RUN_WITHIN_S="3",
    )
    both = json.dumps({"deployed": {"queues": [small, large], "at": now_rfc3339()}}).encode()
    assert post_signal(fn, both, f"rc-a-{next(_ids)}", now_rfc3339()).status_code == 200
    outcomes = {x["task"]: x["outcome"] for x in fn.outcomes() if x["task"]}
    assert {outcomes[t] for t in few} == {"DISPATCHED"}
    assert {outcomes[t] for t in many} == {"RECREATED"}
    (sweep,) = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
    assert sweep["methods"][small]["method"] == "run" and "fit" in sweep["methods"][small]["why"]
    assert sweep["methods"][large]["method"] == "recreate"


def test_an_app_engine_task_is_recreated_with_its_routing_and_request(tmp_path):
    """App Engine targets: the copy keeps the relative URI, the method, the headers, the body and
    the routing; only App Engine's own task headers differ."""
    from cloudtasks_emulator import Emulator, Quotas, tasks_client
    from tests.integration.helpers import Target

    target = Target().start()
    emu = Emulator(
        app_engine_host=f"http://127.0.0.1:{target.port}", quotas=Quotas.lifted()
    ).start()
    try:
        client = tasks_client(emu.grpc_target, "v2")
        queue = client.create_queue(
            request={
                "parent": PARENT,
                "queue": {
                    "name": f"{PARENT}/queues/rc-appengine",
                    "retry_config": {"max_attempts": -1, "min_backoff": "3600s"},
                },
            }
        ).name
        claims = client.create_queue(
            request={"parent": PARENT, "queue": {"name": f"{PARENT}/queues/rc-ae-claims"}}
        ).name
        client.pause_queue(request={"name": claims})
        task = f"{queue}/tasks/ae-1"
        target.statuses["/worker/run"] = 500
        client.create_task(
            request={
                "parent": queue,
                "task": {
                    "name": task,
                    "app_engine_http_request": {
                        "http_method": "POST",
                        "relative_uri": "/worker/run?batch=3",
                        "app_engine_routing": {"service": "worker", "version": "v7"},
                        "headers": {"X-Tenant": "acme"},
                        "body": b"payload-3",
                    },
                },
            }
        )
        wait_for(lambda: len(target.requests) == 1, "the failed first attempt")
        wait_for(
            lambda: "response_status" in client.get_task(request={"name": task}).last_attempt,
            "its answer",
        )
        target.statuses["/worker/run"] = 200
        env = {
            **emu.env(),
            "REDRIVE_ALLOWED_QUEUES": queue,
            "REDRIVE_CLAIMS_QUEUE": claims,
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_METHOD": "recreate",
            "REDRIVE_RECREATE_DELAY_S": "0.5",
            "REDRIVE_TASKS_API": "v2",
            "REDRIVE_MAX_SIGNAL_AGE": "1h",
        }
        fn = FunctionServer("handle_signal", "cloudevent", env, tmp_path / "fn.log")
        try:
            assert post_signal(fn, deploy(queue), "rc-ae", now_rfc3339()).status_code == 200
            (line,) = fn.outcomes(task=task)
        finally:
            fn.stop()
        assert line["outcome"] == "RECREATED", line["reason"]
        copy = client.get_task(request={"name": line["run"]["copy"], "response_view": "FULL"})
        routing = copy.app_engine_http_request.app_engine_routing
        assert (routing.service, routing.version) == ("worker", "v7")
        wait_for(lambda: len(target.requests) == 2, "the copy's request")
        (p1, h1, b1), (p2, h2, b2) = target.requests
        assert (p2, b2, own_headers(h2)) == (p1, b1, own_headers(h1))
        assert h2["X-AppEngine-TaskName"] != h1["X-AppEngine-TaskName"]
    finally:
        emu.stop()
        target.stop()
