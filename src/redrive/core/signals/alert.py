"""Cloud Monitoring incident notifications (Pub/Sub channel, schema "1.2" and "test").

Where the task name is looked for, in order: label maps inside the incident (log-based alerts'
extracted labels, wherever they appear; metric and resource labels), then the documentation
template (`task=...` lines or a JSON line), then free text, accepted only for a full task name
bounded on both sides. With no task, a `cloud_tasks_queue` resource makes a queue alert.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from redrive.core.names import TASK_NAME_IN_TEXT_RE, TaskName
from redrive.core.signals._common import (
    TASK_KEYS,
    bound,
    load_json,
    parse_epoch_s,
    parse_queue,
    parse_task,
    type_name,
)
from redrive.core.signals.model import (
    Ignored,
    Invalid,
    Parsed,
    QueueAlert,
    Signal,
    SignalError,
    TaskFailure,
)

KIND = "alert"
SOURCE = "alert"
_LABEL_MAP_KEYS = ("extracted_labels", "extractedLabels", "labels")
_LABEL_TASK_KEYS = ("task", "task_name", "taskName")
_WALK_DEPTH = 6
# Linear on any input: horizontal whitespace only, and a value that is one run of non-spaces.
_TEMPLATE_RE = re.compile(
    r"^[^\S\n]*(task|task_name|taskName|status)[^\S\n]*[=:][^\S\n]*(\S*)[^\S\n]*$", re.MULTILINE
)
_MAX_TEXT = 65_536  # free text scanned per field; the payload size limit bounds it anyway


def looks_like(obj: Any) -> bool:
    return isinstance(obj, dict) and "incident" in obj


def parse(obj: dict[str, Any], fallback: datetime) -> Parsed:
    metadata: dict[str, str] = {}
    try:
        return _parse(obj, fallback, metadata)
    except SignalError as err:
        return Parsed(KIND, (Invalid(bound(str(err))),), metadata)


def _parse(obj: dict[str, Any], fallback: datetime, meta: dict[str, str]) -> Parsed:
    version = obj.get("version")
    if version is not None:
        meta["version"] = str(version) if isinstance(version, str | int | float) else "?"
    incident = obj["incident"]
    if not isinstance(incident, dict):
        raise SignalError(f"incident must be an object, got {type_name(incident)}")
    for key in ("incident_id", "policy_name", "condition_name", "state", "severity"):
        value = incident.get(key)
        if isinstance(value, str) and value:
            meta[key] = value[:200]
    if version == "test":
        return _ignored("test notification from Cloud Monitoring", meta)
    state = incident.get("state")
    if state is not None and not isinstance(state, str):
        raise SignalError(f"incident.state must be a string, got {type_name(state)}")
    if isinstance(state, str) and state.lower() == "closed":
        return _ignored("incident closed", meta)

    incident_id = meta.get("incident_id")
    started = incident.get("started_at")
    seen_at = fallback
    if started is not None and started != 0:
        seen_at = parse_epoch_s(started, "incident.started_at")

    signals = _task_signals(incident, seen_at)
    if signals:
        return Parsed(KIND, signals, meta)

    resource = incident.get("resource")
    if isinstance(resource, dict) and resource.get("type") == "cloud_tasks_queue":
        labels = resource.get("labels")
        if not isinstance(labels, dict):
            raise SignalError("cloud_tasks_queue alert without resource.labels")
        parts = [labels.get(k) for k in ("project_id", "location", "queue_id")]
        if not all(isinstance(p, str) and p for p in parts):
            raise SignalError(
                "cloud_tasks_queue alert needs resource.labels project_id, location and queue_id"
            )
        queue = parse_queue(
            f"projects/{parts[0]}/locations/{parts[1]}/queues/{parts[2]}", "alert resource"
        )
        return Parsed(KIND, (QueueAlert(queue, seen_at, SOURCE, incident_id),), meta)

    raise SignalError(
        "alert names no task (label task, documentation task=..., or a full task name in the "
        "text) and no cloud_tasks_queue resource"
    )


def _task_signals(incident: Mapping[str, Any], seen_at: datetime) -> tuple[Signal, ...]:
    for finder in (_from_label_maps, _from_template, _from_free_text):
        found = finder(incident)
        if found:
            signals: list[Signal] = []
            seen: set[TaskName] = set()
            for item in found:
                if isinstance(item, Invalid):
                    signals.append(item)
                elif item[0] not in seen:
                    seen.add(item[0])
                    signals.append(TaskFailure(item[0], seen_at, SOURCE, status=item[1]))
            return tuple(signals)
    return ()


_Found = list[tuple[TaskName, str | None] | Invalid]


def _found(value: object, where: str, status: str | None) -> tuple[TaskName, str | None] | Invalid:
    try:
        return parse_task(value, where), status
    except SignalError as err:
        return Invalid(bound(str(err)))


def _label_maps(node: Any, path: str, depth: int) -> Iterator[tuple[str, Mapping[str, Any]]]:
    # Extracted labels have no confirmed place in the 1.2 schema: look at every label map.
    if depth > _WALK_DEPTH or not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("documentation", "condition"):
            continue  # documentation is text (next step); condition holds extractor expressions
        where = f"{path}.{key}"
        if key in _LABEL_MAP_KEYS and isinstance(value, dict):
            yield where, value
        if isinstance(value, dict):
            yield from _label_maps(value, where, depth + 1)


def _from_label_maps(incident: Mapping[str, Any]) -> _Found:
    found: _Found = []
    for where, labels in _label_maps(incident, "incident", 0):
        status = labels.get("status") if isinstance(labels.get("status"), str) else None
        for key in _LABEL_TASK_KEYS:
            if key in labels:
                found.append(_found(labels[key], f"{where}.{key}", status))
    return found


def _documentation(incident: Mapping[str, Any]) -> list[tuple[str, str]]:
    doc = incident.get("documentation")
    if isinstance(doc, str):  # the test notification sends a plain string
        return [("documentation", doc[:_MAX_TEXT])]
    if not isinstance(doc, dict):
        return []
    return [
        (f"documentation.{key}", doc[key][:_MAX_TEXT])
        for key in ("content", "subject")
        if isinstance(doc.get(key), str)
    ]


def _from_template(incident: Mapping[str, Any]) -> _Found:
    for where, text in _documentation(incident):
        found: _Found = []
        pairs = _TEMPLATE_RE.findall(text)
        status = next((v for k, v in pairs if k == "status" and v), None)
        for key, value in pairs:
            if key != "status":
                found.append(_found(value, f"{where} {key}=", status))
        found.extend(_from_json_lines(text, where, status))
        if found:
            return found
    return []


def _from_json_lines(text: str, where: str, status: str | None) -> _Found:
    found: _Found = []
    for raw in text.splitlines():
        line = raw.strip().strip("`").strip()
        if not line.startswith("{"):
            continue
        try:
            obj = load_json(line)
        except SignalError:
            continue  # a brace in prose, not a template line
        if not isinstance(obj, dict):
            continue
        line_status = obj.get("status") if isinstance(obj.get("status"), str) else status
        for key in TASK_KEYS:
            if key in obj:
                found.append(_found(obj[key], f"{where} JSON {key}", line_status))
        tasks = obj.get("tasks")
        if isinstance(tasks, list):
            found.extend(_found(v, f"{where} JSON tasks", line_status) for v in tasks)
    return found


def _from_free_text(incident: Mapping[str, Any]) -> _Found:
    texts = [("summary", incident.get("summary")), *_documentation(incident)]
    found: _Found = []
    for where, value in texts:
        if not isinstance(value, str):
            continue
        text = value[:_MAX_TEXT]
        for match in TASK_NAME_IN_TEXT_RE.finditer(text):
            if _ends_cleanly(text, match.end()):
                found.append(_found(match.group(0), where, None))
    return found


_CLOSERS = frozenset(")]}>\"'`*")
_PUNCTUATION = frozenset(".,;:!?")


def _ends_cleanly(text: str, end: int) -> bool:
    """A name in prose ends at a space, a closing mark, or sentence punctuation then a space.

    `.../tasks/inv-441.` ends a sentence; `.../tasks/inv-441.json` or `inv-441#x` is another
    string with a task name glued inside it, and is not accepted.
    """
    if end >= len(text) or text[end].isspace() or text[end] in _CLOSERS:
        return True
    if text[end] in _PUNCTUATION:
        after = end + 1
        return after >= len(text) or text[after].isspace() or text[after] in _CLOSERS
    return False


def _ignored(reason: str, meta: dict[str, str]) -> Parsed:
    return Parsed(KIND, (Ignored(reason, SOURCE),), meta)
