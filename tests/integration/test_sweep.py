"""The sweep against the real emulator (gRPC, real HTTP dispatches to a local target).

The function logic runs in-process (a Runtime pointed at the emulator, outcome lines captured);
the emulator, its dispatcher and the target are real servers. Emulated time runs at real speed and
failed tasks wait an hour for their next retry, so every state set up here stays put.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import timedelta
from functools import partial
from typing import Any

import grpc
import pytest

from redrive import entry
from redrive.adapters.log import OutcomeLog
from redrive.core import errors
from redrive.core.config import Settings
from redrive.core.decide import SignalRef
from redrive.core.jobs import job_name
from redrive.core.names import QueueName, TaskName
from redrive.core.selection import plan_for
from redrive.core.signals import Deploy, QueueAlert
from redrive.runtime import Runtime
from redrive.sweep import Sweeper
from redrive_tools.devserver import wait_for
from tests.integration.helpers import PARENT, Stack

REDRIVE_JOB_URL = "http://127.0.0.1:9/run_job"  # never reached: the redrive queues stay paused


class Captured:
    """A runtime's outcome lines, parsed."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(x) for x in self.stream.getvalue().splitlines() if x.strip()]
        return [x for x in out if event is None or x.get("event") == event]

    def outcomes(self) -> dict[str, str]:
        """task → outcome, for the per-task lines."""
        return {x["task"]: x["outcome"] for x in self.lines("redrive.outcome") if x["task"]}

    def sweeps(self) -> list[dict[str, Any]]:
        return self.lines("redrive.sweep")


def make_runtime(stack: Stack, allowed: list[str], **env: str) -> tuple[Runtime, Captured]:
    captured = Captured()
    settings = Settings.from_env(
        {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": ",".join(allowed),
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_RETRY_DEADLINE_S": "2",
            "REDRIVE_DIRECT_RATE_PER_S": "1000",
            "REDRIVE_CLAIMS_QUEUE": stack.claims(),
            # Budgets, pages and resumption; canaries are tests/integration/test_canaries.py.
            "REDRIVE_CANARIES": "0",
            # These sweeps are about RunTask's budget and resumption; the small pages used here
            # would make `auto` re-create (tests/integration/test_recreate.py covers that).
            "REDRIVE_METHOD": "run",
            **env,
        }
    )
    return Runtime(settings, log=OutcomeLog(captured.stream)), captured


def queued_env(redrive_queue: str) -> dict[str, str]:
    return {"REDRIVE_QUEUE": redrive_queue, "REDRIVE_JOB_URL": REDRIVE_JOB_URL}


def runs_of(stack: Stack, task: str) -> int:
    return sum(1 for r in stack.emu.control.run_log() if r.task == task)


def jobs_in(stack: Stack, queue: str) -> list[str]:
    return [t.name for t in stack.client.list_tasks(request={"parent": queue})]


def deploy_event(queues: list[str], at: str, message_id: str) -> Any:
    payload = json.dumps({"deployed": {"queues": queues, "at": at}}).encode()

    class Event(dict[str, Any]):
        data: Any

    event = Event(id=message_id, time=at)
    event.data = {
        "message": {
            "data": base64.b64encode(payload).decode(),
            "messageId": message_id,
            "publishTime": at,
        }
    }
    return event


def iso(when: Any) -> str:
    return str(when.isoformat().replace("+00:00", "Z"))


class Mix:
    """One queue holding every kind of task the selection must tell apart."""

    def __init__(self, stack: Stack, queue_id: str) -> None:
        self.queue = stack.queue(queue_id)
        p = f"/{queue_id}"
        # Two tasks whose last attempt failed before the deploy.
        self.failing = [stack.failed_task(self.queue, f"fail-{i}", f"{p}/fail") for i in (1, 2)]
        # Succeeded: deleted by Cloud Tasks, so never listed.
        stack.target.statuses[f"{p}/ok"] = 200
        ok = stack.task(self.queue, "ok-1", f"{p}/ok")
        wait_for(lambda: stack.gone(ok), "the successful task to be deleted")
        # Never attempted: scheduled an hour from now.
        self.later = stack.task(self.queue, "later-1", f"{p}/later", schedule_in_s=3600)
        # Re-dispatched after the deploy (and failed again).
        self.again = stack.failed_task(self.queue, "again-1", f"{p}/again")
        self.deployed_at = stack.emu.clock.now()
        stack.client.run_task(request={"name": self.again})
        wait_for(
            lambda: (t := stack.get(self.again)).dispatch_count == 2 and t.response_count == 2,
            "the failed attempt after the deploy",
        )
        # In flight: dispatched after the deploy, no answer yet (the target holds the request).
        stack.target.statuses[f"{p}/hang"] = "hang"
        self.busy = stack.task(self.queue, "busy-1", f"{p}/hang")
        wait_for(
            lambda: any(path == f"{p}/hang" for path, _, _ in stack.target.requests),
            "the in-flight attempt",
        )
        self.selected = set(self.failing)


