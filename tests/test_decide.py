# mypy: disable-error-code="no-untyped-call"
"""Table tests of the pure decision core: every outcome the core can reach."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from redrive.core import errors
from redrive.core.config import QueueAllowlist
from redrive.core.decide import (
    Action,
    Failure,
    FixEvidence,
    Policy,
    RunResult,
    SignalRef,
    after_run,
    decide,
    for_error,
    screen,
)
from redrive.core.names import QueueName, TaskName
from redrive.core.outcomes import Outcome
from redrive.core.state import TaskState

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
TASK = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-441")
OTHER = TaskName.parse("projects/acme/locations/europe-west1/queues/mail/tasks/m-1")
ALLOW = QueueAllowlist.parse("projects/acme/locations/europe-west1/queues/billing")
POLICY = Policy(ALLOW, max_signal_age_s=3600, dry_run=False)
REDRIVE_Q = "projects/acme/locations/europe-west1/queues/redrive"
SIG = SignalRef("dead-letter", "dead-letter", "m1", NOW - timedelta(minutes=5))


def t(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


# The task failed its 3rd attempt 10 minutes ago, answered INTERNAL, waits for its retry.
FAILED = TaskState(
    name=TASK,
    dispatch_count=3,
    response_count=3,
    last_dispatch_time=t(10),
    last_response_time=t(9.9),
    last_status_code=13,
    schedule_time=t(-5),
)
FAILURE = Failure(TASK, seen_at=t(9), signal=SIG, dispatch_count=3)
FIX_LIVE = FixEvidence("revision", live_since=t(2), service="svc", revision="svc/revisions/r2")
FIX_OLD = FixEvidence("revision", live_since=t(60), service="svc", revision="svc/revisions/r1")

CASES = [
    # id, failure, state, evidence, policy, expected outcome (None = action expected)
    (
        "not-allowed",
        replace(FAILURE, task=OTHER),
        FAILED,
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_NOT_ALLOWED,
    ),
    (
        "nothing-allowed",
        FAILURE,
        FAILED,
        FIX_LIVE,
        replace(POLICY, allowlist=QueueAllowlist()),
        Outcome.SKIPPED_NOT_ALLOWED,
    ),
    (
        "stale",
        replace(FAILURE, seen_at=t(61)),
        FAILED,
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_STALE_SIGNAL,
    ),
    ("not-found", FAILURE, None, FIX_LIVE, POLICY, Outcome.NOT_FOUND),
    (
        # An attempt after the failure is running: the failure was retried (it is in flight).
        "in-flight-retry",
        FAILURE,
        replace(FAILED, dispatch_count=4, last_dispatch_time=t(1), last_status_code=13),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_ALREADY_RETRIED,
    ),
    (
        # The failure reported is the attempt still running: look again after it ends.
        "in-flight-same-attempt",
        replace(FAILURE, dispatch_count=4),
        replace(FAILED, dispatch_count=4, last_dispatch_time=t(1), last_status_code=13),
        FIX_LIVE,
        POLICY,
        Outcome.DEFERRED,
    ),
    (
        "in-flight-first-attempt",
        replace(FAILURE, dispatch_count=None),
        replace(
            FAILED,
            dispatch_count=1,
            response_count=0,
            last_response_time=None,
            last_status_code=None,
        ),
        FIX_LIVE,
        POLICY,
        Outcome.DEFERRED,
    ),
    (
        "own-queue",
        replace(FAILURE, task=TaskName.parse(f"{REDRIVE_Q}/tasks/job-1")),
        FAILED,
        FIX_LIVE,
        replace(
            POLICY,
            allowlist=QueueAllowlist.parse("projects/acme/locations/europe-west1/queues/*"),
            own_queues=frozenset({QueueName.parse(REDRIVE_Q)}),
        ),
        Outcome.SKIPPED_NOT_ALLOWED,
    ),
    (
        "failure-time-in-the-future",
        replace(FAILURE, seen_at=NOW + timedelta(seconds=31)),
        FAILED,
        FIX_LIVE,
        POLICY,
        Outcome.INVALID_SIGNAL,
    ),
    (
        "retry-due-within-the-margin",
        FAILURE,
        replace(FAILED, schedule_time=NOW + timedelta(seconds=59)),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_RETRY_DUE,
    ),
    (
        "retry-overdue",
        FAILURE,
        replace(FAILED, schedule_time=t(1)),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_RETRY_DUE,
    ),
    (
        "retried-by-count",
        FAILURE,
        replace(FAILED, dispatch_count=4, last_dispatch_time=t(3), last_response_time=t(2.9)),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_ALREADY_RETRIED,
    ),
    (
        "retried-by-time",
        replace(FAILURE, dispatch_count=None),
        replace(FAILED, dispatch_count=4, last_dispatch_time=t(3), last_response_time=t(2.9)),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_ALREADY_RETRIED,
    ),
    (
        "never-answered",
        replace(FAILURE, dispatch_count=0),
        replace(
            FAILED,
            dispatch_count=0,
            response_count=0,
            last_dispatch_time=None,
            last_response_time=None,
            last_status_code=None,
        ),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_NOT_FAILING,
    ),
    (
        "last-ok",
        FAILURE,
        replace(FAILED, last_status_code=0),
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_NOT_FAILING,
    ),
    ("fix-old", FAILURE, FAILED, FIX_OLD, POLICY, Outcome.SKIPPED_FIX_NOT_DEPLOYED),
    (
        "fix-unknown",
        FAILURE,
        FAILED,
        FixEvidence("revision", note="reconciling"),
        POLICY,
        Outcome.SKIPPED_FIX_NOT_DEPLOYED,
    ),
    (
        "fix-static-old",
        FAILURE,
        FAILED,
        FixEvidence("static", live_since=t(11)),
        POLICY,
        Outcome.SKIPPED_FIX_NOT_DEPLOYED,
    ),
    ("dry-run", FAILURE, FAILED, FIX_LIVE, replace(POLICY, dry_run=True), Outcome.DRY_RUN),
    (
        "dry-run-fix-none",
        FAILURE,
        FAILED,
        FixEvidence("none"),
        replace(POLICY, dry_run=True),
        Outcome.DRY_RUN,
    ),
    ("run", FAILURE, FAILED, FIX_LIVE, POLICY, None),
    ("run-static", FAILURE, FAILED, FixEvidence("static", live_since=t(1)), POLICY, None),
    ("run-unknown-count", replace(FAILURE, dispatch_count=None), FAILED, FIX_LIVE, POLICY, None),
    (
        # A failure reported a second before its own attempt's dispatch (clock skew) is that
        # attempt's failure, not an earlier one's.
        "run-failure-time-skewed-before-dispatch",
        replace(FAILURE, dispatch_count=None, seen_at=t(10) - timedelta(seconds=1)),
        FAILED,
        FIX_LIVE,
        POLICY,
        None,
    ),
    (
        "retried-beyond-the-skew",
        replace(FAILURE, dispatch_count=None, seen_at=t(10) - timedelta(seconds=31)),
        FAILED,
        FIX_LIVE,
        POLICY,
        Outcome.SKIPPED_ALREADY_RETRIED,
    ),
    (
        "run-retry-just-beyond-the-margin",
        FAILURE,
        replace(FAILED, schedule_time=NOW + timedelta(seconds=61)),
        FIX_LIVE,
        POLICY,
        None,
    ),
    (
        "deadline-no-answer-failed",
        FAILURE,
        replace(FAILED, last_response_time=None, last_status_code=4),
        FIX_LIVE,
        POLICY,
        None,
    ),
]


@pytest.mark.parametrize(
    ("failure", "state", "evidence", "policy", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_table(failure, state, evidence, policy, expected):
    decision = decide(failure, state, evidence, policy, NOW)
    if expected is None:
        assert decision.action is Action.RUN
        assert decision.outcome is None
    else:
        assert decision.final
        assert decision.outcome is expected
        assert decision.reason


def test_fix_evidence_is_asked_for_only_after_every_cheaper_guard():
    decision = decide(FAILURE, FAILED, None, POLICY, NOW)
    assert decision.action is Action.CHECK_FIX
    # A guard that fails never asks for evidence.
    assert decide(FAILURE, None, None, POLICY, NOW).outcome is Outcome.NOT_FOUND


def test_in_flight_can_be_left_to_the_job():
    busy = replace(FAILED, last_dispatch_time=t(8.5), last_response_time=t(9.9))
    in_flight = decide(FAILURE, busy, FIX_LIVE, POLICY, NOW)
    assert in_flight.outcome is Outcome.DEFERRED and in_flight.http_status == 503
    queued = decide(FAILURE, busy, FixEvidence("none"), POLICY, NOW, check_in_flight=False)
    assert queued.action is Action.RUN


def test_screen_needs_no_state():
    assert screen(FAILURE, POLICY, NOW) is None
    stale = screen(replace(FAILURE, seen_at=t(120)), POLICY, NOW)
    assert stale is not None and stale.outcome is Outcome.SKIPPED_STALE_SIGNAL


def test_location_pattern_allows_every_queue_of_the_location():
    policy = replace(
        POLICY, allowlist=QueueAllowlist.parse("projects/acme/locations/europe-west1/queues/*")
    )
    assert screen(replace(FAILURE, task=OTHER), policy, NOW) is None


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (RunResult(True, FAILED), Outcome.DISPATCHED),
        (RunResult(True, FAILED, confirmed_by="GetTask", attempts=2), Outcome.DISPATCHED),
        (RunResult(False), Outcome.NOT_FOUND),
    ],
)
def test_after_run(run, expected):
    assert after_run(run).outcome is expected


@pytest.mark.parametrize(
    ("error", "outcome", "status"),
    [
        (errors.QuotaExceededError("RESOURCE_EXHAUSTED"), Outcome.FAILED, 429),
        (errors.TransientError("UNAVAILABLE"), Outcome.FAILED, 503),
        (errors.PermissionDeniedError("PERMISSION_DENIED"), Outcome.PERMISSION_DENIED, 200),
        (errors.NotFoundError("NOT_FOUND"), Outcome.NOT_FOUND, 200),
        (errors.InvalidRequestError("FAILED_PRECONDITION"), Outcome.INVALID_SIGNAL, 200),
    ],
)
def test_errors_map_to_outcomes_and_statuses(error, outcome, status):
    decision = for_error(error)
    assert decision.outcome is outcome
    assert decision.http_status == status
    assert decision.outcome.redeliver == (status != 200)


def test_fix_evidence_without_attempt_time_does_not_cover():
    assert not FIX_LIVE.covers(None)
    assert FixEvidence("none").covers(None)


def test_a_missing_permission_on_a_young_instance_is_delivered_again():
    err = errors.PermissionDeniedError("PERMISSION_DENIED: cloudtasks.tasks.get")
    young = for_error(err, permission_grace=True)
    assert young.outcome is Outcome.FAILED and young.http_status == 503
    assert "propagating" in young.reason
    assert for_error(err).outcome is Outcome.PERMISSION_DENIED
