"""Parking and restoring under faults: every Cloud Tasks call of a park and of a restore fails with
each gRPC code that matters, once and persistently, through a real functions-framework server and
the emulator; then the work is delivered again with the faults cleared, as the platform does.

The calls (the claims queue configured; `#n` is the method's n-th call of the delivery):

| entry   | calls                                                                             |
|---------|-----------------------------------------------------------------------------------|
| park    | a task-log failure signal, no fix live: GetTask#0 (the task), GetQueue (its      |
|         | RetryConfig, once per instance: a fresh server), GetTask#1 (the original, FULL),  |
|         | CreateTask#0 (the claim's rung), CreateTask#1 (the parked copy), DeleteTask#0 (the|
|         | original)                                                                         |
| restore | a deploy of the origin queue: ListTasks#1 (the parking queue, after the origin    |
|         | queue's own listing), GetTask#0 (the parked copy, FULL), GetTask#1 (the origin:  |
|         | still there?), CreateTask#0 (the rung), CreateTask#1 (the restored task),         |
|         | DeleteTask#0 (the parked copy)                                                    |

Whatever happens, once the deliveries settle: a parked task has exactly one copy in the parking
queue and no original (parking), or exactly one restored task that ran once and no parked copy
(restoring); the target never sees the work while it is parked. Never two copies that could both
run, never none.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from redrive.core.parking import Parked
from redrive_tools.devserver import wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    function_server,
    now_rfc3339,
    post_signal,
)
from tests.integration.test_parking import (
    LONG_AGO,
    deploy,
    failing_twice,
    make_queue,
    requests_to,
    task_log,
)

CODES = [
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INTERNAL,
]
ONCE, ALWAYS = 1, -1
REDELIVERIES = 12
REDELIVERY_PAUSE_S = 0.5


@dataclass(frozen=True)
class Call:
    method: str
    after: int
    label: str


CALLS = {
    "park": [
        Call("GetTask", 0, "task-read"),
        Call("GetQueue", 0, "retry-config"),
        Call("GetTask", 1, "original-read"),
        Call("CreateTask", 0, "claim-rung"),
        Call("CreateTask", 1, "parked-copy"),
        Call("DeleteTask", 0, "original-delete"),
    ],
    # A deploy's sweep lists its queue twice (the plan's count, then the sweep) before the
    # parking queue; a restore first looks for a canary verdict kept earlier (best effort: a
    # claims-queue GetTask whose faults only mean "no verdict known").
    "restore": [
        Call("ListTasks", 2, "parking-list"),
        Call("GetTask", 1, "parked-read"),
        Call("GetTask", 2, "origin-check"),
        Call("CreateTask", 0, "claim-rung"),
        Call("CreateTask", 1, "restored"),
        Call("DeleteTask", 0, "parked-delete"),
    ],
}
SUCCESS = {"park": "PARKED", "restore": "RESTORED"}


@dataclass(frozen=True)
class Case:
    entry: str
    call: Call
    code: grpc.StatusCode
    times: int


CASES = [
    pytest.param(Case(entry, call, code, times), id=f"{entry}-{call.label}-{code.name}-{label}")
    for entry, calls in CALLS.items()
    for call in calls
    for code in CODES
    for times, label in ((ONCE, "once"), (ALWAYS, "always"))
]


def expected(case: Case) -> tuple[str, int]:
    """The first delivery's outcome for the case's task and handle_signal's answer."""
    entry, call, code, times = case.entry, case.call, case.code, case.times
    both_deletes = call.method == "DeleteTask" and times == ALWAYS
    if entry == "park" and both_deletes:
        # Neither the original deleted nor the parked copy withdrawn: both stay, only the
        # original can run; the next delivery finishes.
        return "FAILED", 500
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return "PERMISSION_DENIED", 200
    if times == ONCE:
        return SUCCESS[entry], 200
    return "FAILED", 500


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, str]:
    parking = f"{PARENT}/queues/pkf-parking"
    if stack.get_queue(parking) is None:
        stack.queue("pkf-parking", paused=True)
    return {
        "park": make_queue(stack, "pkf-park"),
        "restore": make_queue(stack, "pkf-restore"),
        "parking": parking,
        "claims": stack.claims(),
    }


def env_of(stack: Stack, world: dict[str, str]) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": f"{world['park']},{world['restore']}",
        "REDRIVE_CLAIMS_QUEUE": world["claims"],
        "REDRIVE_PARKING_QUEUE": world["parking"],
        "REDRIVE_FIX_CHECK": "static",
        "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
        "REDRIVE_MAX_SIGNAL_AGE": "3650d",
        "REDRIVE_RETRY_DEADLINE_S": "0.5",
        "REDRIVE_RPC_TIMEOUT_S": "0.5",
    }


