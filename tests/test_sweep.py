"""The sweep's pure parts: which listed tasks are selected, which queues a signal means, and the
SWEEP record. The driver itself runs against the emulator in tests/integration/test_sweep.py."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from redrive.core.config import Settings
from redrive.core.decide import SignalRef
from redrive.core.names import QueueName, TaskName
from redrive.core.selection import Pick, SweepPlan, plan_for, select
from redrive.core.signals import Deploy, QueueAlert
from redrive.core.state import TaskState
from redrive.sweep import SweepReport

DEPLOYED = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
BEFORE = DEPLOYED - timedelta(minutes=10)
AFTER = DEPLOYED + timedelta(minutes=1)
TASK = TaskName.parse("projects/p/locations/l/queues/billing/tasks/t1")
REF = SignalRef("deploy", "plain", "m-1", DEPLOYED)
INTERNAL = 13


def state(
    dispatched: datetime | None = None,
    answered: datetime | None = None,
    code: int | None = None,
    count: int = 1,
) -> TaskState:
    return TaskState(
        TASK,
        dispatch_count=count if dispatched else 0,
        response_count=count if answered else 0,
        last_dispatch_time=dispatched,
        last_response_time=answered,
        last_status_code=code,
    )


SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("task", "deployed_at", "expected"),
    [
        # failing before the deploy: the one case a deploy sweep re-drives
        (state(BEFORE, BEFORE + SECOND, INTERNAL), DEPLOYED, Pick.SELECTED),
        # several failed attempts, the last one before the deploy
        (state(BEFORE, BEFORE + SECOND, INTERNAL, count=7), DEPLOYED, Pick.SELECTED),
        # failed without an HTTP answer (deadline): over, failed, selected
        (state(BEFORE, None, 4), DEPLOYED, Pick.SELECTED),
        # in flight: dispatched, not answered (a previous answer is older than the dispatch)
        (state(BEFORE, None, None), DEPLOYED, Pick.IN_FLIGHT),
        (
            TaskState(
                TASK,
                dispatch_count=2,
                response_count=1,
                last_dispatch_time=BEFORE,
                last_response_time=BEFORE - SECOND,
                last_status_code=INTERNAL,
            ),
            DEPLOYED,
            Pick.IN_FLIGHT,
        ),
        # never attempted (scheduled for later)
        (state(), DEPLOYED, Pick.NEVER_ATTEMPTED),
        # last attempt OK (the task is about to be deleted): not failing
        (state(BEFORE, BEFORE + SECOND, 0), DEPLOYED, Pick.LAST_OK),
        # re-dispatched after the deploy and failed again: the fixed code had its chance
        (state(AFTER, AFTER + SECOND, INTERNAL, count=2), DEPLOYED, Pick.AFTER_DEPLOY),
        # dispatched exactly at the deploy time: not "before"
        (state(DEPLOYED, AFTER, INTERNAL), DEPLOYED, Pick.AFTER_DEPLOY),
        # re-dispatched after the deploy and still running
        (state(AFTER, None, None, count=2), DEPLOYED, Pick.IN_FLIGHT),
        # failed with no attempt time at all: cannot be placed before the deploy
        (state(None, None, INTERNAL), DEPLOYED, Pick.NO_ATTEMPT_TIME),
        # queue alert (no deploy time): any finished failure, the fix check decides later
        (state(AFTER, AFTER + SECOND, INTERNAL), None, Pick.SELECTED),
        (state(None, None, INTERNAL), None, Pick.SELECTED),
        (state(AFTER, None, None), None, Pick.IN_FLIGHT),
        (state(), None, Pick.NEVER_ATTEMPTED),
    ],
    ids=[
        "failed-before-deploy",
        "failed-7-times-before",
        "deadline-before",
        "in-flight",
        "in-flight-after-an-answer",
        "never-attempted",
        "last-ok",
        "redispatched-after-deploy",
        "dispatched-at-deploy",
        "redispatched-in-flight",
        "no-attempt-time",
        "alert-failed",
        "alert-failed-no-time",
        "alert-in-flight",
        "alert-never-attempted",
    ],
)
def test_select(task, deployed_at, expected):
    assert select(task, deployed_at) is expected


Q = {q: QueueName.parse(f"projects/p/locations/l/queues/{q}") for q in ("a", "b", "c", "x")}


def settings(**env: str) -> Settings:
    return Settings.from_env(
        {
            "REDRIVE_ALLOWED_QUEUES": f"{Q['c']},{Q['a']},projects/p/locations/m/queues/*",
            "REDRIVE_SERVICE_MAP": (
                '{"projects/p/locations/l/services/billing": '
                f'["{Q["a"]}", "{Q["b"]}"], "web": "{Q["c"]}"}}'
            ),
            **env,
        }
    )


def deploy(services: tuple[str, ...] = (), queues: tuple[QueueName, ...] = ()) -> Deploy:
    return Deploy(DEPLOYED, "plain", services=services, queues=queues)


@pytest.mark.parametrize(
    ("signal", "queues", "basis", "unmapped"),
    [
        (deploy(("billing",)), ("a", "b"), "service map", ()),
        (deploy(("projects/p/locations/l/services/billing",)), ("a", "b"), "service map", ()),
        (deploy(queues=(Q["x"],)), ("x",), "signal", ()),
        (deploy(("web",), (Q["x"], Q["c"])), ("x", "c"), "signal", ()),
        (deploy(("billing", "ghost"), (Q["x"],)), ("x", "a", "b"), "signal and service map", ()),
    ],
)
def test_plan_for_deploy(signal, queues, basis, unmapped):
    plan = plan_for(signal, REF, settings())
    assert plan.queues == tuple(Q[q] for q in queues)
    assert plan.basis == basis and plan.deployed_at == DEPLOYED
    if unmapped:
        assert plan.unmapped == unmapped


@pytest.mark.parametrize("check", ["none", "static"])
def test_an_unmapped_deploy_is_no_evidence_for_other_queues(check):
    """A build of any service (a `_SERVICE_NAME` nobody maps) must not force-run the allowed
    queues with its own time as the fix: with a fix check other than `revision`, nothing."""
    extra = {"REDRIVE_FIX_DEPLOYED_AT": "2026-11-01T00:00:00Z"} if check == "static" else {}
    plan = plan_for(deploy(("ghost",)), REF, settings(REDRIVE_FIX_CHECK=check, **extra))
    assert plan.queues == () and plan.basis == "none"
    assert "ghost" in plan.note and "REDRIVE_SERVICE_MAP" in plan.note


def test_an_unmapped_deploy_with_the_revision_check_lets_each_tasks_revision_decide():
    # The exact allowlisted queues, sorted (the pattern is not expanded), with no deploy time:
    # the sweep then asks each task's Cloud Run revision, as for a queue alert.
    plan = plan_for(deploy(("ghost",)), REF, settings())
    assert plan.queues == (Q["a"], Q["c"]) and plan.deployed_at is None
    assert plan.basis == "allowlist, revision check" and plan.unmapped == ("ghost",)


def test_plan_for_deploy_lists_unmapped_services():
    plan = plan_for(deploy(("billing", "ghost"), (Q["x"],)), REF, settings())
    assert plan.unmapped == ("ghost",) and plan.services == ("billing", "ghost")


def test_plan_for_deploy_with_nothing_to_default_to_is_empty():
    plan = plan_for(deploy(("ghost",)), REF, Settings.from_env({}))
    assert plan.queues == () and plan.basis == "none" and plan.note


def test_plan_for_queue_alert():
    plan = plan_for(QueueAlert(Q["x"], DEPLOYED, "alert", "0.abc"), REF, settings())
    assert plan == SweepPlan((Q["x"],), None, REF, "alert")


def test_plan_for_refuses_other_signals():
    with pytest.raises(TypeError):
        plan_for(object(), REF, settings())  # type: ignore[arg-type]


def report(**kwargs) -> SweepReport:
    plan = SweepPlan((Q["a"],), DEPLOYED, REF, "signal")
    return SweepReport(plan, mode="queued", dry_run=False, api_version="v2", **kwargs)


def test_report_record_complete():
    rec = report(counts=Counter(QUEUED=3, SKIPPED_DUPLICATE=1), pages=2, tasks_seen=9).record()
    assert rec["event"] == "redrive.sweep" and rec["outcome"] == "SWEEP"
    assert rec["severity"] == "INFO" and rec["complete"] is True and rec["stopped_at"] is None
    assert rec["counts"] == {"QUEUED": 3, "SKIPPED_DUPLICATE": 1}
    assert rec["deployed_at"] == "2026-11-29T09:00:00Z" and rec["queues"] == [str(Q["a"])]
    assert rec["labels"] == {"outcome": "SWEEP", "component": "redrive"}
    assert "QUEUED=3" in rec["message"] and "complete" in rec["message"]


@pytest.mark.parametrize(
    ("kwargs", "redeliver"),
    [
        ({}, False),
        ({"counts": Counter(DISPATCHED=2, NOT_FOUND=1)}, False),
        ({"counts": Counter(DISPATCHED=2, FAILED=1)}, True),
        ({"complete": False, "stopped_at": {"queue": str(Q["a"]), "page": 3}}, True),
    ],
)
def test_report_asks_for_redelivery_when_cut_or_failed(kwargs, redeliver):
    rep = report(**kwargs)
    assert rep.redeliver is redeliver
    rec = rep.record()
    expected = "ERROR" if rep.counts["FAILED"] else "WARNING" if not rep.complete else "INFO"
    assert rec["severity"] == expected
    if not rep.complete:
        assert "stopped in" in rec["message"] and rec["stopped_at"]["page"] == 3


@pytest.mark.parametrize("outcome", ["FAILED", "PERMISSION_DENIED"])
def test_report_of_a_queue_not_listed_is_an_incomplete_error(outcome):
    counts = Counter(FAILED=1) if outcome == "FAILED" else Counter()
    rec = report(queue_outcomes={str(Q["a"]): outcome}, counts=counts).record()
    assert rec["complete"] is False and rec["severity"] == "ERROR"
    assert "INCOMPLETE (1 queue(s) not listed" in rec["message"]
    tasks = report(counts=Counter(DISPATCHED=2, PERMISSION_DENIED=1)).record()
    assert tasks["complete"] is True and tasks["severity"] == "ERROR"
    assert "with FAILED tasks" in tasks["message"]
