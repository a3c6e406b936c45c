"""The log adapter: writes each record as one JSON line on stdout, as Cloud Logging reads it.

Cloud Run and 2nd-gen functions turn a JSON line on stdout into a LogEntry whose `jsonPayload` is
the object, with `severity`, `message` and `logging.googleapis.com/labels` lifted out (the same
line google-cloud-logging's StructuredLogHandler writes). Writing it here directly keeps that
library (and its import cost) out of a cold start, and lets the line be made safe for every line
reader: `ensure_ascii` escapes U+2028/U+2029, NEL and the C1 controls, which a payload key could
otherwise carry into the line raw and split it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import IO, Any

SPECIAL = ("severity", "message", "labels")
"""Record keys the line writes in Cloud Logging's own places rather than in the payload."""
_TRACE_HEADER = re.compile(r"([0-9a-fA-F]{32})(?:/(\d+))?")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def structured_line(record: Mapping[str, Any], trace: Mapping[str, Any] | None = None) -> str:
    """The one JSON line (no newline) for a record: payload fields, then message and severity,
    then the labels and the request's trace when known."""
    line: dict[str, Any] = {k: v for k, v in record.items() if k not in SPECIAL}
    line["message"] = str(record.get("message", ""))
    line["severity"] = str(record.get("severity") or "INFO")
    labels = record.get("labels")
    if labels:
        line["logging.googleapis.com/labels"] = {str(k): str(v) for k, v in labels.items()}
    if trace:
        line.update(trace)
    return json.dumps(line, ensure_ascii=True, default=str, separators=(", ", ": "))


def request_trace() -> dict[str, Any]:
    """The Cloud Trace fields of the HTTP request being served (functions-framework's Flask
    request), so Cloud Logging groups a request's lines; empty outside a request."""
    flask = sys.modules.get("flask")  # never imported here: only when serving already loaded it
    if flask is None or not flask.has_request_context():
        return {}
    headers = flask.request.headers
    trace_id = span_id = None
    sampled = False
    if match := _TRACEPARENT.fullmatch(headers.get("traceparent", "")):
        trace_id, span_id = match.group(1), match.group(2)
        sampled = headers.get("traceparent", "").endswith("-01")
    elif match := _TRACE_HEADER.match(headers.get("X-Cloud-Trace-Context", "")):
        trace_id, span_id = match.group(1), match.group(2)
        sampled = "o=1" in headers.get("X-Cloud-Trace-Context", "")
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    if not trace_id or not project:
        return {}
    fields: dict[str, Any] = {
        "logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}",
        "logging.googleapis.com/trace_sampled": sampled,
    }
    if span_id:
        fields["logging.googleapis.com/spanId"] = span_id
    return fields


class OutcomeLog:
    """Emits records as single JSON lines. Thread-safe: one line is written whole."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, record: Mapping[str, Any]) -> None:
        text = structured_line(record, request_trace()) + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()