@pytest.fixture(scope="module")
def redrive_queue(stack: Stack) -> str:
    return stack.queue("redrive", paused=True)


def test_queued_sweep_selects_exactly_the_failed_tasks_and_redelivery_duplicates_nothing(
    stack, redrive_queue
):
    mix = Mix(stack, "mixq")
    rt, out = make_runtime(stack, [mix.queue], **queued_env(redrive_queue))
    # A dead-letter signal already queued a job for the first failure.
    dead = deploy_event([], iso(stack.emu.clock.now()), "dl-1")
    dead.data["message"]["data"] = base64.b64encode(mix.failing[0].encode()).decode()
    entry.handle_signal(dead, rt)
    assert out.outcomes() == {mix.failing[0]: "QUEUED"}
    rt, out = make_runtime(stack, [mix.queue], **queued_env(redrive_queue))
    event = deploy_event([mix.queue], iso(mix.deployed_at), "deploy-q-1")

    entry.handle_signal(event, rt)

    expected_jobs = {
        job_name(QueueName.parse(redrive_queue), TaskName.parse(t), 1) for t in mix.failing
    }
    assert out.outcomes() == {mix.failing[0]: "SKIPPED_DUPLICATE", mix.failing[1]: "QUEUED"}
    assert set(jobs_in(stack, redrive_queue)) == expected_jobs
    (sweep,) = out.sweeps()
    assert sweep["complete"] is True and sweep["tasks_seen"] == 5 and sweep["selected"] == 2
    assert sweep["skipped"] == {"NEVER_ATTEMPTED": 1, "AFTER_DEPLOY": 1, "IN_FLIGHT": 1}
    assert sweep["counts"] == {"QUEUED": 1, "SKIPPED_DUPLICATE": 1}
    assert sweep["basis"] == "signal" and sweep["resumed_from_page"] is None
    (summary,) = out.lines("redrive.signal")
    assert summary["counts"] == {"SWEEP": 1} and summary["outcome"] == "SWEEP"
    for line in out.lines("redrive.outcome"):
        assert line["fix"]["strategy"] == "deploy-signal" and line["sweep"] is True
        assert line["failed_dispatch_count"] == 1 and line["job"] in expected_jobs

    # Pub/Sub delivers the same deploy signal again: every selected task's job is met as taken;
    # no job is created twice.
    rt2, out2 = make_runtime(stack, [mix.queue], **queued_env(redrive_queue))
    entry.handle_signal(event, rt2)
    assert out2.outcomes() == {t: "SKIPPED_DUPLICATE" for t in mix.failing}
    assert out2.sweeps()[0]["complete"] is True
    assert set(jobs_in(stack, redrive_queue)) == expected_jobs
    # Nothing was run by the sweep itself; only the one RunTask of the set-up.
    assert [r.task for r in stack.emu.control.run_log() if "/mixq/" in r.task] == [mix.again]


def test_direct_sweep_runs_exactly_the_failed_tasks_once(stack):
    mix = Mix(stack, "mixd")
    for path in ("/mixd/fail",):
        stack.target.statuses[path] = 200  # the fix
    rt, out = make_runtime(stack, [mix.queue])
    plan = plan_for(
        Deploy(mix.deployed_at, "plain", queues=(QueueName.parse(mix.queue),)),
        SignalRef("deploy", "plain", "d-1"),
        rt.settings,
    )
    report = Sweeper(rt).run(plan)
    assert report.complete and report.counts == {"DISPATCHED": 2}
    assert out.outcomes() == dict.fromkeys(mix.failing, "DISPATCHED")
    for task in mix.failing:
        wait_for(partial(stack.gone, task), "the re-driven task to succeed")
        assert runs_of(stack, task) == 1
    assert runs_of(stack, mix.later) == runs_of(stack, mix.busy) == 0
    assert runs_of(stack, mix.again) == 1  # the set-up's own run, nothing more

    # A second sweep finds nothing left to do.
    report = Sweeper(rt).run(plan)
    assert report.selected == 0 and report.counts == {}
    assert sum(runs_of(stack, t) for t in mix.failing) == 2


