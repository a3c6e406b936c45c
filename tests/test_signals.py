"""Table tests of the signal parser over the fixtures in tests/data/signals/."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from redrive.names import QueueName, TaskName
from redrive.signals import (
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


# Keep names referenced by later sections importable in one place.
__all__ = ["Deploy", "Ignored", "QueueAlert", "QueueName"]
