"""redrive's promises under concurrency, faults and hostile input, tried as an attacker would.

At most one forced run per failure, never while an attempt is running, nothing lost, a clear
answer for bad input. Each test reproduces one way these promises used to break, through real
servers: the emulator, functions-framework serving main.py (two processes at once where the break
needs them), and a target that fails, succeeds or holds a request on demand.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from redrive.core.jobs import job_name
from redrive.core.names import QueueName, TaskName
from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    dead_letter,
    function_server,
    now_rfc3339,
    post_signal,
)
from tests.stress.support import ok_runs, run_calls

SERVICE = f"{PARENT}/services/promises"
DATA = Path(__file__).resolve().parents[1] / "data" / "signals"
RPC_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def queues(stack: Stack) -> dict[str, str]:
    return {
        "work": stack.queue("work"),
        "workq": stack.queue("workq"),
        "soon": stack.queue("soon", min_backoff_s=20.0),
        "redrive": stack.queue("pr-redrive", min_backoff_s=0.2, paused=True),
    }


def env_for(stack: Stack, queues: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **stack.emu.env(),
        "REDRIVE_ALLOWED_QUEUES": ",".join(queues[q] for q in ("work", "workq", "soon")),
        "REDRIVE_SERVICE_MAP": json.dumps(
            {SERVICE: [queues["work"], queues["workq"], queues["soon"]]}
        ),
        "REDRIVE_CLAIMS_QUEUE": stack.claims(),
        "REDRIVE_RETRY_DEADLINE_S": "1",
        "REDRIVE_RPC_TIMEOUT_S": str(RPC_TIMEOUT_S),
        "REDRIVE_DIRECT_RATE_PER_S": "100",
        "REDRIVE_MAX_SIGNAL_AGE": "1h",
        "THREADS": "8",
        **extra,
    }


def queued_env(queues: dict[str, str], job_url: str) -> dict[str, str]:
    return {"REDRIVE_QUEUE": queues["redrive"], "REDRIVE_JOB_URL": job_url}


@pytest.fixture
def direct(
    stack: Stack, queues: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., FunctionServer]]:
    """Start handle_signal servers in direct mode (several may run at once); all stopped after."""
    started: list[FunctionServer] = []

    def start(**extra: str) -> FunctionServer:
        log = tmp_path / f"direct-{len(started)}.log"
        server = FunctionServer("handle_signal", "cloudevent", env_for(stack, queues, **extra), log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def queued(
    stack: Stack, queues: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., tuple[FunctionServer, list[FunctionServer]]]]:
    """handle_signal in queued mode and `jobs` run_job servers behind one job URL's port (the
    first; the others are reached directly, as a duplicate execution would reach another
    instance)."""
    started: list[FunctionServer] = []

    def start(jobs: int = 1, **extra: str) -> tuple[FunctionServer, list[FunctionServer]]:
        port = free_port()
        env = {**env_for(stack, queues, **extra), **queued_env(queues, f"http://127.0.0.1:{port}/")}
        job_fns = [
            FunctionServer(
                "run_job", "http", env, tmp_path / f"job-{i}.log", port=port if i == 0 else None
            )
            for i in range(jobs)
        ]
        signal_fn = FunctionServer("handle_signal", "cloudevent", env, tmp_path / "signal.log")
        started.extend([signal_fn, *job_fns])
        return signal_fn, job_fns

    yield start
    for server in started:
        server.stop()


_ids = iter(range(10_000))


def ready_task(stack: Stack, queue: str, name: str, *, fixed: bool = True) -> tuple[str, str]:
    """A task whose first attempt failed, a fix deployed after it; the target then succeeds
    (`fixed`) or keeps failing. Returns the task and its path on the target."""
    path = f"/pr/{name}-{next(_ids)}"
    task = stack.failed_task(queue, f"{name}-{next(_ids)}", path)
    stack.emu.cloudrun.deploy(SERVICE)
    stack.target.statuses[path] = 200 if fixed else 500
    return task, path


def settle(send: Callable[[], httpx.Response], *, tries: int = 30) -> list[httpx.Response]:
    """Deliver as the platform does: again for as long as the answer is not 2xx."""
    answers = [send()]
    while answers[-1].status_code >= 300 and len(answers) < tries:
        time.sleep(0.3)
        answers.append(send())
    assert answers[-1].status_code < 300, [a.text for a in answers]
    return answers


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def live_job(stack: Stack, queues: dict[str, str], job_fn: FunctionServer, task: str) -> str:
    """A redrive job for `task`'s first failure, waiting in the (paused) redrive queue, as
    handle_signal would have created it; its id."""
    seen = now_rfc3339()
    body = json.dumps(
        {
            "v": 1,
            "task": task,
            "seen_at": seen,
            "dispatch_count": 1,
            "signal": {
                "kind": "dead-letter",
                "source": "dead-letter",
                "message_id": "pr",
                "publish_time": seen,
            },
        }
    ).encode()
    job_id = f"job-{next(_ids)}"
    stack.client.create_task(
        request={
            "parent": queues["redrive"],
            "task": {
                "name": f"{queues['redrive']}/tasks/{job_id}",
                "http_request": {"url": job_fn.url, "http_method": "POST", "body": body},
            },
        }
    )
    return job_id


def post_job(job_fn: FunctionServer, stack: Stack, queues: dict[str, str], job_id: str) -> Any:
    name = f"{queues['redrive']}/tasks/{job_id}"
    stored = stack.client.get_task(request={"name": name, "response_view": "FULL"})
    headers = {"X-CloudTasks-QueueName": "pr-redrive", "X-CloudTasks-TaskName": job_id}
    return httpx.post(job_fn.url, content=stored.http_request.body, headers=headers, timeout=30)


# ---------------------------------------------------------------------------------------------
# 1. Silent loss in a queued deploy sweep


def test_a_queued_sweep_gives_every_selected_task_its_job_whatever_a_signal_did_first(
    stack, queues, queued
):
    """Five failed tasks; a per-task signal creates the job of the task listed last; then a
    deploy: every task has its job (four created, one met as existing) and the SWEEP line is
    complete only because it is. A CreateTask fault part-way through ends FAILED and the
    redelivery fills the gap."""
    # Every job from the deploy sweep itself (no gate): tests/integration/test_canaries.py
    # covers the canaries' gate under faults.
    signal_fn, _ = queued(
        REDRIVE_ALLOWED_QUEUES=f"{PARENT}/queues/*", REDRIVE_FIX_CHECK="none", REDRIVE_CANARIES="0"
    )
    queue = stack.queue(f"loss-{next(_ids)}")
    tasks = [stack.failed_task(queue, f"l-{i}", f"/loss/{i}") for i in range(5)]
    listed = [t.name for t in stack.client.list_tasks(request={"parent": queue})]
    last = listed[-1]
    dead_id = f"loss-dl-{next(_ids)}"
    answer = post_signal(signal_fn, dead_letter(last), dead_id, now_rfc3339())
    assert answer.status_code == 200, answer.text
    (queued_line,) = signal_fn.outcomes(signal__message_id=dead_id)
    assert queued_line["outcome"] == "QUEUED"  # the job of the task listed last exists

    stack.emu.control.fail("CreateTask", grpc.StatusCode.UNAVAILABLE, times=-1, after=2)
    deploy = json.dumps({"deployed": {"queues": [queue], "at": now_rfc3339()}}).encode()
    message_id = f"loss-deploy-{next(_ids)}"
    try:
        first = post_signal(signal_fn, deploy, message_id, now_rfc3339())
    finally:
        stack.emu.control.clear()
    assert first.status_code == 500  # some jobs are missing: delivered again, not "complete"
    settle(lambda: post_signal(signal_fn, deploy, message_id, now_rfc3339()))
    redrive = QueueName.parse(queues["redrive"])
    for task in tasks:
        assert stack.get(job_name(redrive, TaskName.parse(task), 1)) is not None, task
    sweeps = [
        x
        for x in signal_fn.lines()
        if x.get("event") == "redrive.sweep" and x["signal"]["message_id"] == message_id
    ]
    assert sweeps[0]["counts"].get("FAILED", 0) > 0
    final = sweeps[-1]
    assert final["complete"] is True and "FAILED" not in final["counts"], final
    assert final["selected"] == 5
    assert set(final["counts"]) <= {"QUEUED", "SKIPPED_DUPLICATE"}
    assert sum(final["counts"].values()) == 5
    assert ok_runs(stack, tasks[0]) == 0  # jobs wait in the paused redrive queue


# ---------------------------------------------------------------------------------------------
# 2. Times in the future


def test_a_deploy_time_in_the_future_is_refused_and_runs_nothing(stack, queues, direct):
    fn = direct(REDRIVE_FIX_CHECK="none")
    task, _ = ready_task(stack, queues["work"], "future", fixed=False)
    ahead = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    deploy = json.dumps({"deployed": {"queues": [queues["work"]], "at": ahead}}).encode()
    for delivery in range(4):  # a budget-cut sweep used to re-run the same tasks each time
        response = post_signal(fn, deploy, "future-1", now_rfc3339())
        assert response.status_code == 200, (delivery, response.text)
    lines = fn.outcomes(signal__message_id="future-1")
    assert {x["outcome"] for x in lines} == {"INVALID_SIGNAL"}
    assert "in the future" in lines[0]["reason"]
    # A failure reported for tomorrow would defeat "dispatched again since": refused too.
    future_failure = dead_letter(task, failedAt=ahead)
    response = post_signal(fn, future_failure, "future-2", now_rfc3339())
    assert response.status_code == 200
    (line,) = fn.outcomes(signal__message_id="future-2")
    assert line["outcome"] == "INVALID_SIGNAL" and "future" in line["reason"]
    assert run_calls(stack, task) == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"REDRIVE_FIX_CHECK": "static", "REDRIVE_FIX_DEPLOYED_AT": "2099-01-01T00:00:00Z"},
            "future",
        ),
        ({"REDRIVE_FIX_DEPLOYED_AT": "2026-01-01T00:00:00Z"}, "only read when"),
        ({"REDRIVE_DIRECT_RATE_PER_S": "nan"}, "REDRIVE_DIRECT_RATE_PER_S"),
        ({"REDRIVE_RETRY_DEADLINE_S": "inf"}, "REDRIVE_RETRY_DEADLINE_S"),
        ({"REDRIVE_SWEEP_BUDGET_S": "1e400"}, "REDRIVE_SWEEP_BUDGET_S"),
        ({"REDRIVE_MAX_PAYLOAD_BYTES": "inf"}, "REDRIVE_MAX_PAYLOAD_BYTES"),
        ({"REDRIVE_SWEEP_STATUSES": "5xx,teapot"}, "REDRIVE_SWEEP_STATUSES: 'teapot' is not"),
    ],
)
def test_bad_settings_stop_the_instance_naming_the_variable(stack, queues, tmp_path, env, named):
    with (
        pytest.raises(RuntimeError),
        function_server(
            "handle_signal", "cloudevent", env_for(stack, queues, **env), tmp_path / "bad.log"
        ),
    ):
        pass
    log = (tmp_path / "bad.log").read_text()
    assert "ConfigError" in log and named in log, log[-2000:]


# ---------------------------------------------------------------------------------------------
# 3. A RunTask whose outcome is unknown


@pytest.mark.parametrize("mode", ["direct", "queued"])
def test_a_run_task_that_times_out_and_dispatches_later_is_not_called_again(
    stack, queues, direct, queued, mode
):
    """RunTask times out on the client (1 s) but the service runs it 1.5 s in: the immediate
    re-read shows nothing yet. The failure stays claimed: the redeliveries wait until the
    task's state can tell, and RunTask dispatches once."""
    task, _ = ready_task(stack, queues["work" if mode == "direct" else "workq"], f"slow-{mode}")
    stack.emu.control.delay("RunTask", RPC_TIMEOUT_S * 1.5, times=1)
    try:
        if mode == "direct":
            fn = direct()
            published = now_rfc3339()
            answers = settle(lambda: post_signal(fn, dead_letter(task), "slow-1", published))
            lines = fn.outcomes(signal__message_id="slow-1")
        else:
            _, (job_fn,) = queued()
            job_id = live_job(stack, queues, job_fn, task)
            answers = settle(lambda: post_job(job_fn, stack, queues, job_id))
            lines = job_fn.outcomes(task=task)
    finally:
        stack.emu.control.clear()
    outcomes = [x["outcome"] for x in lines]
    assert outcomes[0] == "FAILED" and "not called again" in lines[0]["reason"], lines[0]
    if mode == "queued":
        # The redrive queue is told when to come back: once the claim's window has passed.
        waits = [a for a in answers if a.status_code == 503 and a.json()["outcome"] == "DEFERRED"]
        assert waits and all(a.headers["Retry-After"] == "2" for a in waits), answers
    assert set(outcomes[1:-1]) <= {"DEFERRED"}, outcomes
    assert outcomes[-1] in {"NOT_FOUND", "SKIPPED_ALREADY_RETRIED"}, outcomes
    assert len(answers) > 1
    wait_for(lambda: stack.gone(task), "the one forced run to complete")
    assert run_calls(stack, task) == 1 and ok_runs(stack, task) == 1


