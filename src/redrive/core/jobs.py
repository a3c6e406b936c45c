"""Redrive jobs (queued mode): the JSON body, the deterministic job name, and the job task.

A job is one Cloud Tasks task in the redrive queue that asks run_job to re-drive one failed task.
Its name is derived from the failed task and the failed attempt's dispatch count, so a second
signal about the same failure (Pub/Sub redelivery, a duplicate alert) is refused by Cloud Tasks with
ALREADY_EXISTS: the queue is the atomic claim, no database needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redrive.core.config import parse_time
from redrive.core.decide import Failure, FixEvidence, SignalRef
from redrive.core.errors import InvalidJobError
from redrive.core.names import InvalidName, QueueName, TaskName

JOB_VERSION = 1
MAX_JOB_BYTES = 16 * 1024
"""A job body is a few hundred bytes; anything much larger is not ours."""
_TASK_ID_MAX = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_FIELDS = {"v", "task", "seen_at", "dispatch_count", "signal"}
_OPTIONAL_FIELDS = {"fix", "redrive"}
_REDRIVE_ID = re.compile(r"rd-[0-9a-f]{12}")
_SIGNAL_FIELDS = {"kind", "source", "message_id", "publish_time"}
_FIX_FIELDS = {"strategy", "live_since", "service", "revision"}


def job_id(task: TaskName, dispatch_count: int, salt: str = "") -> str:
    """Deterministic job id: a hash first, then a readable part, within the 500-char id grammar.

    The hash leads because Cloud Tasks advises against sequential name prefixes (they concentrate
    load); the readable tail (queue, task id, attempt) makes the job easy to find by eye. `salt`
    lets another producer (a deploy sweep) claim a fresh name for the same failure.
    """
    key = f"{task}|{dispatch_count}|{salt}".encode()
    digest = hashlib.sha256(key).hexdigest()[:16]
    tail = f"-d{dispatch_count}"
    readable = _UNSAFE.sub("_", f"{task.queue}-{task.task}")
    room = _TASK_ID_MAX - len(digest) - 1 - len(tail)
    return f"{digest}-{readable[:room]}{tail}"


def job_name(redrive_queue: QueueName, task: TaskName, dispatch_count: int, salt: str = "") -> str:
    return f"{redrive_queue}/tasks/{job_id(task, dispatch_count, salt)}"


@dataclass(frozen=True)
class Job:
    """One redrive job: the failure to re-drive and where the report came from."""

    task: TaskName
    seen_at: datetime
    dispatch_count: int
    signal: SignalRef
    fix: FixEvidence | None = None
    """The evidence that a fix is live, as found when the job was enqueued. run_job decides with
    it instead of asking again: a deploy sweep's evidence is the deploy notification itself, which
    run_job could not find on its own (a job is only created when this evidence covered the
    failure, and a deployed fix stays deployed)."""
    redrive: str | None = None
    """The bulk re-drive that created the job (`rd-...`, core.redrives), for its status, its
    cancel and run_job's lines; None for a job of a single failure signal."""

    @classmethod
    def for_failure(
        cls,
        failure: Failure,
        dispatch_count: int,
        fix: FixEvidence | None = None,
        redrive: str | None = None,
    ) -> Job:
        return cls(failure.task, failure.seen_at, dispatch_count, failure.signal, fix, redrive)

    def failure(self) -> Failure:
        return Failure(self.task, self.seen_at, self.signal, self.dispatch_count)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": JOB_VERSION,
            "task": str(self.task),
            "seen_at": _iso(self.seen_at),
            "dispatch_count": self.dispatch_count,
            "signal": {
                "kind": self.signal.kind,
                "source": self.signal.source,
                "message_id": self.signal.message_id,
                "publish_time": _iso(self.signal.publish_time),
            },
        }
        if self.fix is not None:
            data["fix"] = {
                "strategy": self.fix.strategy,
                "live_since": _iso(self.fix.live_since),
                "service": self.fix.service,
                "revision": self.fix.revision,
            }
        if self.redrive is not None:
            data["redrive"] = self.redrive
        return data

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def parse(cls, body: bytes) -> Job:
        """Strict: exactly the fields `to_json` writes, typed; raises InvalidJobError."""
        if len(body) > MAX_JOB_BYTES:
            raise InvalidJobError(f"job body is {len(body)} bytes, more than {MAX_JOB_BYTES}")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise InvalidJobError(f"job body is not JSON: {str(err)[:120]}") from None
        if not isinstance(data, dict):
            raise InvalidJobError("job body must be a JSON object")
        if not _FIELDS <= set(data) <= _FIELDS | _OPTIONAL_FIELDS:
            got = sorted(map(str, data))[:10]
            raise InvalidJobError(
                f"job fields must be {sorted(_FIELDS)} (and optionally "
                f"{sorted(_OPTIONAL_FIELDS)}), got {got}"
            )
        if data["v"] != JOB_VERSION:
            raise InvalidJobError(f"unsupported job version {data['v']!r}")
        try:
            task = TaskName.parse(data["task"])
        except InvalidName as err:
            raise InvalidJobError(str(err)) from None
        count = data["dispatch_count"]
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count < 2**31:
            raise InvalidJobError("dispatch_count must be a non-negative int32")
        seen_at = _time(data["seen_at"], "seen_at", required=True)
        assert seen_at is not None
        signal = data["signal"]
        if not isinstance(signal, dict) or set(signal) != _SIGNAL_FIELDS:
            raise InvalidJobError(f"signal must be an object with {sorted(_SIGNAL_FIELDS)}")
        for key in ("kind", "source"):
            if not isinstance(signal[key], str) or not 0 < len(signal[key]) <= 64:
                raise InvalidJobError(f"signal.{key} must be a short string")
        message_id = signal["message_id"]
        if message_id is not None and (not isinstance(message_id, str) or len(message_id) > 256):
            raise InvalidJobError("signal.message_id must be a short string or null")
        ref = SignalRef(
            kind=signal["kind"],
            source=signal["source"],
            message_id=message_id,
            publish_time=_time(signal["publish_time"], "signal.publish_time", required=False),
        )
        fix = _fix(data["fix"]) if "fix" in data else None
        redrive = data.get("redrive")
        if redrive is not None and (
            not isinstance(redrive, str) or _REDRIVE_ID.fullmatch(redrive) is None
        ):
            raise InvalidJobError("redrive must be a re-drive id (rd- and 12 hex digits)")
        return cls(task, seen_at, count, ref, fix, redrive)