@pytest.fixture(scope="module")
def server(
    stack: Stack, world: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FunctionServer]:
    logs = tmp_path_factory.mktemp("parking-faults")
    with function_server(
        "handle_signal", "cloudevent", env_of(stack, world), logs / "fn.log"
    ) as fn:
        yield fn


_ids = itertools.count()


def copies_of(stack: Stack, parking: str, task: str) -> list[str]:
    found = []
    for listed in stack.client.list_tasks(request={"parent": parking}):
        parked = Parked.from_url(listed.http_request.url)
        if parked is not None and str(parked.origin) == task:
            found.append(listed.name)
    return found


def lines_for(fn: FunctionServer, message_id: str, task: str) -> list[dict[str, Any]]:
    return [
        x
        for x in fn.outcomes(signal__message_id=message_id)
        if x.get("task") == task or (x.get("task") is None and x.get("sweep"))
    ]


def deliver(fn: FunctionServer, payload: bytes, message_id: str) -> int:
    return post_signal(fn, payload, message_id, now_rfc3339()).status_code


def run_case(stack: Stack, world: dict[str, str], fn: FunctionServer, case: Case) -> None:
    n = next(_ids)
    queue = world[case.entry]
    task, path = failing_twice(stack, queue, f"pkf-{case.entry}-{n}")
    if case.entry == "restore":
        assert deliver(fn, task_log(task, 2, 3), f"pkf-setup-{n}") == 200
        (parked,) = copies_of(stack, world["parking"], task)
        payload, message_id = deploy(queue), f"pkf-deploy-{n}"
    else:
        payload, message_id = task_log(task, 2, 3), f"pkf-log-{n}"

    want, want_status = expected(case)
    before = stack.emu.control.call_counts().get(case.call.method, 0)
    stack.emu.control.fail(case.call.method, case.code, times=case.times, after=case.call.after)
    try:
        status = deliver(fn, payload, message_id)
    finally:
        stack.emu.control.clear()
    made = stack.emu.control.call_counts().get(case.call.method, 0) - before
    assert made > case.call.after, f"{case.call.label} never called ({made} call(s))"
    lines = lines_for(fn, message_id, task)
    said = [(x["outcome"], x["reason"][:200]) for x in lines]
    assert status == want_status, said
    assert [x["outcome"] for x in lines] == [want], said
    if want in ("FAILED", "PERMISSION_DENIED"):
        assert lines[0]["severity"] == "ERROR"

    # Delivered again (faults cleared) as the platform does: once, then while not 2xx.
    answers = [deliver(fn, payload, message_id)]
    while answers[-1] >= 300 and len(answers) < REDELIVERIES:
        time.sleep(REDELIVERY_PAUSE_S)
        answers.append(deliver(fn, payload, message_id))
    assert answers[-1] == 200, (answers, lines_for(fn, message_id, task))
    outcomes = [x["outcome"] for x in lines_for(fn, message_id, task)]
    assert SUCCESS[case.entry] in outcomes or want == SUCCESS[case.entry], outcomes
    assert outcomes.count(SUCCESS[case.entry]) == 1, outcomes

    copies = copies_of(stack, world["parking"], task)
    assert stack.gone(task), "the original is gone"
    if case.entry == "park":
        assert len(copies) == 1, copies  # exactly one parked copy
        assert len(requests_to(stack, path)) == 2  # the work never ran while parked
        stack.client.delete_task(request={"name": copies[0]})  # out of the next cases' way
        return
    assert copies == [], copies  # the parked copy is gone...
    restored = {
        x["parked"]["restored_as"]
        for x in fn.outcomes(task=task)
        if (x.get("parked") or {}).get("restored_as") and x["outcome"] == "RESTORED"
    }
    (again,) = restored
    wait_for(lambda: len(requests_to(stack, path)) >= 3, "the restored task's request")
    wait_for(lambda: stack.gone(again), "the restored task completing")
    time.sleep(0.2)
    assert len(requests_to(stack, path)) == 3, said  # ...and its work ran exactly once
    assert parked not in copies


@pytest.mark.parametrize("case", CASES)
def test_fault(stack: Stack, world: dict[str, str], server: FunctionServer, tmp_path: Path, case):
    if case.call.method == "GetQueue":
        # A fresh instance: the RetryConfig is cached per instance.
        env = env_of(stack, world)
        with function_server("handle_signal", "cloudevent", env, tmp_path / "fn.log") as fresh:
            run_case(stack, world, fresh, case)
        return
    run_case(stack, world, server, case)


def test_the_matrix_is_the_product_it_claims() -> None:
    seen = {c.values[0] for c in CASES}
    assert len(seen) == sum(len(calls) for calls in CALLS.values()) * len(CODES) * 2