# ---------------------------------------------------------------------------------------------
# 4. Duplicates across processes


def test_one_job_executed_by_two_run_job_instances_at_once_runs_once(stack, queues, queued):
    """Cloud Tasks documents rare duplicate executions: the same job reaches two instances at the
    same moment, with RunTask taking 300 ms. One runs it; the other waits, then settles."""
    task, _ = ready_task(stack, queues["workq"], "twice")
    _, job_fns = queued(jobs=2)
    job_id = live_job(stack, queues, job_fns[0], task)
    stack.emu.control.delay("RunTask", 0.3, times=-1)
    try:
        sends = [partial(post_job, fn, stack, queues, job_id) for fn in job_fns]
        for send, answer in zip(sends, at_once(sends), strict=True):
            if answer.status_code != 200:
                settle(send)
    finally:
        stack.emu.control.clear()
    lines = [x for fn in job_fns for x in fn.outcomes(task=task)]
    counts = Counter(x["outcome"] for x in lines)
    assert counts["DISPATCHED"] == 1, counts
    assert set(counts) <= {"DISPATCHED", "DEFERRED", "SKIPPED_ALREADY_RETRIED", "NOT_FOUND"}
    assert run_calls(stack, task) == 1


@pytest.mark.parametrize("same_message", [True, False])
def test_two_direct_mode_instances_run_one_failure_once(stack, queues, direct, same_message):
    """Direct mode with two instances: the same message redelivered to both, or two different
    signals (an alert and a dead letter) about one failure, at once, with RunTask latency."""
    task, _ = ready_task(stack, queues["work"], "pair")
    fns = [direct(), direct()]
    published = now_rfc3339()
    ids = ["pair-1", "pair-1"] if same_message else ["pair-a", "pair-b"]
    stack.emu.control.delay("RunTask", 0.3, times=-1)
    try:
        sends = [
            partial(post_signal, fn, dead_letter(task), m, published)
            for fn, m in zip(fns, ids, strict=True)
        ]
        for send, answer in zip(sends, at_once(sends), strict=True):
            if answer.status_code != 200:
                settle(send)
    finally:
        stack.emu.control.clear()
    lines = [x for fn, m in zip(fns, ids, strict=True) for x in fn.outcomes(signal__message_id=m)]
    counts = Counter(x["outcome"] for x in lines)
    assert counts["DISPATCHED"] == 1, counts
    settled = {"SKIPPED_DUPLICATE", "SKIPPED_ALREADY_RETRIED", "NOT_FOUND", "DEFERRED"}
    assert set(counts) - {"DISPATCHED"} <= settled, counts
    assert run_calls(stack, task) == 1


