# mypy: disable-error-code="no-untyped-call"
"""Redrive job payloads and deterministic job names."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redrive.core.decide import Failure, FixEvidence, SignalRef
from redrive.core.errors import InvalidJobError
from redrive.core.jobs import MAX_JOB_BYTES, Job, job_id, job_name, job_task
from redrive.core.names import TASK_ID_RE, QueueName, TaskName

TASK = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-441")
REDRIVE = QueueName.parse("projects/acme/locations/europe-west1/queues/redrive")
SEEN = datetime(2026, 11, 29, 8, 15, 2, 314000, tzinfo=UTC)
JOB = Job(TASK, SEEN, 3, SignalRef("dead-letter", "dead-letter", "9117", SEEN))


def test_job_round_trips():
    assert Job.parse(JOB.to_json()) == JOB
    no_ids = Job(TASK, SEEN, 0, SignalRef("task-log", "task-log", None, None))
    assert Job.parse(no_ids.to_json()) == no_ids


def test_job_failure_carries_the_count():
    failure = JOB.failure()
    assert failure == Failure(TASK, SEEN, JOB.signal, 3)
    assert Job.for_failure(failure, 3) == JOB


def test_job_id_is_deterministic_and_distinct():
    assert job_id(TASK, 3) == job_id(TASK, 3)
    assert job_id(TASK, 3) != job_id(TASK, 4)
    assert job_id(TASK, 3) != job_id(TASK, 3, salt="deploy-r2")
    other = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-442")
    assert job_id(TASK, 3) != job_id(other, 3)
    assert "billing-inv-441-d3" in job_id(TASK, 3)


@given(
    task_id=st.from_regex(re.compile(TASK_ID_RE), fullmatch=True),
    count=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_job_id_always_fits_the_task_id_grammar(task_id, count):
    task = TaskName.parse(f"projects/p/locations/l/queues/{'q' * 100}/tasks/{task_id}")
    name = job_name(REDRIVE, task, count)
    parsed = TaskName.parse(name)  # the whole job name is a valid task name
    assert parsed.queue_name == REDRIVE
    assert len(parsed.task) <= 500


def test_job_task_request_has_oidc_only_with_a_service_account():
    spec = job_task(
        JOB, REDRIVE, "https://run-job.example/", "redrive@acme.iam.gserviceaccount.com"
    )
    task = spec.request_task()
    assert task["name"] == f"{REDRIVE}/tasks/{job_id(TASK, 3)}"
    assert task["http_request"]["oidc_token"] == {
        "service_account_email": "redrive@acme.iam.gserviceaccount.com",
        "audience": "https://run-job.example/",
    }
    assert json.loads(task["http_request"]["body"]) == JOB.to_dict()
    assert (
        "oidc_token" not in job_task(JOB, REDRIVE, "http://x/", None).request_task()["http_request"]
    )


def _mutate(**changes):
    data = JOB.to_dict()
    for key, value in changes.items():
        if value is KeyError:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"projects/acme/locations/europe-west1/queues/billing/tasks/inv-441"',
        _mutate(v=2),
        _mutate(task="projects/acme/locations/europe-west1/queues/billing/tasks/bad name"),
        _mutate(task=7),
        _mutate(dispatch_count=-1),
        _mutate(dispatch_count="3"),
        _mutate(dispatch_count=True),
        _mutate(dispatch_count=2**31),
        _mutate(seen_at="yesterday"),
        _mutate(seen_at=None),
        _mutate(signal={"kind": "x"}),
        _mutate(signal=None),
        _mutate(extra=1),
        _mutate(task=KeyError),
        b"[" * 100_000,
        b" " * (MAX_JOB_BYTES + 1),
    ],
)
def test_invalid_job_bodies_are_refused(body):
    with pytest.raises(InvalidJobError):
        Job.parse(body)


def test_job_carries_fix_evidence_when_it_has_some():
    live = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    evidence = FixEvidence("deploy-signal", live, "billing", None)
    carried = Job.parse(Job.for_failure(JOB.failure(), 3, evidence).to_json()).fix
    assert carried is not None
    assert (carried.strategy, carried.live_since, carried.service) == (
        "deploy-signal",
        live,
        "billing",
    )
    assert carried.covers(datetime(2026, 11, 29, 8, 59, tzinfo=UTC))
    none = Job.parse(Job.for_failure(JOB.failure(), 3, FixEvidence("none")).to_json()).fix
    assert none is not None and none.strategy == "none" and none.covers(None)
    assert "fix" not in JOB.to_dict()  # jobs without evidence stay as before


@pytest.mark.parametrize(
    "fix",
    [
        None,
        [],
        {"strategy": "revision"},
        {"strategy": "", "live_since": None, "service": None, "revision": None},
        {"strategy": "revision", "live_since": None, "service": None, "revision": None},
        {"strategy": "revision", "live_since": "soon", "service": None, "revision": None},
        {
            "strategy": "static",
            "live_since": "2026-11-29T09:00:00Z",
            "service": 7,
            "revision": None,
        },
    ],
)
def test_invalid_fix_evidence_is_refused(fix):
    with pytest.raises(InvalidJobError):
        Job.parse(_mutate(fix=fix))