@dataclass(frozen=True)
class JobTask:
    """What to create in the redrive queue (version-neutral; the Cloud Tasks adapter sends it)."""

    name: str
    url: str
    body: bytes
    service_account: str | None = None
    dispatch_deadline_s: int | None = None
    """How long Cloud Tasks waits for run_job's answer; None: the queue's default (10 minutes)."""
    schedule_time: datetime | None = None
    """When the task is due; None: now."""

    def request_task(self) -> dict[str, Any]:
        """The `task` of a CreateTaskRequest as a dict (accepted by both API versions' clients)."""
        http: dict[str, Any] = {
            "url": self.url,
            "http_method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": self.body,
        }
        if self.service_account:
            http["oidc_token"] = {
                "service_account_email": self.service_account,
                "audience": self.url,
            }
        task: dict[str, Any] = {"name": self.name, "http_request": http}
        if self.dispatch_deadline_s is not None:
            task["dispatch_deadline"] = {"seconds": self.dispatch_deadline_s}
        if self.schedule_time is not None:
            task["schedule_time"] = self.schedule_time
        return task


def _fix(value: object) -> FixEvidence:
    if not isinstance(value, dict) or set(value) != _FIX_FIELDS:
        raise InvalidJobError(f"fix must be an object with {sorted(_FIX_FIELDS)}")
    strategy = value["strategy"]
    if not isinstance(strategy, str) or not 0 < len(strategy) <= 64:
        raise InvalidJobError("fix.strategy must be a short string")
    for key in ("service", "revision"):
        item = value[key]
        if item is not None and (not isinstance(item, str) or len(item) > 1024):
            raise InvalidJobError(f"fix.{key} must be a string of at most 1024 characters or null")
    live_since = _time(value["live_since"], "fix.live_since", required=strategy != "none")
    return FixEvidence(
        strategy, live_since, value["service"], value["revision"], note="carried by the job"
    )


def job_task(
    job: Job,
    redrive_queue: QueueName,
    url: str,
    service_account: str | None,
    dispatch_deadline_s: int | None = None,
) -> JobTask:
    return JobTask(
        name=job_name(redrive_queue, job.task, job.dispatch_count),
        url=url,
        body=job.to_json(),
        service_account=service_account,
        dispatch_deadline_s=dispatch_deadline_s,
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: object, field: str, *, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidJobError(f"{field} must be an RFC 3339 string")
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidJobError(f"{field} is not an RFC 3339 time: {value[:64]!r}") from None