def test_a_signal_just_before_the_tasks_own_retry_does_not_force_it(stack, queues, direct):
    """The task's next attempt is due in 20 s (within the 60 s margin): Cloud Tasks runs it
    itself; forcing it now would make two attempts at once."""
    fn = direct()
    task, _ = ready_task(stack, queues["soon"], "due")
    response = post_signal(fn, dead_letter(task), "due-1", now_rfc3339())
    assert response.status_code == 200
    (line,) = fn.outcomes(signal__message_id="due-1")
    assert line["outcome"] == "SKIPPED_RETRY_DUE" and "due at" in line["reason"]
    assert run_calls(stack, task) == 0


# ---------------------------------------------------------------------------------------------
# 5. A feedback loop from the task logs


def task_log(task: str, dispatch_count: int) -> bytes:
    """The task_operations_log entry of a failed attempt, as a log sink publishes it."""
    name = TaskName.parse(task)
    entry = json.loads((DATA / "task_log_failed.json").read_text())["data"]
    entry["timestamp"] = now_rfc3339()
    entry["logName"] = (
        f"projects/{name.project}/logs/cloudtasks.googleapis.com%2Ftask_operations_log"
    )
    entry["resource"]["labels"].update(
        project_id=name.project, location=name.location, queue_id=name.queue
    )
    entry["jsonPayload"]["task"] = task
    entry["jsonPayload"]["attemptResponseLog"].update(
        dispatchCount=str(dispatch_count), responseCount=str(dispatch_count)
    )
    return json.dumps(entry).encode()


