# mypy: disable-error-code="no-untyped-call"
"""The claims protocol's pure parts: marker names and bodies, fix identities, the rung verdict;
and the register's order of calls against a fake client (the real path is in the stress tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2beta3
from hypothesis import given
from hypothesis import strategies as st

from redrive.adapters.claims import Claims, Grant, Refusal
from redrive.adapters.cloudtasks import CloudTasks
from redrive.core.claims import (
    MAX_RUNGS,
    Checkpoint,
    FailureKey,
    Kind,
    Marker,
    Step,
    checkpoint_name,
    end_name,
    fix_identity,
    fix_name,
    judge_rung,
    rung_name,
)
from redrive.core.decide import FixEvidence
from redrive.core.names import TASK_NAME_RE, QueueName, TaskName
from redrive.core.outcomes import Outcome
from redrive.core.state import TaskState

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
CLAIMS = QueueName.parse("projects/acme/locations/europe-west1/queues/redrive-claims")
TASK = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-441")
FAILURE = FailureKey(TASK, 3)


@given(task_id=st.from_regex(r"[A-Za-z0-9_\-]{1,500}", fullmatch=True), count=st.integers(0, 10**6))
def test_marker_names_stay_within_the_grammar_however_long_the_task(task_id: str, count: int):
    task = TaskName.parse(
        f"projects/acme/locations/europe-west1/queues/{'q' * 100}/tasks/{task_id}"
    )
    failure = FailureKey(task, count)
    names = [
        rung_name(CLAIMS, failure, MAX_RUNGS),
        end_name(CLAIMS, failure, 1),
        fix_name(CLAIMS, task, "revision:x"),
        checkpoint_name(CLAIMS, "deploy:123", CLAIMS, 10**6),
    ]
    for name in names:
        assert TASK_NAME_RE.fullmatch(name), name
        assert len(name.rsplit("/", 1)[1]) <= 500


def test_marker_names_differ_by_every_part_of_their_key():
    names = {
        rung_name(CLAIMS, FAILURE, 1),
        rung_name(CLAIMS, FAILURE, 2),
        rung_name(CLAIMS, FailureKey(TASK, 4), 1),
        end_name(CLAIMS, FAILURE, 1),
        fix_name(CLAIMS, TASK, "none"),
        fix_name(CLAIMS, TASK, "revision:r2"),
    }
    assert len(names) == 6


@pytest.mark.parametrize(
    ("evidence", "identity"),
    [
        (None, "none"),
        (FixEvidence("none"), "none"),
        (FixEvidence("revision", NOW, "svc", "svc/revisions/r2"), "revision:svc/revisions/r2"),
        (FixEvidence("static", NOW), f"static:{NOW.isoformat()}"),
        (FixEvidence("deploy-signal", NOW, "svc"), f"deploy-signal:{NOW.isoformat()}"),
    ],
)
def test_fix_identity(evidence, identity):
    assert fix_identity(evidence) == identity


def test_marker_and_checkpoint_bodies_round_trip_and_refuse_strangers():
    marker = Marker(Kind.RUNG, TASK, 3, "msg:1", "none", NOW, 2, None)
    assert Marker.parse(marker.to_json()) == marker
    mark = Checkpoint("deploy:9", CLAIMS, 4, "tok", NOW)
    assert Checkpoint.parse(mark.to_json()) == mark
    for stranger in (b"", b"{}", b"[1]", b'{"v": 1, "kind": "rung"}', b"\xff", b"{" * 5000):
        assert Marker.parse(stranger) is None
        assert Checkpoint.parse(stranger) is None


OURS = Marker(Kind.RUNG, TASK, 3, "msg:1", "none", NOW, 1)


@pytest.mark.parametrize(
    ("rung", "ended", "age_s", "step"),
    [
        (OURS, True, 0, Step.NEXT),  # ended without a dispatch: the next rung is free
        (OURS, False, 1, Step.WAIT),  # ours, young: its RunTask may still be running
        (OURS, False, 59, Step.WAIT),
        (Marker(Kind.RUNG, TASK, 3, "msg:2", "none", NOW, 1), False, 1, Step.YIELD),
        (OURS, False, 60, Step.RECHECK),  # old enough: the task's state decides
        (None, False, 1, Step.RECHECK),  # unreadable (purged): the task's state decides
    ],
)
def test_judge_rung(rung, ended, age_s, step):
    taken = NOW - timedelta(seconds=age_s)
    verdict = judge_rung(rung, ended=ended, owner="msg:1", taken_at=taken, now=NOW, window_s=60)
    assert verdict is step


# -- the register against a fake Cloud Tasks ---------------------------------------------------


class FakeQueue:
    """Named tasks with ALREADY_EXISTS, like Cloud Tasks; records the calls."""

    def __init__(self) -> None:
        self.tasks: dict[str, tasks_v2beta3.Task] = {}
        self.calls: list[tuple[str, str]] = []

    def create_task(self, request: Any = None, **_: Any) -> Any:
        task = request["task"]
        self.calls.append(("create", task["name"]))
        if task["name"] in self.tasks:
            raise gexc.AlreadyExists("exists")
        stored = tasks_v2beta3.Task(
            name=task["name"],
            http_request={"url": task["http_request"]["url"], "body": task["http_request"]["body"]},
            create_time=NOW,
        )
        self.tasks[task["name"]] = stored
        return stored

    def get_task(self, request: Any = None, **_: Any) -> Any:
        self.calls.append(("get", request["name"]))
        if request["name"] not in self.tasks:
            raise gexc.NotFound("missing")
        return self.tasks[request["name"]]

    def run_task(self, request: Any = None, **_: Any) -> Any:
        raise AssertionError("claims never run tasks")

    def list_tasks(self, request: Any = None, **_: Any) -> Any:
        raise AssertionError("claims never list")

    def delete_task(self, request: Any = None, **_: Any) -> Any:
        raise AssertionError("claims never delete")

    def get_queue(self, request: Any = None, **_: Any) -> Any:
        raise AssertionError("claims never read a queue")


def register(fake: FakeQueue, now: datetime = NOW) -> Claims:
    tasks = CloudTasks(fake, retry_deadline_s=0.1, backoff_initial_s=0.001)
    return Claims(tasks, CLAIMS, window_s=40, clock=lambda: now)


STATE = TaskState(TASK, dispatch_count=3)


def test_the_happy_path_reads_one_marker_and_writes_two():
    fake = FakeQueue()
    granted = register(fake).claim(FAILURE, fix="none", owner="msg:1", reread=lambda: STATE)
    assert isinstance(granted, Grant) and granted.rung == 1
    assert [c for c, _ in fake.calls] == ["get", "create", "create"]


def test_a_second_owner_stands_aside_and_the_owner_waits():
    fake = FakeQueue()
    register(fake).claim(FAILURE, fix="none", owner="msg:1", reread=lambda: STATE)
    other = register(fake).claim(FAILURE, fix="none", owner="msg:2", reread=lambda: STATE)
    assert isinstance(other, Refusal) and other.outcome is Outcome.SKIPPED_DUPLICATE
    again = register(fake).claim(FAILURE, fix="none", owner="msg:1", reread=lambda: STATE)
    assert isinstance(again, Refusal) and again.outcome is Outcome.DEFERRED
    assert again.http_status == 503


def test_an_ended_attempt_frees_the_next_rung_at_once():
    fake = FakeQueue()
    claims = register(fake)
    first = claims.claim(FAILURE, fix="none", owner="msg:1", reread=lambda: STATE)
    assert isinstance(first, Grant)
    claims.end(first, "RESOURCE_EXHAUSTED")
    second = claims.claim(FAILURE, fix="none", owner="msg:1", reread=lambda: STATE)
    assert isinstance(second, Grant) and second.rung == 2


def test_an_old_rung_is_passed_only_when_the_task_shows_no_dispatch():
    fake = FakeQueue()
    register(fake).claim(FAILURE, fix="none", owner="msg:1", reread=lambda: STATE)
    later = register(fake, NOW + timedelta(seconds=41))
    moved = TaskState(TASK, dispatch_count=4)
    dispatched = later.claim(FAILURE, fix="none", owner="msg:2", reread=lambda: moved)
    assert isinstance(dispatched, Refusal)
    assert dispatched.outcome is Outcome.SKIPPED_ALREADY_RETRIED
    passed = later.claim(FAILURE, fix="none", owner="msg:2", reread=lambda: STATE)
    assert isinstance(passed, Grant) and passed.rung == 2


def test_a_later_failure_under_the_same_fix_is_not_forced_again():
    fake = FakeQueue()
    register(fake).claim(FAILURE, fix="revision:r2", owner="msg:1", reread=lambda: STATE)
    later = FailureKey(TASK, 4)
    refused = register(fake).claim(later, fix="revision:r2", owner="msg:9", reread=lambda: STATE)
    assert isinstance(refused, Refusal) and refused.outcome is Outcome.SKIPPED_FIX_INEFFECTIVE
    other_fix = register(fake).claim(later, fix="revision:r3", owner="msg:9", reread=lambda: STATE)
    assert isinstance(other_fix, Grant)


def test_checkpoints_are_found_by_doubling_and_halving():
    fake = FakeQueue()
    claims = register(fake)
    assert claims.resume_point("deploy:1", TASK.queue_name) is None
    for page in range(1, 12):
        claims.checkpoint(Checkpoint("deploy:1", TASK.queue_name, page, f"t{page}", NOW))
    fake.calls.clear()
    found = claims.resume_point("deploy:1", TASK.queue_name)
    assert found is not None and (found.page, found.next_token) == (11, "t11")
    assert len(fake.calls) <= 8  # 1, 2, 4, 8, 16, then halving: not one read per page
