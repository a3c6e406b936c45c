"""Parking through the real servers: the emulator, functions-framework serving handle_signal, an
HTTP target that records every request.

A task whose next attempt would be its last is parked (moved into the paused parking queue as a
copy that can never run, the original deleted) when redrive learns of it, from a failure signal or
from the patrol; a deploy that fixes it restores it (created again in its origin queue, due now,
the parked copy deleted); the target then receives the original's request once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from redrive.core.parking import PARKED_HOST, Parked, RetryRule, retries_exhausted
from redrive_tools.devserver import wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    function_server,
    now_rfc3339,
    post_signal,
)

SECRET = "PARKED-SECRET-5e1"
LONG_AGO = "2020-01-01T00:00:00Z"
"""REDRIVE_FIX_DEPLOYED_AT for "no fix is live": the static fix check then covers no failure."""


def make_queue(
    stack: Stack,
    queue_id: str,
    *,
    max_attempts: int = 3,
    max_retry_duration_s: float = 0,
    min_backoff_s: float = 3600,
    max_backoff_s: float = 3600,
) -> str:
    name = f"{PARENT}/queues/{queue_id}"
    if stack.get_queue(name) is None:
        retry: dict[str, Any] = {
            "max_attempts": max_attempts,
            "min_backoff": f"{min_backoff_s}s",
            "max_backoff": f"{max_backoff_s}s",
            "max_doublings": 16,
        }
        if max_retry_duration_s:
            retry["max_retry_duration"] = f"{max_retry_duration_s}s"
        stack.client.create_queue(
            request={"parent": PARENT, "queue": {"name": name, "retry_config": retry}}
        )
    return name


@pytest.fixture(scope="module")
def parking(stack: Stack) -> str:
    name = f"{PARENT}/queues/redrive-parking"
    if stack.get_queue(name) is None:
        stack.queue("redrive-parking", paused=True)
    return name


@pytest.fixture(scope="module")
def origin(stack: Stack) -> str:
    return make_queue(stack, "pk-origin")


@pytest.fixture
def server(stack: Stack, parking: str, origin: str, tmp_path: Path) -> Iterator[Any]:
    started: list[FunctionServer] = []

    def start(**extra: str) -> FunctionServer:
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": origin,
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            "REDRIVE_PARKING_QUEUE": parking,
            "REDRIVE_FIX_CHECK": "static",
            "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
            "REDRIVE_MAX_SIGNAL_AGE": "3650d",
            "REDRIVE_RETRY_DEADLINE_S": "1",
            "REDRIVE_RPC_TIMEOUT_S": "0.5",
            **extra,
        }
        fn = FunctionServer("handle_signal", "cloudevent", env, tmp_path / f"fn-{len(started)}.log")
        started.append(fn)
        return fn

    yield start
    for fn in started:
        fn.stop()


_ids = iter(range(100_000))


def failing_twice(stack: Stack, queue: str, name: str) -> tuple[str, str]:
    """A task with a full request whose first two attempts failed (the queue's dispatch, then a
    forced run): its third attempt, an hour away, is its last. The target succeeds from now on."""
    path = f"/pk/{name}-{next(_ids)}"
    task = f"{queue}/tasks/{name}-{next(_ids)}"
    stack.client.create_task(
        request={
            "parent": queue,
            "task": {
                "name": task,
                "http_request": {
                    "url": stack.target.url(path) + "?invoice=441",
                    "http_method": "PUT",
                    "headers": {"Content-Type": "application/json", "X-Secret": SECRET},
                    "body": json.dumps({"invoice": 441, "secret": SECRET}).encode(),
                },
            },
        }
    )
    stack.target.statuses[path] = 500
    wait_for(
        lambda: (t := stack.get(task)) is not None and "response_status" in t.last_attempt,
        "the failed first attempt",
    )
    stack.client.run_task(request={"name": task})
    wait_for(lambda: stack.get(task).dispatch_count == 2, "the failed forced attempt")
    wait_for(lambda: len(requests_to(stack, path)) == 2, "two requests at the target")
    stack.target.statuses[path] = 200
    return task, path


def requests_to(stack: Stack, path: str) -> list[tuple[str, dict[str, str], bytes]]:
    return [r for r in stack.target.requests if r[0].split("?")[0] == path]


def own(headers: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in headers.items()
        if not k.lower().startswith("x-cloudtasks-")
        and k.lower() not in ("content-length", "host", "user-agent")
    }


def task_log(task: str, dispatch_count: int, max_attempts: int) -> bytes:
    return json.dumps(
        {
            "logName": "projects/demo/logs/cloudtasks.googleapis.com%2Ftask_operations_log",
            "resource": {"type": "cloud_tasks_queue"},
            "timestamp": now_rfc3339(),
            "jsonPayload": {
                "task": task,
                "attemptResponseLog": {
                    "status": "INTERNAL",
                    "dispatchCount": str(dispatch_count),
                    "maxAttempts": max_attempts,
                },
            },
        }
    ).encode()


def deploy(queue: str) -> bytes:
    return json.dumps({"deployed": {"queues": [queue], "at": now_rfc3339()}}).encode()


def parked_in(stack: Stack, parking: str) -> list[Any]:
    return list(stack.client.list_tasks(request={"parent": parking, "response_view": "FULL"}))


def test_parked_before_its_last_attempt_then_restored_by_the_deploy(
    stack: Stack, server: Any, parking: str, origin: str
) -> None:
    fn = server()
    task, path = failing_twice(stack, origin, "invoice")
    original = stack.client.get_task(request={"name": task, "response_view": "FULL"})

    response = post_signal(fn, task_log(task, 2, 3), f"pk-log-{task}", now_rfc3339())
    assert response.status_code == 200, response.text
    (line,) = fn.outcomes(task=task)
    assert line["outcome"] == "PARKED", line["reason"]
    assert line["severity"] == "WARNING"
    assert "attempt 3 would be its last" in line["reason"]
    assert stack.gone(task)
    copy = line["parked"]["copy"]
    assert copy.startswith(parking + "/tasks/pk-origin--invoice-")

    # The parked copy holds the original's whole request and can reach no target.
    stored = stack.client.get_task(request={"name": copy, "response_view": "FULL"})
    assert stored.http_request.url.startswith(f"https://{PARKED_HOST}/")
    parked = Parked.from_url(stored.http_request.url)
    assert parked is not None and str(parked.origin) == task and parked.dispatch_count == 2
    assert parked.status == "INTERNAL" and parked.why.value == "last_attempt"
    kept = type(original).deserialize(stored.http_request.body)
    assert kept.http_request == original.http_request
    assert stack.get_queue(parking).state.name == "PAUSED"
    time.sleep(0.3)
    assert len(requests_to(stack, path)) == 2  # nothing reached the target meanwhile

    response = post_signal(fn, deploy(origin), f"pk-deploy-{task}", now_rfc3339())
    assert response.status_code == 200, response.text
    (restored,) = fn.outcomes(task=task, outcome="RESTORED")
    again = restored["parked"]["restored_as"]
    assert again.startswith(origin + "/tasks/invoice-") and again != task
    assert stack.gone(copy)
    wait_for(lambda: len(requests_to(stack, path)) == 3, "the restored task's request")
    wait_for(lambda: stack.gone(again), "the restored task completing")
    before, after = requests_to(stack, path)[0], requests_to(stack, path)[2]
    assert after[0] == before[0]  # method and URL (query included)
    assert own(after[1]) == own(before[1]) and after[2] == before[2]
    assert "x-redrive" not in json.dumps(after[1]).lower()
    time.sleep(0.3)
    assert len(requests_to(stack, path)) == 3  # exactly once after parking


def test_a_task_that_is_not_on_its_last_attempt_is_left_alone(
    stack: Stack, server: Any, origin: str
) -> None:
    fn = server()
    queue = make_queue(stack, "pk-roomy", max_attempts=10)
    fn = server(REDRIVE_ALLOWED_QUEUES=queue)
    task, _ = failing_twice(stack, queue, "roomy")
    post_signal(fn, task_log(task, 2, 10), f"pk-roomy-{task}", now_rfc3339())
    (line,) = fn.outcomes(task=task)
    assert line["outcome"] == "SKIPPED_FIX_NOT_DEPLOYED"
    assert "not parked: attempt 3 is not its last (max_attempts 10" in line["reason"]
    assert stack.get(task) is not None


def test_the_patrol_parks_a_task_whose_signals_were_all_lost(
    stack: Stack, server: Any, parking: str, origin: str
) -> None:
    fn = server()
    task, _ = failing_twice(stack, origin, "lost")
    other, _ = failing_twice(stack, make_queue(stack, "pk-roomy", max_attempts=10), "roomy")
    response = post_signal(
        fn, json.dumps({"patrol": {}}).encode(), f"pk-patrol-{task}", now_rfc3339()
    )
    assert response.status_code == 200, response.text
    (line,) = fn.outcomes(task=task)
    assert line["outcome"] == "PARKED", line["reason"]
    assert stack.gone(task)
    assert stack.get(other) is not None  # not in the allowlist, and not on its last attempt
    (patrol,) = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
    assert patrol["purpose"] == "patrol" and patrol["message"].startswith("PATROL")
    assert patrol["parking"]["state"] == "PAUSED" and patrol["parking"]["parked"] >= 1
    assert patrol["counts"] == {"PARKED": 1}


def test_the_patrol_keeps_up_with_a_queue_retrying_on_its_own(tmp_path: Path) -> None:
    """Emulated time runs 100 times faster: the queue's own backoff runs the attempts (10 min,
    then 20 min apart); a patrol every real second parks the task before its third and last
    attempt."""
    stack = Stack(time_scale=100.0)
    try:
        queue = make_queue(stack, "pk-live", min_backoff_s=600, max_backoff_s=3600)
        parking = stack.queue("redrive-parking", paused=True)
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": queue,
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            "REDRIVE_PARKING_QUEUE": parking,
            "REDRIVE_FIX_CHECK": "static",
            "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
            "REDRIVE_MAX_SIGNAL_AGE": "3650d",
            "REDRIVE_RETRY_DEADLINE_S": "1",
            "REDRIVE_RPC_TIMEOUT_S": "0.5",
            "REDRIVE_PARK_MARGIN_S": "60",
        }
        with function_server("handle_signal", "cloudevent", env, tmp_path / "fn.log") as fn:
            path = "/pk/live"
            stack.target.statuses[path] = 500
            task = stack.task(queue, "live", path)
            deadline = time.monotonic() + 60
            patrols = 0
            while not fn.outcomes(task=task, outcome="PARKED") and time.monotonic() < deadline:
                post_signal(fn, b'{"patrol": {}}', f"live-{patrols}", now_rfc3339())
                patrols += 1
                time.sleep(1.0)
            (line,) = fn.outcomes(task=task, outcome="PARKED")
            assert line["failed_dispatch_count"] == 2 or line["task_state"]["dispatch_count"] == 2
            assert stack.gone(task)
            assert len(requests_to(stack, path)) == 2  # parked instead of its last attempt
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("max_attempts", "max_retry_duration_s"),
    [(3, 0), (1, 0), (-1, 2000), (2, 2000), (5, 1000), (4, 0)],
)
def test_the_stop_rule_is_the_emulators(max_attempts: int, max_retry_duration_s: float) -> None:
    """Forced attempts 500 emulated seconds apart against queues with either limit, or both: the
    task disappears after exactly the attempt `retries_exhausted` calls its last."""
    stack = Stack(time_scale=1000.0)
    try:
        queue = make_queue(
            stack,
            f"rule-{max_attempts + 1}-{int(max_retry_duration_s)}",
            max_attempts=max_attempts,
            max_retry_duration_s=max_retry_duration_s,
            min_backoff_s=86400,
            max_backoff_s=86400,
        )
        stack.target.statuses["/rule"] = 500
        task = stack.task(queue, "rule", "/rule", schedule_in_s=86400)
        rule = RetryRule(max_attempts, max_retry_duration_s)
        first: datetime | None = None
        for attempt in range(1, 12):
            now = stack.emu.clock.now()
            first = first or now
            # The attempt is answered within a few real milliseconds: seconds, emulated.
            predicted = retries_exhausted(rule, attempt, (now - first).total_seconds() + 5)
            assert retries_exhausted(rule, attempt, (now - first).total_seconds()) == predicted
            stack.client.run_task(request={"name": task})

            def answered(made: int = attempt) -> bool:
                got = stack.get(task)
                return got is None or (
                    got.dispatch_count == made and "response_status" in got.last_attempt
                )

            wait_for(answered, f"attempt {attempt} answered")
            assert stack.gone(task) == predicted, (attempt, rule)
            if predicted:
                break
            stack.emu.clock.sleep(500)
        else:
            pytest.fail("the task outlived every attempt")
    finally:
        stack.stop()


def test_parking_needs_the_claims_queue(stack: Stack, parking: str, origin: str) -> None:
    from redrive.core.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="REDRIVE_PARKING_QUEUE needs REDRIVE_CLAIMS_QUEUE"):
        Settings.from_env({"REDRIVE_PARKING_QUEUE": parking})
    with pytest.raises(ConfigError, match="REDRIVE_ALLOWED_QUEUES lists REDRIVE_PARKING_QUEUE"):
        Settings.from_env(
            {
                "REDRIVE_PARKING_QUEUE": parking,
                "REDRIVE_CLAIMS_QUEUE": stack.claims(),
                "REDRIVE_ALLOWED_QUEUES": f"{origin},{parking}",
            }
        )


def test_a_failure_signal_and_a_patrol_at_once_park_the_task_once(
    stack: Stack, server: Any, parking: str, origin: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    one, two = server(), server()
    task, path = failing_twice(stack, origin, "race")
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda args: post_signal(*args),
                [
                    (one, task_log(task, 2, 3), f"race-log-{task}", now_rfc3339()),
                    (two, b'{"patrol": {}}', f"race-patrol-{task}", now_rfc3339()),
                ],
            )
        )
    # A delivery that stood aside or met its own claim too young to judge comes back.
    for fn, first, message in ((one, answers[0], "log"), (two, answers[1], "patrol")):
        payload = task_log(task, 2, 3) if message == "log" else b'{"patrol": {}}'
        answer, tries = first, 0
        while answer.status_code >= 300 and tries < 10:
            time.sleep(0.5)
            answer = post_signal(fn, payload, f"race-{message}-{task}", now_rfc3339())
            tries += 1
        assert answer.status_code == 200, answer.text
    outcomes = [x["outcome"] for fn in (one, two) for x in fn.outcomes(task=task)]
    assert outcomes.count("PARKED") == 1, outcomes
    copies = [
        t.name
        for t in stack.client.list_tasks(request={"parent": parking})
        if (p := Parked.from_url(t.http_request.url)) is not None and str(p.origin) == task
    ]
    assert len(copies) == 1 and stack.gone(task)
    assert len(requests_to(stack, path)) == 2


def test_two_deploys_at_once_restore_a_parked_task_once(
    stack: Stack, server: Any, parking: str, origin: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    one, two = server(), server()
    task, path = failing_twice(stack, origin, "twice")
    assert (
        post_signal(one, task_log(task, 2, 3), f"tw-log-{task}", now_rfc3339()).status_code == 200
    )
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda fn: post_signal(fn[0], deploy(origin), fn[1], now_rfc3339()),
                [(one, f"tw-a-{task}"), (two, f"tw-b-{task}")],
            )
        )
    for fn, first, message in (
        (one, answers[0], f"tw-a-{task}"),
        (two, answers[1], f"tw-b-{task}"),
    ):
        answer, tries = first, 0
        while answer.status_code >= 300 and tries < 10:
            time.sleep(0.5)
            answer = post_signal(fn, deploy(origin), message, now_rfc3339())
            tries += 1
        assert answer.status_code == 200, answer.text
    outcomes = [x["outcome"] for fn in (one, two) for x in fn.outcomes(task=task)]
    assert outcomes.count("RESTORED") == 1, outcomes
    wait_for(lambda: len(requests_to(stack, path)) == 3, "the restored task's request")
    time.sleep(0.5)
    assert len(requests_to(stack, path)) == 3  # once


def test_an_earlier_restore_that_can_no_longer_be_told_keeps_the_copy_until_said_again(
    stack: Stack, parking: str, origin: str
) -> None:
    """A restore that took its claim and then vanished over an hour ago (its restored task's name
    is forgotten by now): the parked copy is kept and nothing is created, until an operator says
    that restore did not run (--again)."""
    from datetime import timedelta

    from redrive import pipeline
    from redrive.core.claims import FailureKey
    from redrive.core.config import Settings
    from redrive.core.decide import Failure, SignalRef
    from redrive.core.names import TaskName
    from redrive.pipeline.parking import RESTORE_FIX
    from redrive.runtime import Runtime

    env = {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": origin,
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        "REDRIVE_PARKING_QUEUE": parking,
        "REDRIVE_FIX_CHECK": "static",
        "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
        "REDRIVE_RETRY_DEADLINE_S": "1",
    }
    now = Runtime(Settings.from_env(env))
    later = Runtime(
        Settings.from_env(env), clock=lambda: stack.emu.clock.now() + timedelta(hours=2)
    )
    task, path = failing_twice(stack, origin, "unclear")
    origin_task = TaskName.parse(task)
    parked = pipeline.process(
        pipeline.Request(
            Failure(origin_task, now.clock(), SignalRef("patrol", "patrol"), 2),
            pipeline.Act.PARK,
            owner="patrol",
        ),
        now,
    )
    assert parked.outcome.value == "PARKED" and parked.parked is not None
    copy = TaskName.parse(str(parked.parked["copy"]))
    # The vanished restore: its rung taken, nothing else done.
    assert now.claims is not None
    now.claims.claim(
        FailureKey(copy, 2), fix=RESTORE_FIX, owner="cli:vanished", reread=None, marked=False
    )

    def restore(again: bool) -> Any:
        failure = Failure(origin_task, later.clock(), SignalRef("cli", "operator"), 2)
        request = pipeline.Request(
            failure, pipeline.Act.RESTORE, parked=copy, owner="cli:now", again=again
        )
        return pipeline.process(request, later)

    kept = restore(again=False)
    assert kept.outcome.value == "SKIPPED_DUPLICATE", kept.reason
    assert "--again" in kept.reason and stack.get(str(copy)) is not None
    done = restore(again=True)
    assert done.outcome.value == "RESTORED", done.reason
    assert done.claim is not None and done.claim["rung"] == 2
    assert stack.gone(str(copy))
    wait_for(lambda: len(requests_to(stack, path)) == 3, "the restored task's request")


def test_a_restored_task_that_fails_again_is_parked_again(
    stack: Stack, server: Any, parking: str, origin: str
) -> None:
    """The deploy did not fix it: the restored task (fresh counters) fails, and before its own
    last attempt it is parked again, under its new name."""
    fn = server()
    task, path = failing_twice(stack, origin, "stubborn")
    post_signal(fn, task_log(task, 2, 3), f"st-log-{task}", now_rfc3339())
    stack.target.statuses[path] = 500  # the "fix" is no fix
    post_signal(fn, deploy(origin), f"st-deploy-{task}", now_rfc3339())
    (restored,) = fn.outcomes(task=task, outcome="RESTORED")
    again = restored["parked"]["restored_as"]
    wait_for(
        lambda: (t := stack.get(again)) is not None and "response_status" in t.last_attempt,
        "the restored task's failed first attempt",
    )
    stack.client.run_task(request={"name": again})
    wait_for(lambda: stack.get(again).dispatch_count == 2, "its failed second attempt")
    wait_for(lambda: len(requests_to(stack, path)) == 4, "four requests in all")
    # The signal names the restored task; the deploy above is older than its failures.
    post_signal(fn, task_log(again, 2, 3), f"st-log2-{task}", now_rfc3339())
    (line,) = fn.outcomes(task=again, outcome="PARKED")
    assert stack.gone(again)
    parked = Parked.from_url(stack.get(line["parked"]["copy"]).http_request.url)
    assert parked is not None and str(parked.origin) == again


def test_a_queued_mode_failure_signal_parks_too(
    stack: Stack, server: Any, parking: str, origin: str
) -> None:
    redrive_queue = stack.queue("pk-redrive", paused=True)
    fn = server(REDRIVE_QUEUE=redrive_queue, REDRIVE_JOB_URL="http://127.0.0.1:9/")
    task, _ = failing_twice(stack, origin, "queued")
    post_signal(fn, task_log(task, 2, 3), f"pq-log-{task}", now_rfc3339())
    (line,) = fn.outcomes(task=task)
    assert line["outcome"] == "PARKED" and line["mode"] == "queued", line["reason"]
    assert list(stack.client.list_tasks(request={"parent": redrive_queue})) == []  # no job


def test_the_patrol_covers_an_allowed_location_but_not_redrives_own_queues(
    stack: Stack, server: Any, parking: str
) -> None:
    queue = make_queue(stack, "pk-anywhere")
    fn = server(REDRIVE_ALLOWED_QUEUES=f"{PARENT}/queues/*")
    task, _ = failing_twice(stack, queue, "anywhere")
    response = post_signal(fn, b'{"patrol": {}}', f"pk-loc-{task}", now_rfc3339())
    assert response.status_code == 200, response.text
    assert [x["outcome"] for x in fn.outcomes(task=task)] == ["PARKED"]
    refused = [x for x in fn.outcomes(outcome="SKIPPED_NOT_ALLOWED")]
    assert refused == []  # the claims and parking queues are never patrolled
    (patrol,) = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
    assert str(parking) not in patrol["queue_outcomes"]


def test_the_patrol_warns_before_the_retention_limit_and_when_the_queue_runs(
    tmp_path: Path,
) -> None:
    """Emulated time 100,000 times faster: a day passes in under a second. A parked copy with
    less than REDRIVE_PARKED_WARN_S left is counted as expiring (WARNING); a parking queue that
    is not paused makes the patrol's line an ERROR."""
    from redrive.core.names import TaskName
    from redrive.core.parking import PARKED_SCHEDULE_AHEAD, Why

    stack = Stack(time_scale=100_000.0)
    try:
        queue = make_queue(stack, "pk-old")
        parking_queue = stack.queue("pk-running-parking")  # left RUNNING on purpose
        origin = f"{queue}/tasks/old"
        record = Parked(
            TaskName.parse(origin), 2, stack.emu.clock.now(), Why.LAST_ATTEMPT, "v2beta3"
        )
        stack.client.create_task(
            request={
                "parent": parking_queue,
                "task": {
                    "name": f"{parking_queue}/tasks/pk-old--old--pk000000000000",
                    "http_request": {"url": record.url(), "body": b""},
                    "schedule_time": stack.emu.clock.now() + PARKED_SCHEDULE_AHEAD,
                },
            }
        )
        stack.emu.clock.sleep(2 * 86400)
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": queue,
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            "REDRIVE_PARKING_QUEUE": parking_queue,
            "REDRIVE_PARKED_WARN_S": str(30 * 86400),
            "REDRIVE_MAX_SIGNAL_AGE": "3650d",
        }
        with function_server("handle_signal", "cloudevent", env, tmp_path / "fn.log") as fn:
            post_signal(fn, b'{"patrol": {}}', "pk-expiring", now_rfc3339())
            (patrol,) = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
        assert patrol["parking"]["parked"] == 1 and patrol["parking"]["expiring"] == 1
        assert patrol["parking"]["state"] == "RUNNING" and patrol["severity"] == "ERROR"
        assert "not PAUSED" in patrol["message"] and "restore or purge" in patrol["message"]
    finally:
        stack.stop()


