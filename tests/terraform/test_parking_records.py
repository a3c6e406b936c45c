"""Parking's metrics and alerts, evaluated on real lines written by the code.

`redrive.entry.handle_signal` runs in process against the project's Cloud Tasks emulator with a
parking queue whose task retention is ten days: a patrol parks a task that is about to use its last
attempt while the parking queue is still RUNNING, a second patrol runs once it is paused, and a
deploy restores the task. The filters, value extractors and label extractors the module plans
(module-everything) are evaluated on the LogEntry Cloud Logging makes of each line.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tfstandin.check import check

from redrive import entry
from redrive.adapters.cloudtasks import QUEUE_STATES
from redrive.adapters.log import OutcomeLog
from redrive.core.config import Settings
from redrive.core.outcomes import Outcome
from redrive.runtime import Runtime
from tests.integration.helpers import PARENT, Stack
from tests.integration.test_parking import LONG_AGO, deploy, failing_twice, make_queue
from tests.terraform.conftest import FIXTURES, MODULE
from tests.terraform.logfilter import extract, matches, parse
from tests.terraform.test_outcome_metric import cloud_event, log_entry

SERVICE = "rd-signal"  # handle_signal of module-everything (name_prefix rd)
TEN_DAYS = "864000s"  # the shortest task_ttl Cloud Tasks takes


@pytest.fixture(scope="module")
def planned(terraform: str) -> dict[str, dict[str, Any]]:
    result = check(MODULE, var_files=[FIXTURES / "module-everything.tfvars"], terraform=terraform)
    assert result.ok, result.output[-3000:]
    return result.planned_resources()


@pytest.fixture(scope="module")
def lines() -> Iterator[list[dict[str, Any]]]:
    stack = Stack()
    try:
        origin = make_queue(stack, "rec-origin")  # max_attempts 3
        parking = f"{PARENT}/queues/rec-parking"
        stack.client.create_queue(
            request={
                "parent": PARENT,
                "queue": {
                    "name": parking,
                    "task_ttl": TEN_DAYS,
                    "retry_config": {"max_attempts": -1},
                },
            }
        )
        task, _ = failing_twice(stack, origin, "rec")
        stream = io.StringIO()

        def runtime(warn_s: str) -> Runtime:
            env = {
                **stack.emu.env(),
                "REDRIVE_ALLOWED_QUEUES": origin,
                "REDRIVE_CLAIMS_QUEUE": stack.claims(),
                "REDRIVE_PARKING_QUEUE": parking,
                "REDRIVE_FIX_CHECK": "static",
                "REDRIVE_FIX_DEPLOYED_AT": LONG_AGO,
                "REDRIVE_MAX_SIGNAL_AGE": "3650d",
                "REDRIVE_RETRY_DEADLINE_S": "2",
                "REDRIVE_PARKED_WARN_S": warn_s,
            }
            return Runtime(Settings.from_env(env), log=OutcomeLog(stream))

        # 11 days: the parked copy, 10 days from the retention limit, is expiring.
        rt = runtime("950400")
        rt.announce()
        entry.handle_signal(cloud_event(b'{"patrol": {}}', "patrol-running"), rt)
        stack.client.pause_queue(request={"name": parking})
        # A day: the same copy is not expiring yet (the counts of the two metrics differ).
        rt = runtime("86400")
        entry.handle_signal(cloud_event(b'{"patrol": {}}', "patrol-paused"), rt)
        try:
            entry.handle_signal(cloud_event(deploy(origin), "deploy"), rt)
        finally:
            found = [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
        assert stack.get(task) is None  # parked, then restored under another name
        yield found
    finally:
        stack.stop()


def patrols(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in lines if x.get("event") == "redrive.sweep" and x["purpose"] == "patrol"]


def test_the_lines_hold_a_park_a_restore_and_two_censuses(lines: list[dict[str, Any]]) -> None:
    outcomes = [x["outcome"] for x in lines if x.get("event") == "redrive.outcome"]
    assert outcomes.count("PARKED") == 1 and outcomes.count("RESTORED") == 1, outcomes
    first, second = patrols(lines)
    assert first["parking"]["state"] == "RUNNING" and second["parking"]["state"] == "PAUSED"
    assert [p["parking"]["parked"] for p in (first, second)] == [1, 1]
    assert [p["parking"]["expiring"] for p in (first, second)] == [1, 0]
    assert any(x.get("event") == "redrive.sweep" and x["purpose"] != "patrol" for x in lines)


def test_the_census_metrics_take_one_value_from_each_patrol_line(
    lines: list[dict[str, Any]], planned: dict[str, dict[str, Any]]
) -> None:
    entries = [log_entry(x, SERVICE) for x in lines]
    for key, field in (("parked", "parked"), ("parked_expiring", "expiring")):
        metric = planned[f'google_logging_metric.parking["{key}"]']
        assert metric["name"] == f"rd/{key}"
        (descriptor,) = metric["metric_descriptor"]
        assert (descriptor["metric_kind"], descriptor["value_type"]) == ("DELTA", "DISTRIBUTION")
        parse(metric["filter"])  # inside the evaluator's subset
        counted = [e for e in entries if matches(metric["filter"], e)]
        ids = [e["jsonPayload"]["signal"]["message_id"] for e in counted]
        assert ids == ["patrol-running", "patrol-paused"]
        values = [extract(metric["value_extractor"], e) for e in counted]
        assert [float(v or "nan") for v in values] == [
            float(p["parking"][field]) for p in patrols(lines)
        ]
        # Another service's lines (the target's own, say) are not counted.
        assert not matches(metric["filter"], log_entry(patrols(lines)[0], "billing"))


def test_a_patrol_cut_short_before_its_census_ends_is_not_a_count(
    lines: list[dict[str, Any]], planned: dict[str, dict[str, Any]]
) -> None:
    line = dict(patrols(lines)[0])
    line["parking"] = {k: v for k, v in line["parking"].items() if k != "expiring"}
    for key in ("parked", "parked_expiring"):
        metric = planned[f'google_logging_metric.parking["{key}"]']
        assert not matches(metric["filter"], log_entry(line, SERVICE))


def test_the_not_paused_alert_matches_the_patrol_that_found_the_queue_running(
    lines: list[dict[str, Any]], planned: dict[str, dict[str, Any]]
) -> None:
    policy = planned["google_monitoring_alert_policy.parking_not_paused[0]"]
    (condition,) = policy["conditions"][0]["condition_matched_log"]
    entries = [log_entry(x, SERVICE) for x in lines]
    found = [e for e in entries if matches(condition["filter"], e)]
    (running,) = found
    assert running["jsonPayload"]["parking"]["state"] == "RUNNING"
    assert extract(condition["label_extractors"]["state"], running) == "RUNNING"
    queue = extract(condition["label_extractors"]["queue"], running)
    assert queue == running["jsonPayload"]["parking"]["queue"]
    assert policy["severity"] == "ERROR" and policy["alert_strategy"][0]["notification_rate_limit"]
    # Every state but PAUSED alerts; a patrol that could not read the queue has no state.
    for state in QUEUE_STATES.values():
        line = json.loads(json.dumps(running["jsonPayload"]))
        line["parking"]["state"] = state
        assert matches(condition["filter"], log_entry(line, SERVICE)) is (state != "PAUSED")
    del line["parking"]["state"]
    assert not matches(condition["filter"], log_entry(line, SERVICE))


def test_parked_and_restored_decisions_reach_the_outcome_metric_the_alert_reads(
    lines: list[dict[str, Any]], planned: dict[str, dict[str, Any]]
) -> None:
    metric = planned["google_logging_metric.outcomes[0]"]
    decisions = [
        log_entry(x, SERVICE)
        for x in lines
        if x.get("event") == "redrive.outcome" and x["outcome"] in ("PARKED", "RESTORED")
    ]
    assert all(matches(metric["filter"], e) for e in decisions)
    labels = {extract(metric["label_extractors"]["outcome"], e) for e in decisions}
    assert labels == {Outcome.PARKED.value, Outcome.RESTORED.value}
    policy = planned["google_monitoring_alert_policy.parked[0]"]
    (threshold,) = policy["conditions"][0]["condition_threshold"]
    assert 'metric.labels.outcome="PARKED"' in threshold["filter"]
    assert threshold["threshold_value"] == 0  # any PARKED decision, by default
    expiring = planned["google_monitoring_alert_policy.parked_expiring[0]"]
    (threshold,) = expiring["conditions"][0]["condition_threshold"]
    assert "logging.googleapis.com/user/rd/parked_expiring" in threshold["filter"]
    (aggregation,) = threshold["aggregations"]
    # The distribution's exact mean: above 0 exactly when some patrol counted an expiring copy.
    assert (aggregation["per_series_aligner"], aggregation["cross_series_reducer"]) == (
        "ALIGN_DELTA",
        "REDUCE_MEAN",
    )


def test_census_filters_match_no_decision_and_no_deploy_sweep(
    lines: list[dict[str, Any]], planned: dict[str, dict[str, Any]]
) -> None:
    others = [
        log_entry(x, SERVICE)
        for x in lines
        if not (x.get("event") == "redrive.sweep" and x["purpose"] == "patrol")
    ]
    assert len(others) >= 4
    filters = [
        planned[f'google_logging_metric.parking["{k}"]']["filter"]
        for k in ("parked", "parked_expiring")
    ]
    policy = planned["google_monitoring_alert_policy.parking_not_paused[0]"]
    filters.append(policy["conditions"][0]["condition_matched_log"][0]["filter"])
    for text in filters:
        assert not [e for e in others if matches(text, e)]
