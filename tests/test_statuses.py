"""Select by the error that was fixed: the status list (core.statuses), the selection verdict
OTHER_STATUS, where a sweep's list comes from (the deploy message, else REDRIVE_SWEEP_STATUSES),
and the refusals of bad lists — all pure, by tables. Through the real servers:
tests/integration/test_status_selection.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from redrive.core.config import ConfigError, Settings
from redrive.core.decide import SignalRef
from redrive.core.names import TaskName
from redrive.core.selection import Pick, plan_for, select
from redrive.core.signals import Deploy, Invalid, Message, QueueAlert, parse_message
from redrive.core.state import TaskState
from redrive.core.statuses import StatusFilter, StatusFilterError, http_status, status_label

DEPLOYED = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
BEFORE = DEPLOYED - timedelta(minutes=10)
SECOND = timedelta(seconds=1)
TASK = TaskName.parse("projects/p/locations/l/queues/billing/tasks/t1")
QUEUE = TASK.queue_name
DATA = Path(__file__).parent / "data" / "signals"

CODES = {"INTERNAL": 13, "UNAVAILABLE": 14, "NOT_FOUND": 5, "UNKNOWN": 2, "DEADLINE_EXCEEDED": 4}


def failed(code: str, message: str | None) -> TaskState:
    """A task whose last attempt (before the deploy) failed with `code` and `message`."""
    return TaskState(
        TASK,
        dispatch_count=1,
        response_count=1,
        last_dispatch_time=BEFORE,
        last_response_time=BEFORE + timedelta(seconds=1),
        last_status_code=CODES[code],
        last_status_message=message,
    )


HTTP_500 = failed("INTERNAL", "HTTP status code 500")
HTTP_502 = failed("INTERNAL", "HTTP status code 502")
HTTP_503 = failed("UNAVAILABLE", "HTTP status code 503")
HTTP_404 = failed("NOT_FOUND", "HTTP status code 404")
UNREACHABLE = failed("UNKNOWN", "Failed to dispatch to <url>: ConnectionRefusedError")
DEADLINE = failed("DEADLINE_EXCEEDED", None)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("500", "500"),
        ("500,503,5xx,UNAVAILABLE", "500,503,5xx,UNAVAILABLE"),
        (" 503 , 500 ,, ", "500,503"),  # spaces and empty items
        ("5XX,4xx", "4xx,5xx"),
        ("unavailable,Internal", "INTERNAL,UNAVAILABLE"),
        (["500", "UNAVAILABLE,5xx"], "500,5xx,UNAVAILABLE"),  # a list, items comma-separated
        ("302", "302"),
        ("599", "599"),
        ("any", "any"),
        ("ANY", "any"),
    ],
)
def test_parse(raw, canonical):
    assert str(StatusFilter.parse(raw)) == canonical


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "names no status"),
        (" , ", "names no status"),
        ([], "names no status"),
        ("200", "'200' is not a failed HTTP status"),
        ("600", "'600' is not a failed HTTP status"),
        ("50", "'50' is not an HTTP status (500), an HTTP class (5xx) or a google.rpc code"),
        ("6xx", "'6xx' is not an HTTP status"),
        ("5x", "'5x' is not"),
        ("OK", "'OK' is not"),  # OK is not a failure
        ("SERVER_ERROR", "'SERVER_ERROR' is not"),
        ("500;503", "'500;503' is not"),
        ("any,500", "`any` stands alone"),
        (",".join(["500"] * 65), "more than 64"),
        ("x" * 100, "'" + "x" * 40 + "...'"),  # the item is shown, bounded
    ],
)
def test_bad_lists_are_refused_naming_the_item(raw, needle):
    with pytest.raises(StatusFilterError) as caught:
        StatusFilter.parse(raw, "--status")
    assert str(caught.value).startswith("--status") and needle in str(caught.value)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (HTTP_500, 500),
        (HTTP_502, 502),
        (HTTP_503, 503),
        (failed("INTERNAL", "http 500"), 500),
        (failed("INTERNAL", "HTTP: 500 Internal Server Error"), 500),
        (UNREACHABLE, None),  # no HTTP answer
        (DEADLINE, None),
        (failed("INTERNAL", "error 500"), None),  # a number that is not said to be HTTP's
        (replace(HTTP_500, last_status_code=0), None),  # the last attempt succeeded
    ],
)
def test_http_status_is_read_from_the_status_message(state, status):
    assert http_status(state) == status


@pytest.mark.parametrize(
    ("state", "label"),
    [
        (HTTP_502, "INTERNAL (HTTP 502)"),
        (HTTP_503, "UNAVAILABLE (HTTP 503)"),
        (UNREACHABLE, "UNKNOWN"),
        (DEADLINE, "DEADLINE_EXCEEDED"),
    ],
)
def test_status_label(state, label):
    assert status_label(state) == label


MATCHES = [
    # filter, task, matches?
    ("500", HTTP_500, True),
    ("500", HTTP_502, False),  # the same code name (INTERNAL), another HTTP status
    ("5xx", HTTP_502, True),
    ("5xx", HTTP_503, True),
    ("5xx", HTTP_404, False),
    ("4xx", HTTP_404, True),
    ("404", HTTP_404, True),
    ("UNAVAILABLE", HTTP_503, True),
    ("UNAVAILABLE", HTTP_500, False),
    ("INTERNAL", HTTP_502, True),
    ("5xx", UNREACHABLE, False),  # no HTTP answer: only its code name selects it
    ("UNKNOWN", UNREACHABLE, True),
    ("5xx", DEADLINE, False),
    ("DEADLINE_EXCEEDED,5xx", DEADLINE, True),
    ("500,503,5xx,UNAVAILABLE", HTTP_404, False),
    ("any", HTTP_404, True),
    ("any", UNREACHABLE, True),
]


@pytest.mark.parametrize(("raw", "state", "expected"), MATCHES)
def test_matches(raw, state, expected):
    assert StatusFilter.parse(raw).matches(state) is expected


@pytest.mark.parametrize(
    ("state", "deployed_at", "statuses", "expected"),
    [
        (HTTP_500, DEPLOYED, None, Pick.SELECTED),
        (HTTP_404, DEPLOYED, None, Pick.SELECTED),  # no filter: every failure
        (HTTP_500, DEPLOYED, "5xx", Pick.SELECTED),
        (HTTP_404, DEPLOYED, "5xx", Pick.OTHER_STATUS),
        (HTTP_404, None, "5xx", Pick.OTHER_STATUS),  # a queue alert takes the filter too
        (HTTP_503, None, "5xx", Pick.SELECTED),
        (HTTP_404, DEPLOYED, "any", Pick.SELECTED),
        # The other verdicts come first: OTHER_STATUS counts only tasks the filter left alone.
        (replace(HTTP_404, last_dispatch_time=DEPLOYED, last_response_time=DEPLOYED + SECOND),
         DEPLOYED, "5xx", Pick.AFTER_DEPLOY),
        (replace(HTTP_404, last_response_time=None, last_status_code=None), DEPLOYED, "5xx",
         Pick.IN_FLIGHT),
        (replace(HTTP_404, last_status_code=0), DEPLOYED, "5xx", Pick.LAST_OK),
        (replace(HTTP_404, last_dispatch_time=None, last_response_time=None), DEPLOYED, "5xx",
         Pick.NO_ATTEMPT_TIME),
    ],
)  # fmt: skip
def test_select_by_status(state, deployed_at, statuses, expected):
    chosen = StatusFilter.parse(statuses) if statuses else None
    assert select(state, deployed_at, chosen) is expected


# --- where a sweep's list comes from --------------------------------------------------------


def settings(**env: str) -> Settings:
    return Settings.from_env({"REDRIVE_ALLOWED_QUEUES": str(QUEUE), **env})


REF = SignalRef("deploy", "plain", "m-1")


@pytest.mark.parametrize(
    ("signal_statuses", "env", "expected"),
    [
        (None, {}, None),
        (None, {"REDRIVE_SWEEP_STATUSES": "5xx"}, "5xx"),
        ("500,UNAVAILABLE", {}, "500,UNAVAILABLE"),
        ("500", {"REDRIVE_SWEEP_STATUSES": "5xx"}, "500"),  # the message wins
        ("any", {"REDRIVE_SWEEP_STATUSES": "5xx"}, "any"),  # ...even to take every failure
    ],
)
def test_the_deploys_statuses_win_over_the_default(signal_statuses, env, expected):
    own = StatusFilter.parse(signal_statuses) if signal_statuses else None
    deploy = Deploy(DEPLOYED, "plain", queues=(QUEUE,), statuses=own)
    plan = plan_for(deploy, REF, settings(**env))
    assert (str(plan.statuses) if plan.statuses else None) == expected


def test_a_queue_alert_sweeps_with_the_default():
    alert = QueueAlert(QUEUE, DEPLOYED, "alert")
    plan = plan_for(alert, REF, settings(REDRIVE_SWEEP_STATUSES="503,UNAVAILABLE"))
    assert str(plan.statuses) == "503,UNAVAILABLE"
    assert plan_for(alert, REF, settings()).statuses is None


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("5xx,teapot", "REDRIVE_SWEEP_STATUSES: 'teapot' is not"),
        ("200", "REDRIVE_SWEEP_STATUSES: '200' is not a failed HTTP status"),
        (",", "REDRIVE_SWEEP_STATUSES names no status"),
    ],
)
def test_a_bad_default_stops_the_instance_naming_the_variable(value, needle):
    with pytest.raises(ConfigError) as caught:
        settings(REDRIVE_SWEEP_STATUSES=value)
    assert needle in str(caught.value)


def test_the_default_is_read_and_unset_means_every_failure():
    assert str(settings(REDRIVE_SWEEP_STATUSES="UNAVAILABLE, 5xx").sweep_statuses) == (
        "5xx,UNAVAILABLE"
    )
    assert settings().sweep_statuses is None


# --- the deploy message's field ---------------------------------------------------------------


def message(deployed: object) -> Message:
    return Message(json.dumps({"deployed": deployed}).encode(), {}, "1", DEPLOYED)


def test_the_plain_deploy_message_carries_its_statuses():
    spec = json.loads((DATA / "deploy_plain_statuses.json").read_text())
    parsed = parse_message(message(spec["data"]["deployed"]), now=DEPLOYED + timedelta(hours=3))
    (deploy,) = parsed.signals
    assert isinstance(deploy, Deploy) and str(deploy.statuses) == "500,503,5xx,UNAVAILABLE"
    listed = parse_message(message({"service": "billing", "statuses": ["503", "UNAVAILABLE"]}))
    assert str(listed.signals[0].statuses) == "503,UNAVAILABLE"  # type: ignore[union-attr]
    plain = parse_message(message({"service": "billing"}))
    assert plain.signals[0].statuses is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("statuses", "needle"),
    [
        ("5xx,teapot", "deployed.statuses: 'teapot' is not an HTTP status"),
        ("", "deployed.statuses names no status"),
        (500, "deployed.statuses must be a string or an array of strings, got number"),
        (["500", 503], "deployed.statuses must be a string or an array of strings"),
        ({"http": 500}, "got object"),
    ],
)
def test_a_bad_statuses_field_makes_the_deploy_invalid(statuses, needle):
    parsed = parse_message(message({"service": "billing", "statuses": statuses}))
    (signal,) = parsed.signals
    assert isinstance(signal, Invalid) and needle in signal.reason