def answered(stack: Stack, task: str, dispatch_count: int) -> bool:
    """The task's attempt `dispatch_count` has been answered (it is over)."""
    state = stack.get(task)
    return (
        state is not None
        and state.dispatch_count >= dispatch_count
        and "response_time" in state.last_attempt
        and state.last_attempt.response_time >= state.last_attempt.dispatch_time
    )


@pytest.mark.parametrize("check", ["none", "static"])
def test_a_task_that_keeps_failing_is_forced_once_per_fix(stack, queues, direct, check):
    """Every failed attempt becomes a signal (a log sink); the fix does not help. The first
    signal forces one run; each later failure is not forced again: with no fix check the fix
    marker says the fix did not help, with a static time the failures are newer than the fix."""
    task, _ = ready_task(stack, queues["work"], f"loop-{check}", fixed=False)
    extra = {"REDRIVE_FIX_CHECK": check}
    if check == "static":
        extra["REDRIVE_FIX_DEPLOYED_AT"] = now_rfc3339()  # after the first failure
    fn = direct(**extra)
    outcomes = []
    for _ in range(5):
        state = stack.get(task)
        assert state is not None
        count = int(state.dispatch_count)
        message = f"loop-{check}-{count}"
        settle(partial(post_signal, fn, task_log(task, count), message, now_rfc3339()))
        outcome = fn.outcomes(signal__message_id=message)[-1]["outcome"]
        outcomes.append(outcome)
        if outcome != "DISPATCHED":
            stack.client.run_task(request={"name": task})  # Cloud Tasks' own retry: fails again
        wait_for(partial(answered, stack, task, count + 1), "the next attempt's answer")
    later = {"none": "SKIPPED_FIX_INEFFECTIVE", "static": "SKIPPED_FIX_NOT_DEPLOYED"}[check]
    assert outcomes == ["DISPATCHED"] + [later] * 4, outcomes
    assert run_calls(stack, task) == 1 + 4  # one forced run, four retries made by the test