class StepClock:
    """A monotonic clock that moves `step_s` every time it is read: budgets end predictably."""

    def __init__(self, step_s: float) -> None:
        self.now = 0.0
        self.step_s = step_s

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


def test_budget_cut_direct_sweep_resumes_and_runs_each_task_once(stack):
    queue = stack.queue("budget")
    tasks = [stack.failed_task(queue, f"b-{i:02d}", "/budget/fail") for i in range(12)]
    stack.target.statuses["/budget/fail"] = 200
    deployed_at = stack.emu.clock.now()
    rt, out = make_runtime(stack, [queue])
    plan = plan_for(
        Deploy(deployed_at, "plain", queues=(QueueName.parse(queue),)),
        SignalRef("deploy", "plain", "b-1"),
        rt.settings,
    )
    deliveries = []
    for _ in range(10):
        # Each delivery may read the clock ~20 times: a few tasks per delivery, then it stops.
        report = Sweeper(rt, budget_s=20.0, monotonic=StepClock(1.0), page_size=5).run(plan)
        deliveries.append(report)
        if report.complete:
            break
    assert not deliveries[0].complete and deliveries[-1].complete
    assert len(deliveries) >= 2
    first = out.sweeps()[0]
    assert first["complete"] is False and first["severity"] == "WARNING"
    assert first["stopped_at"]["queue"] == queue and first["stopped_at"]["budget_s"] == 20.0
    assert sum(r.counts["DISPATCHED"] for r in deliveries) == 12
    for task in tasks:
        assert runs_of(stack, task) == 1, task
    wait_for(lambda: all(stack.gone(t) for t in tasks), "every re-driven task to complete")


def test_budget_cut_queued_sweep_resumes_and_enqueues_each_job_once(stack):
    queue = stack.queue("budgetq")
    rq = stack.queue("redrive-b", paused=True)
    tasks = [stack.failed_task(queue, f"bq-{i:02d}", "/budgetq/fail") for i in range(9)]
    rt, out = make_runtime(stack, [queue], **queued_env(rq))
    plan = plan_for(
        Deploy(stack.emu.clock.now(), "plain", queues=(QueueName.parse(queue),)),
        SignalRef("deploy", "plain", "bq-1"),
        rt.settings,
    )

    def creates() -> float:
        # Time passes only while jobs are created (1 s each): listing and probing are nearly free
        # next to them, as on the real service.
        return float(stack.emu.control.call_counts().get("CreateTask", 0))

    reports = []
    for _ in range(10):
        report = Sweeper(rt, budget_s=4.0, monotonic=creates, concurrency=1, page_size=2).run(plan)
        reports.append(report)
        if report.complete:
            break
    assert [r.complete for r in reports] == [False, False, True]
    assert [r.counts["QUEUED"] for r in reports] == [4, 4, 1]
    # Each delivery resumes after the last page an earlier one finished (its checkpoint).
    assert [r.resumed_from_page for r in reports] == [None, 3, 5]
    assert {k for r in reports for k in r.counts} == {"QUEUED"}
    assert len(jobs_in(stack, rq)) == 9
    stopped = reports[0].stopped_at or {}
    assert stopped["queue"] == queue and stopped["page"] == 3 and stopped["page_token"]
    assert stopped["index_in_page"] == 0 and stopped["budget_s"] == 4.0
    assert {line["task"] for line in out.lines("redrive.outcome")} == set(tasks)


def test_cut_sweep_makes_handle_signal_ask_for_redelivery(stack):
    queue = stack.queue("budgeth")
    tasks = [stack.failed_task(queue, f"bh-{i}", "/budgeth/fail") for i in range(3)]
    stack.target.statuses["/budgeth/fail"] = 200
    at = iso(stack.emu.clock.now())
    rt, out = make_runtime(stack, [queue], REDRIVE_SWEEP_BUDGET_S="0.2")
    stack.emu.control.delay("ListTasks", 0.3, times=1)  # the first page outlasts the budget
    with pytest.raises(errors.RedeliverError):
        entry.handle_signal(deploy_event([queue], at, "bh-1"), rt)
    assert out.sweeps()[0]["complete"] is False and out.outcomes() == {}
    assert out.lines("redrive.signal")[0]["counts"] == {"SWEEP": 1, "FAILED": 1}

    rt2, out2 = make_runtime(stack, [queue])
    entry.handle_signal(deploy_event([queue], at, "bh-1"), rt2)  # the redelivery
    assert out2.sweeps()[0]["complete"] is True
    assert out2.outcomes() == dict.fromkeys(tasks, "DISPATCHED")
    assert [runs_of(stack, t) for t in tasks] == [1, 1, 1]


