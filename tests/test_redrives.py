"""One bulk re-drive, one id: the id, reading lines back, folding them, each re-run task's fate,
the status and the CANCELLED line — pure, by tables. Through the real servers, two re-drives
interleaved in queued mode: tests/integration/test_redrive_status.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from redrive.core.decide import SignalRef
from redrive.core.errors import InvalidJobError
from redrive.core.jobs import Job
from redrive.core.names import TaskName
from redrive.core.outcomes import Outcome
from redrive.core.redrives import (
    Redrive,
    Rerun,
    State,
    cancel_record,
    fold,
    is_redrive_id,
    owner_for,
    records_from_text,
    redrive_id,
    settle,
    status_eta_s,
    status_of,
)

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
Q = "projects/p/locations/l/queues/billing"
_rid = redrive_id(SignalRef("deploy", "plain", "m-1"))
assert _rid is not None
RID: str = _rid
assert RID is not None


def test_the_id_comes_from_the_signal_and_is_the_same_on_redelivery():
    again = redrive_id(SignalRef("deploy", "plain", "m-1", NOW))  # a redelivery: same id
    assert again == RID and is_redrive_id(RID)
    assert redrive_id(SignalRef("deploy", "plain", "m-2")) != RID
    assert redrive_id(SignalRef("alert", "alert", "m-1")) != RID  # another kind of signal
    assert redrive_id(SignalRef("deploy", "plain", None)) is None
    assert owner_for("msg:m-1", RID) == f"msg:m-1@{RID}" and owner_for("msg:m-1", None) == "msg:m-1"


@pytest.mark.parametrize("value", ["rd-0123456789ab", "rd-ffffffffffff"], ids=["digits", "hex"])
def test_ids(value):
    assert is_redrive_id(value)


@pytest.mark.parametrize("value", ["rd-0123", "RD-0123456789ab", "rd-0123456789ag", None, 7])
def test_not_ids(value):
    assert not is_redrive_id(value)


def test_a_job_carries_its_redrive_and_refuses_a_bad_one():
    task = TaskName.parse(f"{Q}/tasks/t1")
    job = Job(task, NOW, 3, SignalRef("deploy", "plain", "m-1"), redrive=RID)
    assert Job.parse(job.to_json()) == job
    plain = Job(task, NOW, 3, SignalRef("deploy", "plain", "m-1"))
    assert "redrive" not in json.loads(plain.to_json()) and Job.parse(plain.to_json()) == plain
    bad = json.loads(job.to_json())
    bad["redrive"] = "rd-nothex"
    with pytest.raises(InvalidJobError, match="re-drive id"):
        Job.parse(json.dumps(bad).encode())


# --- reading lines back -----------------------------------------------------------------------

PLAN = {
    "event": "redrive.plan",
    "redrive_id": RID,
    "time": "2026-11-29T09:00:00Z",
    "mode": "queued",
    "queues": [Q],
    "signal": {"kind": "deploy", "message_id": "m-1"},
    "selected": 4,
    "eta_s": 4.0,
    "per_queue": [{"queue": Q, "selected": 4, "rate_per_s": 1.0, "eta_s": 4.0}],
}


def outcome(task: str, what: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": "redrive.outcome",
        "redrive_id": RID,
        "task": f"{Q}/tasks/{task}",
        "outcome": what,
        **extra,
    }


def test_records_from_json_lines_entries_and_an_entry_array():
    line = json.dumps(PLAN)
    entry = {"jsonPayload": {k: v for k, v in PLAN.items() if k != "time"}, "timestamp": "T1"}
    text = "\n".join(
        [line, "not json", "", '{"no": "event"}', json.dumps(entry), "[" + json.dumps(entry) + "]"]
    )
    got = list(records_from_text(text))
    assert [r["event"] for r in got] == ["redrive.plan"] * 3
    assert [r["time"] for r in got] == ["2026-11-29T09:00:00Z", "T1", "T1"]
    # gcloud logging read --format=json: one array over many lines.
    array = json.dumps([entry, entry], indent=2)
    assert [r["time"] for r in records_from_text(array)] == ["T1", "T1"]
    assert list(records_from_text("[1, 2")) == []


def test_fold_follows_each_task_to_its_latest_line():
    records = [
        PLAN,
        outcome("a", "QUEUED", sweep=True),
        outcome("b", "QUEUED", sweep=True),
        outcome("c", "SKIPPED_DUPLICATE", sweep=True),
        outcome("a", "DISPATCHED", run={"dispatch_count_after": 2}),  # run_job's line
        outcome("b", "FAILED"),
        outcome("b", "DISPATCHED", run={"dispatch_count_after": 2}),
        {"event": "redrive.outcome", "redrive_id": None, "task": f"{Q}/tasks/x"},  # not ours
        {**PLAN, "selected": 2, "time": "2026-11-29T09:05:00Z"},  # a redelivery's plan
        {"event": "redrive.sweep", "redrive_id": RID, "complete": True, "mode": "queued"},
    ]
    (redrive,) = fold(records).values()
    assert redrive.selected == 4 and redrive.started == "2026-11-29T09:00:00Z"
    assert redrive.queued == {f"{Q}/tasks/a", f"{Q}/tasks/b"}
    assert set(redrive.dispatched) == {f"{Q}/tasks/a", f"{Q}/tasks/b"}
    assert redrive.outcomes == {"DISPATCHED": 2, "SKIPPED_DUPLICATE": 1}
    assert redrive.decided == {f"{Q}/tasks/{t}" for t in "abc"}
    assert redrive.rate_per_s == 1.0 and redrive.sweep is not None


@pytest.mark.parametrize(
    ("run", "now", "fate"),
    [
        ({"dispatch_count_after": 2}, None, Rerun.SUCCEEDED),  # gone
        ({"dispatch_count_after": 2}, {"dispatch_count": 2, "in_flight": True}, Rerun.RUNNING),
        (
            {"dispatch_count_after": 2},
            {"dispatch_count": 2, "last_status": "INTERNAL", "in_flight": False},
            Rerun.FAILED_AGAIN,
        ),
        (
            {"dispatch_count_after": 2},
            {"dispatch_count": 3, "last_status": "INTERNAL", "in_flight": False},
            Rerun.FAILED_AGAIN,  # and its own retry since
        ),
        (
            {"dispatch_count_after": 2},
            {"dispatch_count": 2, "last_status": "OK", "in_flight": False},
            Rerun.SUCCEEDED,  # answered OK, not deleted yet
        ),
        (
            # the listing is older than the forced attempt: not known yet
            {"dispatch_count_after": 3},
            {"dispatch_count": 2, "last_status": "INTERNAL", "in_flight": False},
            Rerun.RUNNING,
        ),
        # a re-create: the copy's own first attempt
        ({"copy": "c", "dispatch_count_after": 5}, {"dispatch_count": 0}, Rerun.RUNNING),
        (
            {"copy": "c"},
            {"dispatch_count": 1, "last_status": "UNAVAILABLE", "in_flight": False},
            Rerun.FAILED_AGAIN,
        ),
        ({"copy": "c"}, None, Rerun.SUCCEEDED),
    ],
)
def test_settle(run, now, fate):
    assert settle(run, now) is fate


def redrive_with(**kwargs: Any) -> Redrive:
    r = Redrive(RID, mode="queued", selected=4, rate_per_s=2.0)
    for key, value in kwargs.items():
        setattr(r, key, value)
    return r


DONE = {"complete": True}
T = [f"{Q}/tasks/{x}" for x in "abcd"]
RUNS = {t: {"dispatch_count_after": 2} for t in T}


@pytest.mark.parametrize(
    ("redrive", "waiting", "fates", "state", "counts"),
    [
        # planned, nothing else yet
        (redrive_with(), 0, {}, State.PLANNED, (0, 0, 0, 0, 0)),
        # queued: two jobs waiting, two re-run (one succeeded, one failed again)
        (
            redrive_with(
                queued=set(T), dispatched={t: RUNS[t] for t in T[:2]}, sweep=DONE, decided=set(T)
            ),
            2,
            {T[0]: Rerun.SUCCEEDED, T[1]: Rerun.FAILED_AGAIN},
            State.IN_PROGRESS,
            (2, 1, 1, 0, 2),
        ),
        # queued: every job run, every task answered
        (
            redrive_with(queued=set(T), dispatched=RUNS, sweep=DONE, decided=set(T)),
            0,
            dict.fromkeys(T, Rerun.SUCCEEDED),
            State.FINISHED,
            (4, 4, 0, 0, 0),
        ),
        # no job waits, but a re-run is still to be answered
        (
            redrive_with(queued=set(T), dispatched=RUNS, sweep=DONE, decided=set(T)),
            0,
            {T[0]: Rerun.SUCCEEDED},
            State.IN_PROGRESS,
            (4, 1, 0, 3, 0),
        ),
        # direct mode, the sweep under way: the tasks it has not reached remain
        (
            redrive_with(mode="direct", decided=set(T[:1]), dispatched={T[0]: RUNS[T[0]]}),
            0,
            {T[0]: Rerun.SUCCEEDED},
            State.IN_PROGRESS,
            (1, 1, 0, 0, 3),
        ),
        # direct mode, cut by its budget: incomplete until delivered again
        (
            redrive_with(mode="direct", decided=set(T[:2]), sweep={"complete": False}),
            0,
            {},
            State.INCOMPLETE,
            (0, 0, 0, 0, 2),
        ),
        # cancelled: its remaining jobs were deleted
        (
            redrive_with(
                queued=set(T), dispatched={T[0]: RUNS[T[0]]}, sweep=DONE, cancelled={"deleted": 3}
            ),
            0,
            {T[0]: Rerun.SUCCEEDED},
            State.CANCELLED,
            (1, 1, 0, 0, 0),
        ),
    ],
    ids=["planned", "queued-half", "queued-done", "queued-answer-pending", "direct-running",
         "direct-cut", "cancelled"],
)  # fmt: skip
def test_status(redrive, waiting, fates, state, counts):
    status = status_of(redrive, waiting=waiting, reruns=fates)
    assert status.state is state
    assert (
        status.dispatched,
        status.succeeded,
        status.failed_again,
        status.running,
        status.remaining,
    ) == counts
    fields = status.fields()
    assert fields["redrive_id"] == RID and fields["state"] == state.value


def test_the_status_eta_is_what_remains_at_the_rate():
    r = redrive_with(queued=set(T), sweep=DONE)
    assert status_of(r, waiting=3, reruns={}).eta_s == 1.5  # the plan's 2/s
    assert status_of(r, waiting=3, reruns={}, rate_per_s=0.5).eta_s == 6.0  # the queue's now
    assert status_of(redrive_with(rate_per_s=None), waiting=3, reruns={}).eta_s is None


@pytest.mark.parametrize(
    ("remaining", "rate", "eta"),
    [(0, None, 0.0), (0, 1.0, 0.0), (10, 2.0, 5.0), (10, None, None), (10, 0.0, None)],
)
def test_status_eta(remaining, rate, eta):
    assert status_eta_s(remaining, rate) == eta


def test_the_cancelled_line():
    line = cancel_record(RID, redrive_queue=Q, deleted=3, gone=1, failed=0, now=NOW)
    assert line["event"] == "redrive.cancel" and line["outcome"] == "CANCELLED"
    assert line["severity"] == Outcome.CANCELLED.severity == "WARNING"
    assert (line["deleted"], line["gone"], line["failed"]) == (3, 1, 0)
    assert line["time"] == "2026-11-29T09:00:00Z" and line["redrive_id"] == RID
    assert "3 waiting job(s) deleted" in line["message"] and "1 gone meanwhile" in line["message"]
    assert line["labels"] == {"outcome": "CANCELLED", "component": "redrive"}
    failed = cancel_record(
        RID, redrive_queue=Q, deleted=0, gone=0, failed=2, now=NOW, reasons=["PERMISSION_DENIED"]
    )
    assert failed["severity"] == "ERROR" and "PERMISSION_DENIED" in failed["message"]
    assert not Outcome.CANCELLED.redeliver
    # `redrive status` reads it back: the re-drive is cancelled.
    (redrive,) = fold([PLAN, line]).values()
    assert status_of(redrive, waiting=0, reruns={}).state is State.CANCELLED


def test_a_halted_redrive_says_so_with_the_tasks_left_alone():
    canary = {
        "event": "redrive.outcome",
        "redrive_id": RID,
        "task": T[0],
        "outcome": "DISPATCHED",
        "sweep": True,
        "run": {"dispatch_count_after": 2},
    }
    halted = {
        "event": "redrive.outcome",
        "redrive_id": RID,
        "task": None,
        "queue": Q,
        "outcome": "HALTED",
        "left": 3,
    }
    sweep = {"event": "redrive.sweep", "redrive_id": RID, "complete": True, "mode": "direct"}
    (redrive,) = fold([{**PLAN, "mode": "direct"}, canary, halted, sweep]).values()
    status = status_of(redrive, waiting=0, reruns={T[0]: Rerun.FAILED_AGAIN})
    assert status.state is State.HALTED
    assert (status.dispatched, status.failed_again, status.halted) == (1, 1, 3)
    assert status.fields()["halted_queues"] == [Q]
    # A halted line that could not count what it left still marks the queue.
    (uncounted,) = fold([PLAN, {**halted, "left": None}, sweep]).values()
    assert status_of(uncounted, waiting=0, reruns={}).halted == 0
    assert uncounted.halted == {Q: None}