def test_a_patrol_cut_by_its_budget_is_acknowledged(stack: Stack, server: Any, origin: str) -> None:
    fn = server(REDRIVE_SWEEP_BUDGET_S="0.000001")
    response = post_signal(fn, b'{"patrol": {}}', "pk-budget", now_rfc3339())
    assert response.status_code == 200, response.text
    (patrol,) = [x for x in fn.lines() if x.get("event") == "redrive.sweep"]
    assert patrol["complete"] is False and patrol["severity"] == "WARNING"
    assert patrol["stopped_at"]["queue"] == origin


@pytest.mark.parametrize("fixed", [True, False])
def test_a_restore_sends_canaries_first_and_a_broken_fix_keeps_the_rest_parked(
    stack: Stack, server: Any, parking: str, fixed: bool
) -> None:
    queue = make_queue(stack, f"pk-canary-{int(fixed)}")
    fn = server(REDRIVE_ALLOWED_QUEUES=queue, REDRIVE_CANARY_TIMEOUT_S="30")
    tasks = [failing_twice(stack, queue, f"cn{i}") for i in range(5)]
    for task, path in tasks:
        assert post_signal(fn, task_log(task, 2, 3), f"pk-cn-{task}", now_rfc3339()).is_success
        stack.target.statuses[path] = 200 if fixed else 500
    mine = [t for t in parked_in(stack, parking) if f"/tasks/pk-canary-{int(fixed)}--" in t.name]
    assert len(mine) == 5

    assert post_signal(fn, deploy(queue), f"pk-cn-deploy-{fixed}", now_rfc3339()).is_success
    restored = fn.outcomes(outcome="RESTORED", signal__message_id=f"pk-cn-deploy-{fixed}")
    left = [t for t in parked_in(stack, parking) if f"/tasks/pk-canary-{int(fixed)}--" in t.name]
    if fixed:
        assert len(restored) == 5 and not left
        paths = [path for _, path in tasks]
        wait_for(
            lambda: all(len(requests_to(stack, p)) == 3 for p in paths), "each restored request"
        )
        return
    # The fix does not work: three canaries restored, they fail again, the rest stays parked.
    assert len(restored) == 3 and len(left) == 2
    (halt,) = fn.outcomes(outcome="HALTED")
    assert halt["severity"] == "ERROR" and "stay parked" in halt["message"]
    assert "INTERNAL (HTTP 500)" in halt["message"]
    assert sum(len(requests_to(stack, p)) for _, p in tasks) == 5 * 2 + 3
