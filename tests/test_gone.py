# mypy: disable-error-code="no-untyped-call"
"""NOT_FOUND that says which: the pure classification of Cloud Tasks' answers, the reasons and
the outcome record's `not_found`, by tables; the adapter against a fake client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions as gexc

from redrive.core import errors
from redrive.core.config import QueueAllowlist, Settings
from redrive.core.decide import Failure, Policy, SignalRef, decide, for_error
from redrive.core.gone import Gone, classify_not_found, not_found_reason
from redrive.core.names import TaskName
from redrive.core.outcomes import Outcome
from redrive.core.records import Result, result_record
from redrive.core.state import TaskState
from tests.test_tasks_adapter import FakeTasks, adapter, proto_task

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
TASK = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-441")
POLICY = Policy(
    QueueAllowlist.parse("projects/acme/locations/europe-west1/queues/billing"), 3600, False
)
FAILURE = Failure(TASK, NOW - timedelta(minutes=1), SignalRef("dead-letter", "dead-letter"))

RECENT_TEXT = (
    "The task no longer exists, though a task with this name existed recently. The task either "
    "successfully completed or was deleted."
)
NEVER_TEXT = "Requested entity was not found."
QUEUE_TEXT = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the queue "
    "to initialize."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RECENT_TEXT, Gone.EXISTED_RECENTLY),
        (f"NOT_FOUND: {RECENT_TEXT}", Gone.EXISTED_RECENTLY),  # as redrive's translation says it
        (RECENT_TEXT.upper(), Gone.EXISTED_RECENTLY),
        (NEVER_TEXT, Gone.NEVER_OR_LONG_AGO),
        (f"NOT_FOUND: {NEVER_TEXT}", Gone.NEVER_OR_LONG_AGO),
        (QUEUE_TEXT, Gone.QUEUE_MISSING),
        (f"NOT_FOUND: {QUEUE_TEXT}", Gone.QUEUE_MISSING),
        # A text nobody knows: never "completed" on a guess.
        ("", Gone.NEVER_OR_LONG_AGO),
        ("NotFound: gone", Gone.NEVER_OR_LONG_AGO),
        # The adapter's own words after a RunTask that timed out and a task that is gone.
        (
            "RunTask failed (DeadlineExceeded) and the task is gone (it existed recently): it was "
            "probably dispatched and completed",
            Gone.EXISTED_RECENTLY,
        ),
    ],
    ids=[
        "recent",
        "recent-translated",
        "recent-any-case",
        "never",
        "never-translated",
        "queue",
        "queue-translated",
        "empty",
        "unknown-text",
        "runtask-timeout-recent",
    ],
)
def test_classify_not_found(text, expected):
    assert classify_not_found(text) is expected


@pytest.mark.parametrize(
    ("gone", "says", "never_says"),
    [
        (Gone.EXISTED_RECENTLY, "existed recently", "check the name"),
        (Gone.NEVER_OR_LONG_AGO, "check the name", "completed"),
        (Gone.QUEUE_MISSING, "queue does not exist", "completed"),
        (None, "no longer exists", "check the name"),
    ],
)
def test_the_reason_says_which(gone, says, never_says):
    reason = not_found_reason(gone)
    assert says in reason and never_says not in reason
    decision = decide(FAILURE, gone, None, POLICY, NOW)
    assert decision.outcome is Outcome.NOT_FOUND and decision.final
    assert decision.reason == reason and decision.gone is gone


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"NOT_FOUND: {RECENT_TEXT}", Gone.EXISTED_RECENTLY),
        (f"NOT_FOUND: {NEVER_TEXT}", Gone.NEVER_OR_LONG_AGO),
        (f"NOT_FOUND: {QUEUE_TEXT}", Gone.QUEUE_MISSING),
    ],
)
def test_a_not_found_error_is_classified_and_keeps_the_services_words(text, gone):
    decision = for_error(errors.NotFoundError(text))
    assert decision.outcome is Outcome.NOT_FOUND and decision.gone is gone
    assert decision.reason.startswith(not_found_reason(gone)) and text in decision.reason


@pytest.mark.parametrize(
    ("gone", "field"),
    [
        (Gone.EXISTED_RECENTLY, "existed_recently"),
        (Gone.NEVER_OR_LONG_AGO, "never_or_long_ago"),
        (Gone.QUEUE_MISSING, "queue_missing"),
        (None, None),
    ],
)
def test_the_record_field(gone, field):
    result = Result.of(decide(FAILURE, gone, None, POLICY, NOW))
    line = result_record(
        result,
        failure=FAILURE,
        signal=FAILURE.signal,
        settings=Settings(),
        duration_ms=1.0,
        entry_point="handle_signal",
    )
    assert line["not_found"] == field and line["outcome"] == "NOT_FOUND"


def test_other_outcomes_have_no_not_found_field():
    line = result_record(
        Result(Outcome.DISPATCHED, "RunTask dispatched the task"),
        failure=FAILURE,
        signal=None,
        settings=Settings(),
        duration_ms=1.0,
        entry_point="handle_signal",
    )
    assert line["not_found"] is None


@pytest.mark.parametrize(
    ("text", "gone"),
    [(RECENT_TEXT, Gone.EXISTED_RECENTLY), (NEVER_TEXT, Gone.NEVER_OR_LONG_AGO)],
)
def test_the_adapter_tells_which_from_the_services_answer(text, gone):
    fake = FakeTasks(get_task=[gexc.NotFound(text)])
    assert adapter(fake).lookup(TASK) is gone
    assert adapter(FakeTasks(get_task=[gexc.NotFound(text)])).get(TASK) is None
    found = adapter(FakeTasks(get_task=[proto_task()])).lookup(TASK)
    assert not isinstance(found, Gone) and found.dispatch_count == 3


def test_a_timed_out_run_whose_task_existed_recently_says_so():
    fake = FakeTasks(
        run_task=[gexc.DeadlineExceeded("slow")], get_task=[gexc.NotFound(RECENT_TEXT)]
    )
    with pytest.raises(errors.NotFoundError) as caught:
        adapter(fake).run(TASK, TaskState.from_task(proto_task(3)))
    assert classify_not_found(str(caught.value)) is Gone.EXISTED_RECENTLY