def test_pause_holds_and_purge_cancels_the_redrive_queue(stack):
    queue = stack.queue("cancel")
    rq = stack.queue("redrive-c", paused=True)
    tasks = [stack.failed_task(queue, f"c-{i}", "/cancel/fail") for i in range(4)]
    stack.target.statuses["/run_job"] = 200
    job_url = stack.target.url("/run_job")
    rt, out = make_runtime(
        stack, [queue], REDRIVE_QUEUE=rq, REDRIVE_JOB_URL=job_url, REDRIVE_TASKS_API="v2"
    )
    at = iso(stack.emu.clock.now())
    entry.handle_signal(deploy_event([queue], at, "c-1"), rt)
    assert set(out.outcomes().values()) == {"QUEUED"} and len(jobs_in(stack, rq)) == 4

    def job_requests() -> int:
        return sum(1 for path, _, _ in stack.target.requests if path == "/run_job")

    # Paused: the jobs wait. (The queue's dispatcher is idle; a sentinel on a running queue
    # shows the dispatcher itself works meanwhile.)
    probe_q = stack.queue("probe")
    stack.target.statuses["/probe"] = 200
    probe = stack.task(probe_q, "p-1", "/probe")
    wait_for(lambda: stack.gone(probe), "the sentinel on a running queue")
    assert job_requests() == 0 and len(jobs_in(stack, rq)) == 4

    # Purged: cancelled for good, and the job names stay taken, so a redelivery adds none.
    stack.client.purge_queue(request={"name": rq})
    assert jobs_in(stack, rq) == []
    stack.client.resume_queue(request={"name": rq})
    rt2, out2 = make_runtime(stack, [queue], REDRIVE_QUEUE=rq, REDRIVE_JOB_URL=job_url)
    entry.handle_signal(deploy_event([queue], at, "c-1"), rt2)
    assert set(out2.outcomes().values()) == {"SKIPPED_DUPLICATE"}
    sentinel = stack.task(rq, "sentinel-1", "/run_job")
    wait_for(lambda: stack.gone(sentinel), "the sentinel job on the resumed queue")
    assert job_requests() == 1  # the sentinel only: purged jobs never ran
    assert sum(runs_of(stack, t) for t in tasks) == 0


def test_paging_streams_every_page(stack):
    queue = stack.queue("paged")
    tasks = [stack.failed_task(queue, f"pg-{i:02d}", "/paged/fail") for i in range(11)]
    rt, out = make_runtime(stack, [queue], REDRIVE_DRY_RUN="true")
    plan = plan_for(
        Deploy(stack.emu.clock.now(), "plain", queues=(QueueName.parse(queue),)),
        SignalRef("deploy", "plain", "pg-1"),
        rt.settings,
    )
    before = stack.emu.control.call_counts().get("ListTasks", 0)
    report = Sweeper(rt, page_size=3).run(plan)
    assert report.pages == 4 and report.tasks_seen == 11
    # The plan counts the four pages first, then the sweep lists them again: one page at a time
    # in memory either way.
    assert stack.emu.control.call_counts()["ListTasks"] - before == 8
    (planned,) = out.lines("redrive.plan")
    assert planned["tasks_seen"] == 11 and planned["per_queue"][0]["pages"] == 4
    assert out.outcomes() == dict.fromkeys(tasks, "DRY_RUN")
    assert sum(runs_of(stack, t) for t in tasks) == 0


def test_queues_outside_the_allowlist_are_not_even_listed(stack):
    allowed = stack.queue("allowed")
    other = stack.queue("notallowed")
    stack.failed_task(other, "n-1", "/notallowed/fail")
    task = stack.failed_task(allowed, "a-1", "/allowed/fail")
    rt, out = make_runtime(stack, [allowed], REDRIVE_DRY_RUN="true")
    plan = plan_for(
        Deploy(
            stack.emu.clock.now(),
            "plain",
            queues=(QueueName.parse(other), QueueName.parse(allowed)),
        ),
        SignalRef("deploy", "plain", "al-1"),
        rt.settings,
    )
    report = Sweeper(rt).run(plan)
    assert report.queue_outcomes == {other: "SKIPPED_NOT_ALLOWED"}
    assert out.outcomes() == {task: "DRY_RUN"}
    (line,) = [x for x in out.lines("redrive.outcome") if x["task"] is None]
    assert line["outcome"] == "SKIPPED_NOT_ALLOWED" and line["queue"] == other
    assert report.tasks_seen == 1