# ---------------------------------------------------------------------------------------------
# 6. A deploy of an unrelated service


def cloud_build(service: str) -> bytes:
    build = json.loads((DATA / "build_success.json").read_text())["data"]
    build["substitutions"] = {"_SERVICE_NAME": service}
    build["finishTime"] = now_rfc3339()
    return json.dumps(build).encode()


@pytest.mark.parametrize("check", ["none", "static", "revision"])
def test_a_deploy_of_an_unrelated_service_is_no_evidence_for_the_allowed_queues(
    stack, queues, direct, check
):
    """A Cloud Build of any service sets _SERVICE_NAME: that build's time must not become the fix
    evidence of every failing task of every allowed queue."""
    # The queue is shared with other tests whose tasks still fail: canaries from them would
    # halt the sweep before this task (right, but not what this test is about).
    extra = {"REDRIVE_FIX_CHECK": check, "REDRIVE_CANARIES": "0"}
    if check == "static":
        extra["REDRIVE_FIX_DEPLOYED_AT"] = "2026-01-01T00:00:00Z"  # before every failure here
    fn = direct(**extra)
    task, _ = ready_task(stack, queues["work"], f"unrelated-{check}")
    message = f"build-{check}"
    response = post_signal(
        fn,
        cloud_build("someone-elses-service"),
        message,
        now_rfc3339(),
        attributes={"status": "SUCCESS", "buildId": message},
    )
    assert response.status_code == 200, response.text
    lines = fn.outcomes(signal__message_id=message)
    if check == "revision":
        # The allowed queues are swept and each task's own service revision decides (this
        # task's service has a revision newer than its failure); the build's time is nothing.
        (line,) = [x for x in lines if x["task"] == task]
        assert line["outcome"] == "DISPATCHED" and line["fix"]["strategy"] == "revision", line
    else:
        assert [x["outcome"] for x in lines] == ["IGNORED"], lines
        assert "maps to no queue" in lines[0]["reason"]
        assert run_calls(stack, task) == 0


# ---------------------------------------------------------------------------------------------
# 7. A job time with no UTC equivalent


