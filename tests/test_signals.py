"""Table tests of the signal parser over the fixtures in tests/data/signals/."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from redrive.core.names import QueueName, TaskName
from redrive.core.signals import (
    Deploy,
    Ignored,
    Invalid,
    Message,
    Parsed,
    QueueAlert,
    SignalError,
    TaskFailure,
    message_from_event,
    parse_message,
)
from redrive.core.statuses import StatusFilter

DATA = Path(__file__).parent / "data" / "signals"
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
BILLING = "projects/acme-prod/locations/europe-west1/queues/billing"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def task(name: str) -> TaskName:
    return TaskName.parse(name)


def fixture_message(name: str) -> Message:
    """A fixture file holds the decoded payload (`data` as JSON or `data_text`) and attributes."""
    spec = json.loads((DATA / name).read_text())
    text = spec["data_text"] if "data_text" in spec else json.dumps(spec["data"])
    data = text.encode()
    published = spec.get("publish_time")
    return Message(
        data=data,
        attributes=spec.get("attributes", {}),
        message_id=spec.get("message_id", "4471902635"),
        publish_time=t(published) if published else None,
    )


def parse_fixture(name: str) -> Parsed:
    return parse_message(fixture_message(name), now=NOW)


def msg(
    data: bytes | str, attributes: dict[str, str] | None = None, published: str | None = None
) -> Message:
    raw = data.encode() if isinstance(data, str) else data
    return Message(
        data=raw,
        attributes=attributes or {},
        message_id="1",
        publish_time=t(published) if published else None,
    )


def only(parsed: Parsed) -> Any:
    assert len(parsed.signals) == 1, parsed
    return parsed.signals[0]


# --- dead-letter -------------------------------------------------------------------------------

DLQ_FORWARD_META = {
    "CloudPubSubDeadLetterSourceSubscription": "billing-worker",
    "CloudPubSubDeadLetterSourceSubscriptionProject": "acme-prod",
    "CloudPubSubDeadLetterSourceDeliveryCount": "5",
    "CloudPubSubDeadLetterSourceTopicPublishTime": "2026-11-29T07:58:12.004Z",
}

DEAD_LETTER_TABLE = [
    (
        "dead_letter_object.json",
        Parsed(
            "dead-letter",
            (
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-441"),
                    t("2026-11-29T08:15:02.314Z"),
                    "dead-letter",
                    dispatch_count=3,
                    status="INTERNAL",
                ),
            ),
            {},
        ),
    ),
    (
        "dead_letter_list.json",
        Parsed(
            "dead-letter",
            (
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-441"),
                    t("2026-11-29T08:59:41.250Z"),
                    "dead-letter",
                    status="UNAVAILABLE",
                ),
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-442"),
                    t("2026-11-29T08:59:41.250Z"),
                    "dead-letter",
                    dispatch_count=7,
                    status="DEADLINE_EXCEEDED",
                ),
                TaskFailure(
                    task(
                        "projects/acme-prod/locations/europe-west1/queues/mail-out/tasks/welcome_0193"
                    ),
                    t("2026-11-29T08:59:41.250Z"),
                    "dead-letter",
                    status="UNAVAILABLE",
                ),
            ),
            {},
        ),
    ),
    (
        "dead_letter_bare.json",
        Parsed(
            "dead-letter",
            (
                TaskFailure(
                    task(
                        "projects/acme-prod/locations/us-central1/queues/exports/tasks/7c1e5b2a9d"
                    ),
                    t("2026-11-29T08:20:00.5Z"),
                    "dead-letter",
                ),
            ),
            {},
        ),
    ),
    (
        "dead_letter_attribute.json",
        Parsed(
            "dead-letter",
            (
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-443"), t("2026-11-29T08:21:09Z"), "dead-letter"
                ),
            ),
            {},
        ),
    ),
    (
        # The worker's own payload names nothing; the task attribute does; seen_at is the
        # original publish time kept by the dead-letter topic, not the re-publish time.
        "dead_letter_forwarded.json",
        Parsed(
            "dead-letter",
            (
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-450"), t("2026-11-29T07:58:12.004Z"), "dead-letter"
                ),
            ),
            DLQ_FORWARD_META,
        ),
    ),
    (
        "dead_letter_task_resource.json",
        Parsed(
            "dead-letter",
            (
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-441"),
                    t("2026-11-29T08:30:00Z"),
                    "dead-letter",
                    dispatch_count=3,
                ),
            ),
            {},
        ),
    ),
]


@pytest.mark.parametrize(
    ("fixture", "expected"), DEAD_LETTER_TABLE, ids=[r[0] for r in DEAD_LETTER_TABLE]
)
def test_dead_letter_fixtures(fixture: str, expected: Parsed) -> None:
    assert parse_fixture(fixture) == expected


T441 = f"{BILLING}/tasks/inv-441"

DEAD_LETTER_EDGES: list[tuple[str, Message, str]] = [
    (
        "bad grammar in task key",
        msg(json.dumps({"task": "projects/acme prod/locations/x/queues/q/tasks/t"})),
        "not a task name",
    ),
    ("task id with a dot", msg(json.dumps({"task": T441 + ".v2"})), "not a task name"),
    ("short task name", msg(json.dumps({"task": "inv-441"})), "not a task name"),
    ("task not a string", msg(json.dumps({"task": 441})), "task name must be a string, got int"),
    ("tasks not a list", msg(json.dumps({"tasks": T441})), "'tasks' must be an array, got string"),
    ("tasks empty", msg(json.dumps({"tasks": []})), "'tasks' is empty"),
    (
        "bad dispatch count",
        msg(json.dumps({"task": T441, "dispatchCount": "three"})),
        "dispatchCount must be a non-negative integer",
    ),
    (
        "negative dispatch count",
        msg(json.dumps({"task": T441, "dispatchCount": -1})),
        "dispatchCount out of range",
    ),
    (
        "boolean dispatch count",
        msg(json.dumps({"task": T441, "dispatch_count": True})),
        "dispatch_count must be a count, got boolean",
    ),
    (
        "status not a string",
        msg(json.dumps({"task": T441, "status": 13})),
        "status must be a string, got number",
    ),
    (
        "bad failedAt",
        msg(json.dumps({"task": T441, "failedAt": "yesterday"})),
        "failedAt is not an RFC 3339 time",
    ),
    (
        "failedAt without offset",
        msg(json.dumps({"task": T441, "failed_at": "2026-11-29T08:00:00"})),
        "not an RFC 3339 time with offset",
    ),
    ("bare text not a name", msg("please retry invoice 441"), "not a task name"),
    ("bare name with trailing junk", msg(T441 + " now"), "not a task name"),
    ("bad task attribute", msg(b"", {"task": "inv-441"}), "attribute task: not a task name"),
    ("empty and no attribute", msg(b"   "), "empty message: no data and no task attribute"),
    (
        "bad DLQ publish time",
        msg(T441, {"CloudPubSubDeadLetterSourceTopicPublishTime": "soon"}),
        "CloudPubSubDeadLetterSourceTopicPublishTime",
    ),
    ("unknown object", msg(json.dumps({"invoice": 441})), "no task name, alert or deploy found"),
    ("json number", msg("441"), "not a task name"),
    ("json null", msg("null"), "not a task name"),
]


@pytest.mark.parametrize(
    ("message", "needle"),
    [(m, n) for _, m, n in DEAD_LETTER_EDGES],
    ids=[i for i, _, _ in DEAD_LETTER_EDGES],
)
def test_dead_letter_edges_are_invalid(message: Message, needle: str) -> None:
    signal = only(parse_message(message, now=NOW))
    assert isinstance(signal, Invalid)
    assert needle in signal.reason
    assert len(signal.reason) <= 300


def test_list_keeps_good_entries_and_reports_bad_ones() -> None:
    body = {
        "tasks": [
            T441,
            "projects/acme-prod/locations/europe-west1/queues/billing/tasks/bad.id",
            {"status": "X"},
            7,
        ]
    }
    parsed = parse_message(msg(json.dumps(body), published="2026-11-29T08:00:00Z"), now=NOW)
    assert parsed.kind == "dead-letter"
    good, bad_name, no_name, wrong_type = parsed.signals
    assert good == TaskFailure(task(T441), t("2026-11-29T08:00:00Z"), "dead-letter")
    assert isinstance(bad_name, Invalid) and bad_name.reason.startswith("tasks[1]: not a task name")
    assert isinstance(no_name, Invalid) and no_name.reason.startswith("tasks[2] has no task name")
    assert (
        isinstance(wrong_type, Invalid)
        and "tasks[3]: task name must be a string, got int" in wrong_type.reason
    )


def test_duplicate_entries_collapse() -> None:
    parsed = parse_message(msg(json.dumps({"tasks": [T441, T441, {"task": T441}]})), now=NOW)
    assert parsed.signals == (TaskFailure(task(T441), NOW, "dead-letter"),)


def test_json_array_and_json_string_bodies() -> None:
    other = f"{BILLING}/tasks/inv-9"
    parsed = parse_message(msg(json.dumps([T441, {"name": other, "dispatchCount": 2}])), now=NOW)
    assert parsed.signals == (
        TaskFailure(task(T441), NOW, "dead-letter"),
        TaskFailure(task(other), NOW, "dead-letter", dispatch_count=2),
    )
    assert only(parse_message(msg(json.dumps(T441)), now=NOW)) == TaskFailure(
        task(T441), NOW, "dead-letter"
    )


def test_payload_time_wins_over_publish_time_and_nanoseconds_truncate() -> None:
    body = {"task": T441, "time": "2026-11-29T08:14:58.120455999+01:00"}
    signal = only(parse_message(msg(json.dumps(body), published="2026-11-29T09:00:00Z"), now=NOW))
    assert signal.seen_at == datetime(2026, 11, 29, 7, 14, 58, 120455, tzinfo=UTC)


def test_no_publish_time_falls_back_to_now() -> None:
    assert only(parse_message(msg(T441), now=NOW)).seen_at == NOW


def test_maximum_grammar_lengths_accepted_and_one_more_refused() -> None:
    longest = f"projects/acme-prod/locations/europe-west1/queues/{'q' * 100}/tasks/{'t' * 500}"
    assert isinstance(only(parse_message(msg(longest), now=NOW)), TaskFailure)
    too_long = f"projects/acme-prod/locations/europe-west1/queues/{'q' * 101}/tasks/t"
    assert isinstance(only(parse_message(msg(too_long), now=NOW)), Invalid)


# --- generic refusals ---------------------------------------------------------------------------


def test_oversized_payload_refused_before_parsing() -> None:
    body = json.dumps({"task": T441, "pad": "x" * 2000})
    signal = only(parse_message(msg(body), max_bytes=1000, now=NOW))
    assert isinstance(signal, Invalid)
    assert "over the limit of 1000" in signal.reason


def test_not_utf8() -> None:
    signal = only(parse_message(msg(b'{"task": "\xff\xfe"}'), now=NOW))
    assert isinstance(signal, Invalid) and "not UTF-8" in signal.reason


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"task": ', "not valid JSON"),
        ('{"task": "a",}', "not valid JSON"),
        ("[" * 5000 + "]" * 5000, "nested deeper than"),
        ('{"a":' * 100 + "1" + "}" * 100, "nested deeper than"),
        ('{"task": ' + "9" * 5000 + "}", "not usable JSON"),
    ],
    ids=["truncated", "trailing comma", "deep arrays", "deep objects", "huge integer"],
)
def test_bad_json(body: str, needle: str) -> None:
    signal = only(parse_message(msg(body), now=NOW))
    assert isinstance(signal, Invalid)
    assert needle in signal.reason
    assert len(signal.reason) <= 300


def test_reason_never_dumps_the_payload() -> None:
    secret = "s3cr3t-" * 100
    signal = only(parse_message(msg(json.dumps({"task": secret})), now=NOW))
    assert isinstance(signal, Invalid)
    assert secret not in signal.reason and len(signal.reason) <= 300


# --- message_from_event -------------------------------------------------------------------------


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


EVENTARC_SUB = "projects/acme-prod/subscriptions/eventarc-europe-west1-redrive-104-sub-531"


def test_eventarc_shape() -> None:
    data = {
        "subscription": EVENTARC_SUB,
        "message": {
            "data": b64({"task": T441}),
            "attributes": {"signal": "dead-letter"},
            "messageId": "9117364208851234",
            "message_id": "9117364208851234",
            "publishTime": "2026-11-29T08:15:02.314Z",
            "publish_time": "2026-11-29T08:15:02.314Z",
        },
    }
    message = message_from_event(data, ce_id="ignored", ce_time="2020-01-01T00:00:00Z")
    assert message == Message(
        data=json.dumps({"task": T441}).encode(),
        attributes={"signal": "dead-letter"},
        message_id="9117364208851234",
        publish_time=t("2026-11-29T08:15:02.314Z"),
        subscription=EVENTARC_SUB,
    )


def test_raw_push_converted_shape() -> None:
    # What functions-framework makes of a raw push body: no subscription, snake_case gone, @type.
    data = {
        "message": {
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": b64(T441.encode()),
            "attributes": {"kind": "dead-letter"},
            "messageId": "1",
            "publishTime": "2026-11-29T01:31:55.669Z",
        }
    }
    message = message_from_event(data, ce_id="1", ce_time="2026-11-29T01:31:55.669Z")
    assert message.data == T441.encode()
    assert message.subscription is None
    assert message.message_id == "1"
    assert message.publish_time == t("2026-11-29T01:31:55.669Z")


def test_attribute_only_message_and_fallbacks() -> None:
    data = {"message": {"data": "", "attributes": {"task": T441}}}
    message = message_from_event(data, ce_id="77", ce_time="2026-11-29T10:00:00+02:00")
    assert message.data == b""
    assert message.message_id == "77"
    assert message.publish_time == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    assert only(parse_message(message, now=NOW)) == TaskFailure(
        task(T441), datetime(2026, 11, 29, 8, 0, tzinfo=UTC), "dead-letter"
    )
    without = message_from_event({"message": {"attributes": {"task": T441}}})
    assert without.data == b"" and without.message_id == "" and without.publish_time is None


def test_ce_attributes_are_overridden_by_message_attributes() -> None:
    data = {"message": {"data": "", "attributes": {"kind": "alert"}}}
    message = message_from_event(data, attributes_from_ce={"kind": "x", "extra": "1"})
    assert message.attributes == {"kind": "alert", "extra": "1"}


def test_url_safe_and_unpadded_base64_accepted() -> None:
    raw = b"\xfb\xff" + T441.encode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert message_from_event({"message": {"data": urlsafe}}).data == raw


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"message": {"data": "not base64!"}}, "not base64"),
        ({"message": {"data": "abcde"}}, "not base64: impossible length"),
        ({"message": {"data": 12}}, "message.data must be a base64 string, got number"),
        ({"message": {"data": "", "attributes": ["a"]}}, "message.attributes must be an object"),
        ({"message": {"data": "", "attributes": {"a": 1}}}, "must map strings to strings"),
        (
            {"message": {"data": "", "publishTime": "yesterday"}},
            "message.publishTime is not an RFC 3339",
        ),
        ({"message": {"data": "", "messageId": {"x": 1}}}, "message.messageId must be a string"),
        ({"message": "hello"}, "'message' must be an object"),
        ({"subscription": "s"}, "no 'message'"),
        ({"message": {"data": ""}, "subscription": 5}, "'subscription' must be a string"),
    ],
    ids=[
        "alphabet",
        "length",
        "data type",
        "attrs type",
        "attr value",
        "time",
        "id",
        "message type",
        "no message",
        "subscription",
    ],
)
def test_message_from_event_refusals(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(SignalError, match=None) as info:
        message_from_event(data)
    assert needle in str(info.value)


def test_message_from_event_rejects_non_mapping() -> None:
    with pytest.raises(SignalError, match="event data must be a JSON object"):
        message_from_event(["x"])  # type: ignore[arg-type]


# --- task operation logs, alerts, deploys -------------------------------------------------------

LOG_NAME = "projects/acme-prod/logs/cloudtasks.googleapis.com%2Ftask_operations_log"
MAIL = "projects/acme-prod/locations/europe-west1/queues/mail-out"
BUILD_META = {
    "build_id": "5f0c9a2e-1b7d-4c1e-9f3a-2d6b8e7a0c11",
    "build_status": "SUCCESS",
    "trigger_name": "billing-deploy",
}
ROLLOUT_META = {
    "Action": "Succeed",
    "ResourceType": "Rollout",
    "DeliveryPipelineId": "billing-pipeline",
    "TargetId": "billing",
    "ReleaseId": "rel-3f9c2d1",
    "RolloutId": "rel-3f9c2d1-to-billing-0001",
    "Location": "europe-west1",
    "ProjectNumber": "123456789012",
    "Resource": "projects/123456789012/locations/europe-west1/deliveryPipelines/billing-pipeline"
    "/releases/rel-3f9c2d1/rollouts/rel-3f9c2d1-to-billing-0001",
}


def alert_meta(
    incident_id: str, policy: str = "task attempt failed", **extra: str
) -> dict[str, str]:
    meta = {
        "version": "1.2",
        "incident_id": incident_id,
        "policy_name": policy,
        "condition_name": "failed attempt log",
        "state": "open",
        "severity": "Error",
    }
    return {**meta, **extra}


LOG_BASED_STARTED = datetime(2026, 11, 29, 8, 40, 12, tzinfo=UTC)

FORMAT_TABLE: list[tuple[str, Parsed]] = [
    (
        "task_log_failed.json",
        Parsed(
            "task-log",
            (
                TaskFailure(
                    task(T441),
                    t("2026-11-29T08:14:58.120455Z"),
                    "task-log",
                    dispatch_count=3,
                    status="INTERNAL",
                ),
            ),
            {
                "log_name": LOG_NAME,
                "insert_id": "1q2w3e4r5t6y",
                "task": T441,
                "status": "INTERNAL",
                "response_count": "3",
                "schedule_time": "2026-11-29T08:14:57.700000Z",
                "retry_time": "2026-11-29T08:15:37.708000Z",
                "target_type": "HTTP",
                "attempt_duration": "0.412s",
            },
        ),
    ),
    (
        "task_log_failed_nanos.json",
        Parsed(
            "task-log",
            (
                TaskFailure(
                    task(f"{MAIL}/tasks/welcome_0193"),
                    datetime(2026, 11, 29, 10, 2, 11, 4918, tzinfo=UTC),
                    "task-log",
                    dispatch_count=12,
                    status="UNAVAILABLE",
                ),
            ),
            {
                "log_name": LOG_NAME,
                "insert_id": "9zx8cv7bn6m5",
                "task": f"{MAIL}/tasks/welcome_0193",
                "status": "UNAVAILABLE",
                "response_count": "11",
                "schedule_time": "2026-11-29T10:02:10.500000Z",
                "dispatch_time": "2026-11-29T10:02:10.512000Z",
                "response_time": "2026-11-29T10:02:11.003000Z",
                "target_type": "HTTP",
            },
        ),
    ),
    (
        "task_log_success.json",
        Parsed(
            "task-log",
            (Ignored("successful attempt", "task-log"),),
            {
                "log_name": LOG_NAME,
                "insert_id": "0okm9ijn8uhb",
                "task": T441,
                "status": "OK",
                "response_count": "4",
                "schedule_time": "2026-11-29T08:19:58.000000Z",
                "target_type": "HTTP",
                "attempt_duration": "0.105s",
            },
        ),
    ),
    (
        "task_log_dispatch.json",
        Parsed(
            "task-log",
            (
                Ignored(
                    "task operation log is attemptDispatchLog, not attemptResponseLog", "task-log"
                ),
            ),
            {"log_name": LOG_NAME, "insert_id": "5tgb6yhn7ujm"},
        ),
    ),
    (
        "task_log_other_resource.json",
        Parsed(
            "task-log",
            (
                Ignored(
                    "log entry from resource type 'cloud_run_revision', not cloud_tasks_queue",
                    "task-log",
                ),
            ),
            {
                "log_name": "projects/acme-prod/logs/run.googleapis.com%2Fstderr",
                "insert_id": "67a1b2c3d4e5",
            },
        ),
    ),
    (
        "task_log_label_mismatch.json",
        Parsed(
            "task-log",
            (
                Invalid(
                    "jsonPayload.task disagrees with resource.labels.queue_id: "
                    "'exports' vs 'billing'"
                ),
            ),
            {
                "log_name": LOG_NAME,
                "insert_id": "abcdefabcdef",
                "task": "projects/acme-prod/locations/europe-west1/queues/exports/tasks/inv-441",
            },
        ),
    ),
    (
        "alert_metric_queue.json",
        Parsed(
            "alert",
            (
                QueueAlert(
                    QueueName("acme-prod", "europe-west1", "billing"),
                    datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
                    "alert",
                    "0.ocq2v1x8k3ab",
                ),
            ),
            alert_meta(
                "0.ocq2v1x8k3ab",
                policy="billing queue failing",
                condition_name="attempts with non-2xx > 5",
            ),
        ),
    ),
    (
        "alert_closed.json",
        Parsed(
            "alert",
            (Ignored("incident closed", "alert"),),
            alert_meta(
                "0.ocq2v1x8k3ab",
                policy="billing queue failing",
                condition_name="attempts with non-2xx > 5",
                state="closed",
            ),
        ),
    ),
    (
        "alert_test.json",
        Parsed(
            "alert",
            (Ignored("test notification from Cloud Monitoring", "alert"),),
            {
                "version": "test",
                "incident_id": "0.t3stn0t1f1c",
                "policy_name": "projects/acme-prod/alertPolicies/1529",
                "condition_name": "sample condition",
                "state": "OPEN",
            },
        ),
    ),
    (
        "alert_log_labels.json",
        Parsed(
            "alert",
            (TaskFailure(task(T441), LOG_BASED_STARTED, "alert", status="INTERNAL"),),
            alert_meta("0.pl4n7x2q9w1e"),
        ),
    ),
    (
        "alert_metric_label_task.json",
        Parsed(
            "alert",
            (TaskFailure(task(f"{BILLING}/tasks/inv-777"), LOG_BASED_STARTED, "alert"),),
            alert_meta("0.mt9a8b7c6d5e"),
        ),
    ),
    (
        "alert_log_template.json",
        Parsed(
            "alert",
            (TaskFailure(task(T441), LOG_BASED_STARTED, "alert", status="INTERNAL"),),
            alert_meta("0.tq3z5m8k1v6r"),
        ),
    ),
    (
        "alert_log_json_line.json",
        Parsed(
            "alert",
            (
                TaskFailure(
                    task(f"{BILLING}/tasks/inv-502"),
                    LOG_BASED_STARTED,
                    "alert",
                    status="DEADLINE_EXCEEDED",
                ),
            ),
            alert_meta("0.js0n1l2i3n4e"),
        ),
    ),
    (
        "alert_free_text.json",
        Parsed(
            "alert",
            (
                TaskFailure(
                    task(
                        "projects/acme-prod/locations/europe-west1/queues/exports/tasks/exp-2026-11-29_001"
                    ),
                    LOG_BASED_STARTED,
                    "alert",
                ),
            ),
            alert_meta("0.fr3e7e8x9t0a"),
        ),
    ),
    (
        # Names with characters glued on (".json#L2", "/attempts", a leading "x") are not names.
        "alert_free_text_glued.json",
        Parsed(
            "alert",
            (
                Invalid(
                    "alert names no task (label task, documentation task=..., or a full task name "
                    "in the text) and no cloud_tasks_queue resource"
                ),
            ),
            alert_meta("0.gl7u3e4d5x6y"),
        ),
    ),
    (
        "build_success.json",
        Parsed(
            "cloud-build",
            (
                Deploy(
                    t("2026-11-29T08:04:40.5Z"),
                    "cloud-build",
                    services=("billing",),
                    version="europe-west1-docker.pkg.dev/acme-prod/app/billing:3f9c2d1",
                ),
            ),
            BUILD_META,
        ),
    ),
    (
        "build_queues.json",
        Parsed(
            "cloud-build",
            (
                Deploy(
                    t("2026-11-29T09:12:00Z"),
                    "cloud-build",
                    services=("projects/acme-prod/locations/europe-west1/services/billing-worker",),
                    queues=(QueueName.parse(BILLING), QueueName.parse(MAIL)),
                    version="88b0e6f1c2d3a4b5c6d7e8f9a0b1c2d3e4f5a6b7",
                ),
            ),
            {
                "build_id": "7a1d0c55-93e2-4b8e-a0f4-61c2d9e8b374",
                "build_status": "SUCCESS",
                "trigger_name": "worker-deploy",
            },
        ),
    ),
    (
        "build_failure.json",
        Parsed(
            "cloud-build",
            (Ignored("build status 'FAILURE': only SUCCESS", "cloud-build"),),
            {"build_id": "c0ffee00-1111-4222-8333-944445555666", "build_status": "FAILURE"},
        ),
    ),
    (
        "build_working.json",
        Parsed(
            "cloud-build",
            (Ignored("build status 'WORKING': only SUCCESS", "cloud-build"),),
            {"build_id": "d2e3f4a5-b6c7-4d8e-9f00-112233445566", "build_status": "WORKING"},
        ),
    ),
    (
        "build_no_service.json",
        Parsed(
            "cloud-build",
            (
                Ignored(
                    "build 'e1e2e3e4-aaaa-4bbb-8ccc-ddddeeeeffff' names no service or queue: add "
                    "the substitution _SERVICE_NAME=<Cloud Run service> or "
                    "_QUEUES=<comma-separated full queue names>",
                    "cloud-build",
                ),
            ),
            {
                "build_id": "e1e2e3e4-aaaa-4bbb-8ccc-ddddeeeeffff",
                "build_status": "SUCCESS",
                "trigger_name": "docs-site",
            },
        ),
    ),
    (
        "cloud_deploy_rollout_succeed.json",
        Parsed(
            "cloud-deploy",
            (
                Deploy(
                    t("2026-11-29T09:30:12.5Z"),
                    "cloud-deploy",
                    services=("billing",),
                    version="rel-3f9c2d1",
                ),
            ),
            ROLLOUT_META,
        ),
    ),
    (
        "cloud_deploy_rollout_start.json",
        Parsed(
            "cloud-deploy",
            (
                Ignored(
                    "Cloud Deploy 'Rollout' 'Start': only a Rollout Succeed deploys", "cloud-deploy"
                ),
            ),
            {**ROLLOUT_META, "Action": "Start"},
        ),
    ),
    (
        "cloud_deploy_release_create.json",
        Parsed(
            "cloud-deploy",
            (
                Ignored(
                    "Cloud Deploy 'Release' 'Create': only a Rollout Succeed deploys",
                    "cloud-deploy",
                ),
            ),
            {
                "Action": "Create",
                "ResourceType": "Release",
                "DeliveryPipelineId": "billing-pipeline",
                "ReleaseId": "rel-3f9c2d1",
                "Location": "europe-west1",
                "ProjectNumber": "123456789012",
                "Resource": "projects/123456789012/locations/europe-west1/deliveryPipelines"
                "/billing-pipeline/releases/rel-3f9c2d1",
            },
        ),
    ),
    (
        "deploy_plain.json",
        Parsed(
            "deploy",
            (
                Deploy(
                    datetime(2026, 11, 29, 9, 58, 30, tzinfo=UTC),
                    "plain",
                    services=("billing",),
                    queues=(QueueName.parse(BILLING),),
                    version="billing-00043-kiv",
                ),
            ),
            {},
        ),
    ),
    (
        "deploy_plain_statuses.json",
        Parsed(
            "deploy",
            (
                Deploy(
                    t("2026-11-29T10:58:30Z"),
                    "plain",
                    services=("billing",),
                    version="billing-00044-fix",
                    statuses=StatusFilter.parse("500,503,5xx,UNAVAILABLE"),
                ),
            ),
            {},
        ),
    ),
    (
        "deploy_plain_queues_only.json",
        Parsed(
            "deploy",
            (
                Deploy(
                    t("2026-11-29T11:05:00Z"),
                    "plain",
                    queues=(
                        QueueName.parse("projects/acme-prod/locations/us-central1/queues/exports"),
                    ),
                ),
            ),
            {},
        ),
    ),
]


@pytest.mark.parametrize(("fixture", "expected"), FORMAT_TABLE, ids=[r[0] for r in FORMAT_TABLE])
def test_format_fixtures(fixture: str, expected: Parsed) -> None:
    assert parse_fixture(fixture) == expected


def test_every_fixture_is_in_a_table() -> None:
    tabled = {name for name, _ in DEAD_LETTER_TABLE + FORMAT_TABLE}
    assert {p.name for p in DATA.glob("*.json")} == tabled


# --- edge cases of the other formats ------------------------------------------------------------


def fixture_json(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DATA / name).read_text())
    return spec


def with_data(name: str, mutate: Any, attributes: dict[str, str] | None = None) -> Message:
    spec = fixture_json(name)
    data = spec["data"]
    mutate(data)
    attrs = spec["attributes"] if attributes is None else attributes
    return msg(json.dumps(data), attrs, spec["publish_time"])


def _set(path: str, value: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()

EDGE_TABLE: list[tuple[str, Message, str]] = [
    (
        "log: bad task grammar",
        with_data("task_log_failed.json", _set("jsonPayload.task", f"{BILLING}/tasks/inv 441")),
        "jsonPayload.task: not a task name",
    ),
    (
        "log: task missing",
        with_data("task_log_failed.json", _set("jsonPayload.task", _DELETE)),
        "jsonPayload.task: task name must be a string, got NoneType",
    ),
    (
        "log: count not a number",
        with_data(
            "task_log_failed.json", _set("jsonPayload.attemptResponseLog.dispatchCount", "3x")
        ),
        "attemptResponseLog.dispatchCount must be a non-negative integer",
    ),
    (
        "log: no status",
        with_data("task_log_failed.json", _set("jsonPayload.attemptResponseLog.status", _DELETE)),
        "attemptResponseLog has no status",
    ),
    (
        "log: payload wrong type",
        with_data("task_log_failed.json", _set("jsonPayload", ["task"])),
        "jsonPayload must be an object, got array",
    ),
    (
        "log: bad timestamp",
        with_data("task_log_failed.json", _set("timestamp", 1795939200)),
        "timestamp must be an RFC 3339 string, got number",
    ),
    (
        "alert: template value not a name",
        with_data(
            "alert_log_template.json",
            _set("incident.documentation.content", "task=${log.extracted_label.task}"),
        ),
        "documentation.content task=: not a task name",
    ),
    (
        "alert: label value not a name",
        with_data(
            "alert_log_labels.json", _set("incident.log_match.extracted_labels.task", "inv-441")
        ),
        "incident.log_match.extracted_labels.task: not a task name",
    ),
    (
        "alert: started_at prose",
        with_data("alert_metric_queue.json", _set("incident.started_at", "at noon")),
        "incident.started_at is not valid epoch seconds",
    ),
    (
        "alert: started_at far future",
        with_data("alert_metric_queue.json", _set("incident.started_at", 10**30)),
        "incident.started_at is not valid epoch seconds",
    ),
    (
        "alert: incident not an object",
        with_data("alert_metric_queue.json", _set("incident", "boom")),
        "incident must be an object, got string",
    ),
    (
        "alert: queue label grammar",
        with_data("alert_metric_queue.json", _set("incident.resource.labels.queue_id", "bill ing")),
        "alert resource: not a queue name",
    ),
    (
        "alert: queue labels missing",
        with_data("alert_metric_queue.json", _set("incident.resource.labels", {"project_id": "p"})),
        "needs resource.labels project_id, location and queue_id",
    ),
    (
        "build: bad queue",
        with_data("build_queues.json", _set("substitutions._QUEUES", "billing")),
        "substitution _QUEUES: not a queue name",
    ),
    (
        "build: bad service",
        with_data("build_success.json", _set("substitutions._SERVICE_NAME", "Billing_Service")),
        "substitution _SERVICE_NAME: not a Cloud Run service id",
    ),
    (
        "build: substitutions wrong type",
        with_data("build_success.json", _set("substitutions", ["_SERVICE_NAME=billing"])),
        "build substitutions must be an object, got array",
    ),
    (
        "build: bad finishTime",
        with_data("build_success.json", _set("finishTime", "2026-11-29")),
        "build finishTime is not an RFC 3339 time",
    ),
    (
        "build: success without data",
        msg(b"", {"buildId": "5f0c9a2e", "status": "SUCCESS"}),
        "Cloud Build SUCCESS message without build data",
    ),
    (
        "plain: neither service nor queues",
        msg(json.dumps({"deployed": {"at": "2026-11-29T10:00:00Z"}})),
        "'deployed' needs a service or queues",
    ),
    (
        "plain: not an object",
        msg(json.dumps({"deployed": "billing"})),
        "'deployed' must be an object, got string",
    ),
    (
        "plain: service wrong type",
        msg(json.dumps({"deployed": {"service": ["billing"]}})),
        "deployed.service must be a string, got array",
    ),
    (
        "plain: bad at",
        msg(json.dumps({"deployed": {"service": "billing", "at": "10:00"}})),
        "deployed.at is not an RFC 3339 time",
    ),
    (
        "plain: bad queue",
        msg(json.dumps({"deployed": {"queues": [BILLING + "/tasks/x"]}})),
        "deployed.queues: not a queue name",
    ),
    (
        "cloud deploy: target not a service id",
        msg(b"", {**ROLLOUT_META, "TargetId": "Prod_EU"}),
        "service: not a Cloud Run service id",
    ),
]


@pytest.mark.parametrize(
    ("message", "needle"), [(m, n) for _, m, n in EDGE_TABLE], ids=[i for i, _, _ in EDGE_TABLE]
)
def test_format_edges_are_invalid(message: Message, needle: str) -> None:
    signal = only(parse_message(message, now=NOW))
    assert isinstance(signal, Invalid), signal
    assert needle in signal.reason
    assert len(signal.reason) <= 300


def test_log_entry_time_falls_back_to_attribute_then_receive_time() -> None:
    attrs = {"logging.googleapis.com/timestamp": "2026-11-29T08:14:59Z"}
    parsed = parse_message(
        with_data("task_log_failed.json", _set("timestamp", _DELETE), attrs), now=NOW
    )
    assert only(parsed).seen_at == t("2026-11-29T08:14:59Z")
    parsed = parse_message(
        with_data("task_log_failed.json", _set("timestamp", _DELETE), {}), now=NOW
    )
    assert only(parsed).seen_at == t("2026-11-29T08:14:58.902117Z")


def test_upper_case_closed_state_is_ignored() -> None:
    parsed = parse_message(
        with_data("alert_metric_queue.json", _set("incident.state", "CLOSED")), now=NOW
    )
    assert only(parsed) == Ignored("incident closed", "alert")


def test_template_with_several_tasks() -> None:
    content = f"task={T441}\ntask={BILLING}/tasks/inv-442\ntask={T441}\nstatus=INTERNAL"
    message = with_data("alert_log_template.json", _set("incident.documentation.content", content))
    assert parse_message(message, now=NOW).signals == (
        TaskFailure(task(T441), LOG_BASED_STARTED, "alert", status="INTERNAL"),
        TaskFailure(
            task(f"{BILLING}/tasks/inv-442"), LOG_BASED_STARTED, "alert", status="INTERNAL"
        ),
    )


def test_log_based_alert_without_a_task_sweeps_its_queue() -> None:
    message = with_data("alert_free_text_glued.json", _set("incident.resource", RESOURCE_BILLING))
    assert only(parse_message(message, now=NOW)) == QueueAlert(
        QueueName.parse(BILLING), LOG_BASED_STARTED, "alert", "0.gl7u3e4d5x6y"
    )


RESOURCE_BILLING = {
    "type": "cloud_tasks_queue",
    "labels": {"project_id": "acme-prod", "location": "europe-west1", "queue_id": "billing"},
}


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        (f"failed: {T441}", True),
        (f"failed: {T441}.", True),
        (f"failed ({T441}), retrying", True),
        (f"**{T441}**", True),
        (f"failed: {T441}.json", False),
        (f"failed: {T441}#attempt", False),
        (f"failed: {T441}/attempts", False),
        (f"failed: x{T441}", False),
        (f"failed: {T441}:run", False),
        ("failed: projects/acme-prod/locations/europe-west1/queues/billing/tasks/", False),
    ],
)
def test_free_text_names_must_stand_alone(text: str, accepted: bool) -> None:
    message = with_data(
        "alert_free_text.json",
        _set("incident.documentation", {"content": "", "subject": "task failed"}),
    )
    spec = json.loads(message.data)
    spec["incident"]["summary"] = text
    spec["incident"]["resource"] = {"type": "global", "labels": {}}
    signal = only(parse_message(msg(json.dumps(spec)), now=NOW))
    if accepted:
        assert signal == TaskFailure(task(T441), LOG_BASED_STARTED, "alert")
    else:
        assert isinstance(signal, Invalid)


def test_build_recognised_by_shape_without_attributes() -> None:
    spec = fixture_json("build_success.json")
    parsed = parse_message(msg(json.dumps(spec["data"]), {}, spec["publish_time"]), now=NOW)
    assert parsed.kind == "cloud-build"
    assert isinstance(only(parsed), Deploy)


def test_build_without_finish_time_uses_publish_time() -> None:
    parsed = parse_message(with_data("build_success.json", _set("finishTime", _DELETE)), now=NOW)
    assert only(parsed).deployed_at == t("2026-11-29T08:04:41.003Z")


def test_failed_build_is_ignored_even_with_unreadable_data() -> None:
    parsed = parse_message(msg(b"\xff\xfe", {"buildId": "b-1", "status": "TIMEOUT"}), now=NOW)
    assert only(parsed) == Ignored("build status 'TIMEOUT': only SUCCESS", "cloud-build")


def test_rollout_without_target_is_ignored() -> None:
    attributes = {k: v for k, v in ROLLOUT_META.items() if k != "TargetId"}
    parsed = parse_message(msg(b"", attributes), now=NOW)
    assert only(parsed) == Ignored("rollout names no TargetId or service", "cloud-deploy")


def test_rollout_service_attribute_wins_over_target() -> None:
    parsed = parse_message(msg(b"", {**ROLLOUT_META, "service": "billing-api"}), now=NOW)
    assert only(parsed).services == ("billing-api",)


def test_kind_attribute_is_only_a_hint() -> None:
    parsed = parse_message(msg(json.dumps({"task": T441}), {"kind": "alert"}), now=NOW)
    assert parsed.kind == "dead-letter"
    refused = parse_message(msg(json.dumps({"x": 1}), {"kind": "alert"}), now=NOW)
    assert refused.kind == "alert" and isinstance(only(refused), Invalid)


def test_dead_lettered_alert_keeps_delivery_metadata() -> None:
    spec = fixture_json("alert_metric_queue.json")
    parsed = parse_message(msg(json.dumps(spec["data"]), DLQ_FORWARD_META), now=NOW)
    assert parsed.kind == "alert"
    assert {k: parsed.metadata[k] for k in DLQ_FORWARD_META} == DLQ_FORWARD_META


# --- the patrol ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "attributes", "queues"),
    [
        ('{"patrol": {}}', {}, ()),
        ('{"patrol": true}', {}, ()),
        ('{"patrol": null}', {}, ()),
        (f'{{"patrol": {{"queues": ["{BILLING}", "{BILLING}"]}}}}', {}, (BILLING,)),
        ("", {"redrive-kind": "patrol"}, ()),
        ("  ", {"kind": "Patrol"}, ()),
    ],
)
def test_patrol_messages(data: str, attributes: dict[str, str], queues: tuple[str, ...]) -> None:
    from redrive.core.signals import Patrol

    parsed = parse_message(msg(data, attributes), now=NOW)
    assert parsed.kind == "patrol"
    (signal,) = parsed.signals
    assert isinstance(signal, Patrol)
    assert signal.queues == tuple(QueueName.parse(q) for q in queues)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ('{"patrol": 3}', "'patrol' must be an object, got number"),
        ('{"patrol": "all"}', "'patrol' must be an object, got string"),
        ('{"patrol": {"queues": "x"}}', "patrol.queues must be an array"),
        ('{"patrol": {"queues": ["not-a-queue"]}}', "patrol.queues"),
        ('{"patrol": {"queues": [7]}}', "patrol.queues"),
        ('{"patrol": {"every": "5m"}}', "unknown fields: every"),
    ],
)
def test_bad_patrols_are_invalid(data: str, needle: str) -> None:
    parsed = parse_message(msg(data, {}), now=NOW)
    (signal,) = parsed.signals
    assert isinstance(signal, Invalid) and needle in signal.reason, signal


def test_an_empty_message_is_no_patrol_without_the_attribute() -> None:
    (signal,) = parse_message(msg("", {}), now=NOW).signals
    assert isinstance(signal, Invalid)