def test_missing_queue_and_listing_faults(stack):
    q = stack.queue("faulty")
    missing = f"{PARENT}/queues/does-not-exist"
    rt, _ = make_runtime(stack, [q, missing], REDRIVE_RETRY_DEADLINE_S="0.3")
    plan = plan_for(
        Deploy(
            stack.emu.clock.now(),
            "plain",
            queues=(QueueName.parse(missing), QueueName.parse(q)),
        ),
        SignalRef("deploy", "plain", "f-1"),
        rt.settings,
    )
    stack.emu.control.fail("ListTasks", grpc.StatusCode.UNAVAILABLE, times=-1)
    try:
        report = Sweeper(rt).run(plan)
    finally:
        stack.emu.control.clear()
    assert report.queue_outcomes == {missing: "FAILED", q: "FAILED"} and report.redeliver
    report = Sweeper(rt).run(plan)
    assert report.queue_outcomes == {missing: "NOT_FOUND"} and not report.redeliver
    # The plan's two listings meet the refusal first; the sweep's first one too.
    stack.emu.control.fail("ListTasks", grpc.StatusCode.PERMISSION_DENIED, times=3)
    report = Sweeper(rt).run(plan)
    assert report.queue_outcomes[missing] == "PERMISSION_DENIED"


def test_deploy_by_service_map_and_the_revision_check_for_an_unmapped_deploy(stack):
    mapped = stack.queue("mapped")
    listed = stack.queue("listed")
    task_m = stack.failed_task(mapped, "m-1", "/mapped/fail")
    task_l = stack.failed_task(listed, "l-1", "/listed/fail")
    service = f"{PARENT}/services/shop"
    env = {"REDRIVE_SERVICE_MAP": json.dumps({service: [mapped]}), "REDRIVE_DRY_RUN": "true"}
    rt, out = make_runtime(stack, [mapped, listed], **env)
    at = stack.emu.clock.now()
    ref = SignalRef("deploy", "plain", "s-1")
    Sweeper(rt).run(plan_for(Deploy(at, "plain", services=("shop",)), ref, rt.settings))
    assert out.outcomes() == {task_m: "DRY_RUN"}
    assert out.sweeps()[0]["basis"] == "service map"

    # A deploy of a service nobody maps is no evidence for the allowed queues: with the revision
    # check each task's own service decides (listed's has a revision newer than its failure,
    # mapped's has none).
    stack.emu.cloudrun.deploy(f"{PARENT}/services/listed-svc")
    revision = {
        "REDRIVE_FIX_CHECK": "revision",
        "REDRIVE_SERVICE_MAP": json.dumps(
            {service: [mapped], f"{PARENT}/services/listed-svc": [listed]}
        ),
    }
    rt, out = make_runtime(stack, [mapped, listed], **{**env, **revision})
    Sweeper(rt).run(plan_for(Deploy(at, "plain", services=("unknown",)), ref, rt.settings))
    assert out.outcomes() == {task_m: "SKIPPED_FIX_NOT_DEPLOYED", task_l: "DRY_RUN"}
    sweep = out.sweeps()[0]
    assert sweep["basis"] == "allowlist, revision check" and sweep["deployed_at"] is None
    assert sweep["unmapped_services"] == ["unknown"]
    # Any other fix check: nothing is swept at all.
    rt, out = make_runtime(stack, [mapped, listed], **env)
    assert not plan_for(Deploy(at, "plain", services=("unknown",)), ref, rt.settings).queues


def test_deploy_naming_nothing_redrive_knows_is_ignored(stack):
    rt, out = make_runtime(stack, [f"{PARENT}/queues/*"])
    payload = json.dumps({"deployed": {"service": "nowhere", "at": iso(stack.emu.clock.now())}})
    event = deploy_event([], iso(stack.emu.clock.now()), "n-1")
    event.data["message"]["data"] = base64.b64encode(payload.encode()).decode()
    entry.handle_signal(event, rt)
    (line,) = out.lines("redrive.outcome")
    assert line["outcome"] == "IGNORED" and "REDRIVE_SERVICE_MAP" in line["reason"]
    assert out.sweeps() == []


