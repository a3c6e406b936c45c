"""The plan of a bulk re-drive, pure: which rate bounds each queue, the ETA in the order a sweep
works, and the plan line. Through the real servers: tests/integration/test_plan.py."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from redrive.core.plan import (
    MAX_QUEUE_RATE_PER_S,
    PLAN_EVENT,
    Pace,
    QueuePlan,
    eta_s,
    pace_for,
    plan_record,
)
from redrive.core.recreate import Method

RUN, RECREATE = Method.RUN, Method.RECREATE
NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("method", "kwargs", "rate", "bound"),
    [
        # direct mode: the lower of the throttle and the quota
        (RUN, {"queued": False}, 1.0, "RunTask quota (REDRIVE_RUN_QUOTA_PER_MIN=60)"),
        (RUN, {"queued": False, "direct_rate_per_s": 0.5}, 0.5, "REDRIVE_DIRECT_RATE_PER_S=0.5"),
        (RUN, {"queued": False, "direct_rate_per_s": 50.0}, 1.0, "RunTask quota"),
        (
            RUN,
            {"queued": False, "direct_rate_per_s": 50.0, "run_quota_per_min": 6000.0},
            50.0,
            "REDRIVE_DIRECT_RATE_PER_S=50",
        ),
        # queued mode: the lower of the redrive queue's rate and the quota
        (RUN, {"queued": True, "redrive_rate_per_s": 0.8}, 0.8, "redrive queue's dispatch rate"),
        (RUN, {"queued": True, "redrive_rate_per_s": 500.0}, 1.0, "RunTask quota"),
        (RUN, {"queued": True, "redrive_rate_per_s": None}, 1.0, "RunTask quota"),  # unread
        # the direct throttle is not queued mode's bound
        (RUN, {"queued": True, "direct_rate_per_s": 0.1}, 1.0, "RunTask quota"),
        # re-create: the queue's own rate, or the service's maximum when it cannot be read
        (RECREATE, {"queued": False, "queue_rate_per_s": 20.0}, 20.0, "queue's dispatch rate"),
        (RECREATE, {"queued": True, "queue_rate_per_s": 20.0}, 20.0, "queue's dispatch rate"),
        (RECREATE, {"queued": False}, MAX_QUEUE_RATE_PER_S, "could not be read"),
        (RECREATE, {"queued": False, "queue_rate_per_s": 0.0}, MAX_QUEUE_RATE_PER_S, "maximum"),
    ],
)
def test_the_rate_that_bounds_a_queue(method, kwargs, rate, bound):
    args = {"run_quota_per_min": 60.0, "direct_rate_per_s": 1.0, **kwargs}
    pace = pace_for(method, **args)
    assert pace.method is method and pace.rate_per_s == pytest.approx(rate)
    assert bound in pace.limited_by


def test_a_recreate_pace_carries_the_delay_and_a_queued_run_the_jobs_ahead():
    recreate = pace_for(
        RECREATE,
        queued=False,
        run_quota_per_min=60,
        direct_rate_per_s=1,
        queue_rate_per_s=10,
        recreate_delay_s=5,
    )
    assert recreate.delay_s == 5 and recreate.ahead == 0
    run = pace_for(RUN, queued=True, run_quota_per_min=60, direct_rate_per_s=1, ahead=30)
    assert run.ahead == 30 and run.delay_s == 0


def run_at(rate: float, ahead: int = 0) -> Pace:
    return Pace(RUN, rate, "x", ahead=ahead)


def recreate_at(rate: float, delay_s: float = 5.0) -> Pace:
    return Pace(RECREATE, rate, "x", delay_s)


@pytest.mark.parametrize(
    ("parts", "queued", "expected"),
    [
        ([], False, 0.0),
        ([(0, run_at(1.0))], False, 0.0),  # nothing selected
        ([(60, run_at(1.0))], False, 60.0),
        ([(1000, run_at(50.0))], False, 20.0),
        # direct mode: RunTask queues one after another (one throttle)
        ([(60, run_at(1.0)), (30, run_at(1.0))], False, 90.0),
        # a re-create queue: its delay, then its own rate
        ([(1000, recreate_at(100.0))], False, 15.0),
        ([(1000, recreate_at(100.0, 0.0))], True, 10.0),
        # direct: the re-create queue comes after the RunTask queue's 60 s
        ([(60, run_at(1.0)), (1000, recreate_at(100.0))], False, 75.0),
        # direct: the re-create queue first; its copies dispatch while RunTask goes on
        ([(1000, recreate_at(100.0)), (60, run_at(1.0))], False, 60.0),
        ([(1000, recreate_at(10.0)), (60, run_at(1.0))], False, 105.0),
        # queued: every job is created at once; RunTask jobs go through the redrive queue in turn
        ([(60, run_at(1.0)), (1000, recreate_at(100.0))], True, 60.0),
        ([(60, run_at(1.0)), (30, run_at(1.0))], True, 90.0),
        # queued: jobs already waiting go first, counted once
        ([(60, run_at(1.0, ahead=30)), (30, run_at(1.0, ahead=30))], True, 120.0),
        ([(60, run_at(2.0, ahead=30))], True, 45.0),
        # the jobs ahead are no reason to wait when nothing of ours is selected
        ([(0, run_at(1.0, ahead=30))], True, 0.0),
    ],
)
def test_eta(parts, queued, expected):
    assert eta_s(parts, queued=queued) == pytest.approx(expected)


def counted(queue: str, selected: int, pace: Pace | None, **kwargs: object) -> QueuePlan:
    qp = QueuePlan(
        f"projects/p/locations/l/queues/{queue}",
        tasks_seen=selected + 2,
        pages=1,
        selected=selected,
        skipped=Counter({"IN_FLIGHT": 1, "OTHER_STATUS": 1}),
        by_status=Counter({"INTERNAL (HTTP 500)": selected}),
        counted=True,
        method=pace.method if pace else None,
        why="auto",
        pace=pace,
    )
    for key, value in kwargs.items():
        setattr(qp, key, value)
    return qp


def record(*queues: QueuePlan, queued: bool = False) -> dict:
    return plan_record(queues, queued=queued, now=NOW, base={"mode": "direct"}, duration_ms=12.34)


def test_the_plan_line_totals_and_per_queue_fields():
    line = record(
        counted("a", 60, pace_for(RUN, queued=False, run_quota_per_min=60, direct_rate_per_s=5)),
        counted("b", 1000, recreate_at(100.0)),
    )
    assert line["event"] == PLAN_EVENT and line["severity"] == "INFO"
    assert line["mode"] == "direct"
    assert (line["tasks_seen"], line["selected"]) == (1064, 1060)
    assert line["skipped"] == {"IN_FLIGHT": 2, "OTHER_STATUS": 2}
    assert line["by_status"] == {"INTERNAL (HTTP 500)": 1060}
    assert line["methods"] == {"run": 60, "recreate": 1000}
    assert line["eta_s"] == 75.0 and line["eta_at"] == "2026-11-29T09:01:15Z"
    assert line["limited_by"] == "x"  # the re-create queue ends last
    assert line["counted"] is True and line["duration_ms"] == 12.3
    a, b = line["per_queue"]
    assert a["method"] == "run" and a["rate_per_s"] == 1.0 and a["eta_s"] == 60.0
    assert "RunTask quota" in a["limited_by"]
    assert b["method"] == "recreate" and b["eta_s"] == 15.0 and b["counted"] is True
    assert line["message"] == (
        "PLAN 2 queue(s): 1064 task(s) seen, 1060 selected (re-create 1000, RunTask 60); "
        "ETA 1m15s, limited by x"
    )


@pytest.mark.parametrize(
    ("selected", "rate", "said"),
    [
        (1234, 100.0, "ETA 12.3s"),
        (90, 1.0, "ETA 1m30s"),
        (5400, 1.0, "ETA 1h30m"),
        (0, 1.0, "ETA 0.0s"),
    ],
)
def test_the_eta_is_said_in_readable_units(selected, rate, said):
    line = record(counted("a", selected, run_at(rate)))
    assert said in line["message"]


def test_a_plan_that_could_not_count_everything_says_at_least():
    partial = counted("a", 10, run_at(1.0), counted=False, error="cut")
    line = record(partial)
    assert line["counted"] is False and "(at least" in line["message"]
    assert line["per_queue"][0]["error"] == "cut"


def test_nothing_to_redrive():
    line = record(counted("a", 0, run_at(1.0)))
    assert line["eta_s"] == 0 and line["limited_by"] is None
    assert "0 selected (nothing to re-drive); ETA 0.0s" in line["message"]
    unlisted = record(QueuePlan("projects/p/locations/l/queues/gone", error="not found"))
    assert unlisted["per_queue"][0]["method"] is None and unlisted["counted"] is False