def test_a_job_time_out_of_range_in_utc_is_an_invalid_job_with_its_line(stack, queues, queued):
    _, (job_fn,) = queued()
    task, _ = ready_task(stack, queues["workq"], "range")
    body = json.dumps(
        {
            "v": 1,
            "task": task,
            "seen_at": "0001-01-01T00:30:00+01:00",
            "dispatch_count": 1,
            "signal": {"kind": "k", "source": "s", "message_id": None, "publish_time": None},
        }
    ).encode()
    job_id = f"range-{next(_ids)}"
    stack.client.create_task(
        request={
            "parent": queues["redrive"],
            "task": {
                "name": f"{queues['redrive']}/tasks/{job_id}",
                "http_request": {"url": job_fn.url, "http_method": "POST", "body": body},
            },
        }
    )
    response = post_job(job_fn, stack, queues, job_id)
    assert response.status_code == 200 and response.json()["outcome"] == "INVALID_SIGNAL"
    (line,) = [x for x in job_fn.lines() if x.get("event") == "redrive.outcome"]
    assert "seen_at" in line["reason"]
    assert run_calls(stack, task) == 0


# ---------------------------------------------------------------------------------------------
# 8. Forged and replayed jobs


def test_a_forged_or_replayed_job_grants_itself_nothing(stack, queues, queued):
    """A body claiming fix evidence of its own, posted to run_job with the redrive queue's header,
    and a real job's body replayed once the job is done: refused, nothing run."""
    _, (job_fn,) = queued()
    task, path = ready_task(stack, queues["workq"], "forged", fixed=False)
    forged = json.dumps(
        {
            "v": 1,
            "task": task,
            "seen_at": now_rfc3339(),
            "dispatch_count": 1,
            "signal": {"kind": "k", "source": "s", "message_id": None, "publish_time": None},
            "fix": {
                "strategy": "static",
                "live_since": now_rfc3339(),
                "service": None,
                "revision": None,
            },
        }
    ).encode()
    headers = {"X-CloudTasks-QueueName": "pr-redrive", "X-CloudTasks-TaskName": "made-up"}
    for _ in range(3):
        answer = httpx.post(job_fn.url, content=forged, headers=headers, timeout=30)
        assert answer.status_code == 403 and answer.json()["outcome"] == "INVALID_SIGNAL"
    assert run_calls(stack, task) == 0

    # A real job, run once through the queue; its body replayed afterwards is refused.
    stack.target.statuses[path] = 200
    job_id = live_job(stack, queues, job_fn, task)
    name = f"{queues['redrive']}/tasks/{job_id}"
    body = stack.client.get_task(request={"name": name, "response_view": "FULL"}).http_request.body
    stack.client.resume_queue(request={"name": queues["redrive"]})
    try:
        wait_for(lambda: stack.get(name) is None, "the job to run and complete")
    finally:
        stack.client.pause_queue(request={"name": queues["redrive"]})
    assert run_calls(stack, task) == 1
    replay = httpx.post(
        job_fn.url,
        content=body,
        headers={"X-CloudTasks-QueueName": "pr-redrive", "X-CloudTasks-TaskName": job_id},
        timeout=30,
    )
    assert replay.status_code == 403 and "no job" in replay.json()["reason"]
    assert run_calls(stack, task) == 1


def test_a_grant_still_propagating_on_a_first_deploy_does_not_lose_the_signal(
    stack, queues, direct
):
    """A fresh instance of a first deploy meets PERMISSION_DENIED while its grants propagate:
    within REDRIVE_PERMISSION_GRACE_S the signal is delivered again, not acknowledged; once the
    grant is there the redelivery re-drives the task."""
    fn = direct(REDRIVE_PERMISSION_GRACE_S="600")
    task, _ = ready_task(stack, queues["work"], "grant")
    stack.emu.control.fail("GetTask", grpc.StatusCode.PERMISSION_DENIED, times=-1)
    try:
        first = post_signal(fn, dead_letter(task), "grant-1", now_rfc3339())
    finally:
        stack.emu.control.clear()
    assert first.status_code == 500
    (line,) = fn.outcomes(signal__message_id="grant-1")
    assert line["outcome"] == "FAILED" and "propagating" in line["reason"]
    again = post_signal(fn, dead_letter(task), "grant-1", now_rfc3339())
    assert again.status_code == 200
    assert fn.outcomes(signal__message_id="grant-1")[-1]["outcome"] == "DISPATCHED"


# ---------------------------------------------------------------------------------------------
# 9. redrive's own queues


