"""Property tests: whatever arrives, the parser returns a well-formed `Parsed` and never a task
name that breaks the grammar; message_from_event raises nothing but SignalError."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redrive.core.names import TASK_NAME_RE, QueueName, TaskName
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

DATA = Path(__file__).parent / "data" / "signals"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
KINDS = {"dead-letter", "task-log", "alert", "cloud-build", "cloud-deploy", "deploy", "unknown"}
FIXTURES = sorted(DATA.glob("*.json"))
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(parsed: Parsed) -> None:
    """The invariants every result must satisfy."""
    assert isinstance(parsed, Parsed)
    assert parsed.kind in KINDS
    assert parsed.signals, "at least one signal"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.metadata.items())
    for signal in parsed.signals:
        if isinstance(signal, TaskFailure):
            assert TaskName.parse(str(signal.task)) == signal.task
            assert signal.seen_at.tzinfo is not None
            assert signal.dispatch_count is None or signal.dispatch_count >= 0
        elif isinstance(signal, QueueAlert):
            assert QueueName.parse(str(signal.queue)) == signal.queue
            assert signal.seen_at.tzinfo is not None
        elif isinstance(signal, Deploy):
            assert signal.services or signal.queues
            assert all(QueueName.parse(str(q)) == q for q in signal.queues)
            assert signal.deployed_at.tzinfo is not None
        elif isinstance(signal, Ignored):
            assert signal.reason
        else:
            assert isinstance(signal, Invalid)
            assert signal.reason and len(signal.reason) <= 300
            # The catch-all exists as a last defence; reaching it is a parser bug.
            assert not signal.reason.startswith("internal parser error"), signal.reason


attribute_keys = st.sampled_from(
    [
        "task",
        "taskName",
        "kind",
        "redrive-kind",
        "buildId",
        "status",
        "Action",
        "ResourceType",
        "TargetId",
        "logging.googleapis.com/timestamp",
        "CloudPubSubDeadLetterSourceTopicPublishTime",
        "x",
    ]
)
attribute_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "SUCCESS",
            "Succeed",
            "Rollout",
            "alert",
            "2026-11-29T08:00:00Z",
            "projects/p/locations/l/queues/q/tasks/t",
        ]
    ),
)
attributes = st.dictionaries(attribute_keys, attribute_values, max_size=4)
times = st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "projects/acme-prod/locations/europe-west1/queues/billing/tasks/inv-441",
            "projects/a/locations/b/queues/c",
            "2026-11-29T08:00:00Z",
            "SUCCESS",
            "closed",
            "OK",
            "cloud_tasks_queue",
        ]
    ),
)
json_keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "task",
            "tasks",
            "name",
            "taskName",
            "dispatchCount",
            "status",
            "time",
            "incident",
            "version",
            "state",
            "started_at",
            "resource",
            "labels",
            "type",
            "documentation",
            "summary",
            "jsonPayload",
            "attemptResponseLog",
            "logName",
            "timestamp",
            "id",
            "substitutions",
            "finishTime",
            "deployed",
            "service",
            "queues",
            "at",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=30,
)


def message(data: bytes, attrs: dict[str, str], published: datetime | None) -> Message:
    return Message(data=data, attributes=attrs, message_id="1", publish_time=published)


@PROPS
@given(data=st.binary(max_size=300), attrs=attributes, published=times)
def test_random_bytes_never_raise(
    data: bytes, attrs: dict[str, str], published: datetime | None
) -> None:
    check(parse_message(message(data, attrs, published), now=NOW))


@PROPS
@given(value=json_values, attrs=attributes, published=times)
def test_random_json_never_raises(
    value: Any, attrs: dict[str, str], published: datetime | None
) -> None:
    data = json.dumps(value).encode()
    check(parse_message(message(data, attrs, published), max_bytes=1_000_000, now=NOW))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _retype(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return {"0": value[0]} if value else ""
    if isinstance(value, dict):
        return list(value.values())
    return 0


@st.composite
def mutated(draw: Any, path: Path) -> Message:
    spec = json.loads(path.read_text())
    attrs = dict(spec["attributes"])
    if "data_text" in spec:
        text = spec["data_text"]
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=5)) + text[cut:]
        data = text.encode()
    else:
        body = copy.deepcopy(spec["data"])
        for _ in range(draw(st.integers(1, 4))):
            paths = _paths(body)
            if not paths:
                break
            where = draw(st.sampled_from(paths))
            parent = body
            for key in where[:-1]:
                parent = parent[key]
            last = where[-1]
            action = draw(st.sampled_from(["drop", "replace", "retype"]))
            if action == "drop":
                if isinstance(parent, dict):
                    del parent[last]
                else:
                    parent.pop(last)
            elif action == "replace":
                parent[last] = draw(json_values)
            else:
                parent[last] = _retype(parent[last])
        data = json.dumps(body).encode()
    if attrs and draw(st.booleans()):
        del attrs[draw(st.sampled_from(sorted(attrs)))]
    published = datetime.fromisoformat(spec["publish_time"].replace("Z", "+00:00"))
    return message(data, attrs, published)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_mutated_fixtures_never_raise(path: Path) -> None:
    # Per fixture, so that every format gets its share of drops, replacements and retypes.
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=mutated(path))
    def run(case: Message) -> None:
        check(parse_message(case, now=NOW))

    run()


@PROPS
@given(
    name=st.from_regex(TASK_NAME_RE, fullmatch=True), pad=st.sampled_from(["", " ", "\n", "\t "])
)
def test_every_grammatical_name_is_accepted_as_is(name: str, pad: str) -> None:
    for body in (
        pad + name + pad,
        json.dumps({"task": name}),
        json.dumps({"tasks": [{"name": name}]}),
    ):
        parsed = parse_message(message(body.encode(), {}, NOW), now=NOW)
        assert parsed.signals == (TaskFailure(TaskName.parse(name), NOW, "dead-letter"),)


name_chars = st.text(alphabet="abcXYZ019-_.:/ projects/locations/queues/tasks", max_size=120)


@PROPS
@given(text=name_chars)
def test_name_like_text_never_yields_a_bad_name(text: str) -> None:
    check(parse_message(message(text.encode(), {}, NOW), now=NOW))
    incident = {"version": "1.2", "incident": {"summary": text, "documentation": {"content": text}}}
    check(parse_message(message(json.dumps(incident).encode(), {}, NOW), now=NOW))


event_data = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {
            "message": st.fixed_dictionaries(
                {},
                optional={
                    "data": st.one_of(
                        json_scalars,
                        st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
                    ),
                    "attributes": st.one_of(
                        json_values, st.dictionaries(st.text(max_size=5), st.text(max_size=5))
                    ),
                    "messageId": json_scalars,
                    "publishTime": json_scalars,
                },
            )
        },
        optional={"subscription": json_scalars},
    ),
)


@PROPS
@given(data=event_data, ce_time=st.one_of(st.none(), st.text(max_size=30)))
def test_message_from_event_raises_only_signal_error(data: Any, ce_time: str | None) -> None:
    try:
        built = message_from_event(data, ce_id="ce-1", ce_time=ce_time)
    except SignalError as err:
        assert str(err)
        return
    assert isinstance(built.data, bytes)
    assert built.publish_time is None or built.publish_time.tzinfo is not None
    check(parse_message(built, now=NOW))