def test_queue_alert_uses_the_configured_fix_check(stack):
    queue = stack.queue("alerted")
    service = f"{PARENT}/services/alerted"
    stack.emu.cloudrun.deploy(service, at=stack.emu.clock.now() - timedelta(hours=1))
    tasks = [stack.failed_task(queue, f"al-{i}", "/alerted/fail") for i in range(3)]
    env = {
        "REDRIVE_FIX_CHECK": "revision",
        "REDRIVE_SERVICE_MAP": json.dumps({service: [queue]}),
    }
    alert = QueueAlert(QueueName.parse(queue), stack.emu.clock.now(), "alert", "0.inc")
    ref = SignalRef("alert", "alert", "al-1")

    rt, out = make_runtime(stack, [queue], **env)
    before = stack.emu.control.call_counts().get("run.GetService", 0)
    Sweeper(rt).run(plan_for(alert, ref, rt.settings))
    assert out.outcomes() == dict.fromkeys(tasks, "SKIPPED_FIX_NOT_DEPLOYED")
    # One fix check per queue and target host, not per task.
    assert stack.emu.control.call_counts()["run.GetService"] - before == 1

    stack.emu.cloudrun.deploy(service)
    stack.target.statuses["/alerted/fail"] = 200
    rt, out = make_runtime(stack, [queue], **env)
    Sweeper(rt).run(plan_for(alert, ref, rt.settings))
    assert out.outcomes() == dict.fromkeys(tasks, "DISPATCHED")
    assert {x["fix"]["strategy"] for x in out.lines("redrive.outcome")} == {"revision"}
    for task in tasks:
        wait_for(partial(stack.gone, task), "the alerted task to complete")
        assert runs_of(stack, task) == 1


def test_direct_sweep_rereads_a_task_that_moved_while_waiting(stack):
    """A task completed by someone else between the listing and its RunTask slot: NOT_FOUND."""
    queue = stack.queue("moved")
    task = stack.failed_task(queue, "mv-1", "/moved/fail")
    rt, out = make_runtime(stack, [queue])
    plan = plan_for(
        Deploy(stack.emu.clock.now(), "plain", queues=(QueueName.parse(queue),)),
        SignalRef("deploy", "plain", "mv-1"),
        rt.settings,
    )
    clock = StepClock(0.0)

    def progress(_: Any) -> None:
        # Called once the page is listed: the task goes away and the listing grows old.
        if stack.get(task) is not None:
            stack.client.delete_task(request={"name": task})
        clock.now += 10.0

    Sweeper(rt, monotonic=clock, budget_s=1000.0, on_progress=progress).run(plan)
    assert out.outcomes() == {task: "NOT_FOUND"} and runs_of(stack, task) == 0


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (grpc.StatusCode.UNAVAILABLE, "FAILED"),
        (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
    ],
)
def test_queued_sweep_reports_a_listing_fault_after_the_first_page(stack, code, outcome):
    # The next page is listed ahead, on another thread, while a page's jobs are created: its
    # fault must still end the queue's sweep cleanly, after the page before it, reported once.
    suffix = outcome.lower().replace("_", "-")
    queue = stack.queue(f"midfault-{suffix}")
    rq = stack.queue(f"redrive-mf-{suffix}", paused=True)
    tasks = [stack.failed_task(queue, f"mf-{i}", "/midfault/fail") for i in range(5)]
    rt, out = make_runtime(stack, [queue], REDRIVE_RETRY_DEADLINE_S="0.3", **queued_env(rq))
    plan = plan_for(
        Deploy(stack.emu.clock.now(), "plain", queues=(QueueName.parse(queue),)),
        SignalRef("deploy", "plain", f"mf-{outcome}"),
        rt.settings,
    )
    # The plan lists the three pages first; then the sweep's page 2 onwards fail.
    stack.emu.control.fail("ListTasks", code, times=-1, after=4)
    try:
        report = Sweeper(rt, page_size=2).run(plan)
    finally:
        stack.emu.control.clear()
    # A queue-level FAILED is counted (it makes the signal come again); PERMISSION_DENIED is in
    # queue_outcomes and its own line.
    assert report.pages == 1 and report.counts["FAILED"] == (outcome == "FAILED")
    assert report.counts["QUEUED"] == 2 and report.queue_outcomes == {queue: outcome}
    assert report.redeliver is (outcome == "FAILED")
    assert {t for t, o in out.outcomes().items() if o == "QUEUED"} == set(tasks[:2])
    assert len(jobs_in(stack, rq)) == 2
    (line,) = [x for x in out.lines("redrive.outcome") if x["task"] is None]
    assert line["outcome"] == outcome and line["queue"] == queue and code.name in line["reason"]