def test_redrive_never_redrives_its_own_jobs_or_claims(stack, queues, direct):
    fn = direct(
        REDRIVE_ALLOWED_QUEUES=f"{PARENT}/queues/*",
        REDRIVE_QUEUE=queues["redrive"],
        REDRIVE_JOB_URL="http://127.0.0.1:9/",
    )
    job = f"{queues['redrive']}/tasks/some-job"
    claim = f"{stack.claims()}/tasks/some-claim"
    for i, name in enumerate((job, claim)):
        response = post_signal(fn, dead_letter(name), f"own-{i}", now_rfc3339())
        assert response.status_code == 200
        (line,) = fn.outcomes(signal__message_id=f"own-{i}")
        assert line["outcome"] == "SKIPPED_NOT_ALLOWED" and "redrive's own" in line["reason"]


# ---------------------------------------------------------------------------------------------
# 10. Secrets in status messages, and line integrity


def test_urls_in_status_messages_and_line_breaking_characters_never_reach_a_line(
    stack, queues, direct
):
    fn = direct(REDRIVE_FIX_CHECK="none")
    secret = "T0KEN-5e1f"
    # An unreachable target: Cloud Tasks' status message then quotes the URL, token and all.
    port = free_port()
    name = f"{queues['work']}/tasks/unreachable-{next(_ids)}"
    stack.client.create_task(
        request={
            "parent": queues["work"],
            "task": {
                "name": name,
                "http_request": {
                    "url": f"http://127.0.0.1:{port}/hook?token={secret}",
                    "http_method": "POST",
                },
            },
        }
    )
    wait_for(
        lambda: (t := stack.get(name)) is not None and "response_status" in t.last_attempt,
        "the failed attempt",
    )
    assert secret in stack.get(name).last_attempt.response_status.message  # the source has it
    post_signal(fn, dead_letter(name), "secret-1", now_rfc3339())
    separators = "\u2028\u2029\x85\x9b"
    hostile = json.dumps({f"task{separators}": f"x{separators}", "taskName": f"bad{separators}"})
    post_signal(fn, hostile.encode(), "secret-2", now_rfc3339())
    raw = fn.log_path.read_text()
    assert secret not in raw
    assert not any(ch in raw for ch in separators)
    for line in raw.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every line is whole
    (line,) = fn.outcomes(signal__message_id="secret-1")
    assert "<url>" in (line["task_state"]["last_status_message"] or "")


# ---------------------------------------------------------------------------------------------
# 11. Smaller ones


def test_a_failure_reported_a_second_before_its_dispatch_is_that_attempts(stack, queues, direct):
    fn = direct()
    task, _ = ready_task(stack, queues["work"], "skew")
    dispatched = stack.get(task).last_attempt.dispatch_time
    before = (dispatched - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    post_signal(fn, dead_letter(task, failedAt=before), "skew-1", now_rfc3339())
    (line,) = fn.outcomes(signal__message_id="skew-1")
    assert line["outcome"] == "DISPATCHED", line["reason"]


def test_dead_letter_attributes_are_kept_in_the_record(stack, queues, direct):
    fn = direct()
    task, _ = ready_task(stack, queues["work"], "dlq")
    attributes = {
        "CloudPubSubDeadLetterSourceSubscription": "worker-sub",
        "CloudPubSubDeadLetterSourceSubscriptionProject": "demo",
        "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceTopicPublishTime": now_rfc3339(),
    }
    post_signal(fn, dead_letter(task), "dlq-1", now_rfc3339(), attributes=attributes)
    (line,) = fn.outcomes(signal__message_id="dlq-1")
    assert line["signal"]["details"] == attributes


def test_the_platforms_request_timeout_ends_the_request(stack, queues, direct):
    """functions-framework raises its request timeout into the request's thread; it must end the
    request, not pass for a transient fault while the handler goes on to force-run more tasks."""
    fn = direct(THREADED_TIMEOUT_ENABLED="true", CLOUD_RUN_TIMEOUT_SECONDS="1", THREADS="2")
    tasks = [ready_task(stack, queues["work"], f"timeout-{i}")[0] for i in range(3)]
    stack.emu.control.delay("GetTask", 2.5, times=1)
    try:
        payload = json.dumps({"tasks": tasks}).encode()
        response = post_signal(fn, payload, "timeout-1", now_rfc3339())
    finally:
        stack.emu.control.clear()
    assert response.status_code == 500
    time.sleep(1.0)  # anything the handler would still do after the timeout happens by now
    assert sum(run_calls(stack, t) for t in tasks) == 0
    assert fn.outcomes(signal__message_id="timeout-1") == []
