"""Parking, the pure parts: when a failed task's next attempt would be its last, what a parked
copy is called and what it records, and what a restored task is called.

Cloud Tasks deletes a task once its retries are used up, and after 31 days whatever its retries.
With a parking queue (REDRIVE_PARKING_QUEUE) redrive moves such a task, before that attempt, into
a queue of its own as a **parked copy**: a task that can never reach a target. Its URL points at
an `.invalid` host (nothing resolves it), its body is the original task as Cloud Tasks stored it
(serialized, every field of the request), the queue is kept paused, and the copy is scheduled as
far ahead as the API allows. The copy's URL also carries the origin (the original's full name,
its failed attempt, status and times) so that a BASIC listing, which never returns bodies, can
say what every parked copy is. Restoring creates the original request again in its origin queue,
due now, as a new task, then deletes the parked copy.

The stop rule is Cloud Tasks' own (RetryConfig): a task is deleted after a failed attempt when
both `max_attempts` is reached (-1: never) and `max_retry_duration`, measured from the first
attempt, has passed (0: never); both unlimited, it lives until the retention limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qs, urlencode, urlsplit

from redrive.core.names import InvalidName, QueueName, TaskName
from redrive.core.recreate import original_id
from redrive.core.state import TaskState

PARKED_HOST = "parked.redrive.invalid"
"""A parked copy's target: `.invalid` never resolves (RFC 2606), so even in a queue resumed by
mistake a parked copy's dispatch fails before any request leaves Cloud Tasks."""
PARKED_PATH = "/v1"
PARKED_SCHEDULE_AHEAD = timedelta(days=30) - timedelta(hours=1)
"""Cloud Tasks schedules at most 30 days ahead: a parked copy is due as late as the API allows,
less an hour of clock difference."""
RETENTION = timedelta(days=31)
"""Cloud Tasks' task retention (v2beta3 queues may set another `task_ttl`)."""
DEFAULT_ATTEMPT_S = 600.0
"""An attempt may last up to its dispatch deadline (10 minutes unless the task sets one): the
next attempt's answer, which decides whether it was the last, may come that much later."""
_ID_MAX = 500
_PARKED_SUFFIX_LEN = len("--pk") + 12


@dataclass(frozen=True)
class RetryRule:
    """The part of a RetryConfig that decides when Cloud Tasks deletes a failing task."""

    max_attempts: int
    """Attempts in all, the first included; -1: unlimited."""
    max_retry_duration_s: float
    """Retrying stops this long after the first attempt; 0: unlimited."""

    def describe(self) -> str:
        attempts = "unlimited" if self.max_attempts == -1 else str(self.max_attempts)
        duration = (
            "unlimited" if self.max_retry_duration_s <= 0 else f"{self.max_retry_duration_s:g}s"
        )
        return f"max_attempts {attempts}, max_retry_duration {duration}"

    def merged(self, state: TaskState) -> RetryRule:
        """The rule for one task: its own RetryConfig's limits, where it sets them, over the
        queue's."""
        attempts = state.retry_max_attempts
        duration = state.retry_max_duration_s
        return RetryRule(
            attempts if attempts else self.max_attempts,
            self.max_retry_duration_s if duration is None else duration,
        )


def retries_exhausted(rule: RetryRule, attempts: int, age_s: float) -> bool:
    """Cloud Tasks' stop rule: after a failed attempt that made `attempts` attempts in all, at
    `age_s` since the first attempt, is the task deleted?"""
    unlimited_attempts = rule.max_attempts == -1
    unlimited_duration = rule.max_retry_duration_s <= 0
    if unlimited_attempts and unlimited_duration:
        return False
    attempts_done = unlimited_attempts or attempts >= rule.max_attempts
    duration_done = unlimited_duration or age_s >= rule.max_retry_duration_s
    return attempts_done and duration_done


class Why(StrEnum):
    """Why a task is parked."""

    LAST_ATTEMPT = "last_attempt"
    """Its next attempt would be its last: were it to fail, Cloud Tasks deletes the task."""
    RETENTION = "retention"
    """It would reach Cloud Tasks' retention limit (31 days from its creation) by its next
    attempt, where Cloud Tasks deletes it whatever its retries."""


class Verdict(StrEnum):
    """What the park rule says of one task."""

    PARK = "PARK"
    NOT_LAST = "NOT_LAST"
    """Its next attempt is not its last, nor near the retention limit."""
    TOO_SOON = "TOO_SOON"
    """Its next attempt is due within REDRIVE_PARK_MARGIN_S (or overdue): Cloud Tasks could
    dispatch it while it is being parked."""
    IN_FLIGHT = "IN_FLIGHT"
    NOT_FAILING = "NOT_FAILING"
    NO_SCHEDULE = "NO_SCHEDULE"
    """No next attempt scheduled (not known): nothing to decide on."""


@dataclass(frozen=True)
class ParkCheck:
    verdict: Verdict
    reason: str
    why: Why | None = None


def park_check(
    state: TaskState,
    rule: RetryRule,
    *,
    now: datetime,
    margin_s: float,
    retention: timedelta = RETENTION,
    expiry_margin_s: float = 86400.0,
) -> ParkCheck:
    """Should this task be parked now? `rule` is its effective rule (RetryRule.merged)."""
    if state.in_flight:
        return ParkCheck(Verdict.IN_FLIGHT, "an attempt is running: its answer decides")
    if not state.last_failed:
        return ParkCheck(Verdict.NOT_FAILING, "its last attempt did not fail")
    if state.schedule_time is None:
        return ParkCheck(Verdict.NO_SCHEDULE, "no next attempt is scheduled")
    attempt_s = state.dispatch_deadline_s or DEFAULT_ATTEMPT_S
    # The next attempt starts at its schedule time at the earliest (later in a backlog) and is
    # answered within its dispatch deadline: judged at that latest answer, as the rule is only
    # ever more satisfied later.
    next_at = max(state.schedule_time, now)
    answered_at = next_at + timedelta(seconds=attempt_s)
    first = state.first_dispatch_time or state.last_dispatch_time or next_at
    attempts = state.dispatch_count + 1
    why: Why | None = None
    if retries_exhausted(rule, attempts, (answered_at - first).total_seconds()):
        why = Why.LAST_ATTEMPT
        reason = f"attempt {attempts} would be its last ({rule.describe()})"
    elif state.create_time is not None:
        expires_at = state.create_time + retention
        if answered_at >= expires_at - timedelta(seconds=expiry_margin_s):
            why = Why.RETENTION
            reason = (
                f"Cloud Tasks deletes it at {_iso(expires_at)} (retention), by its next attempt "
                f"at {_iso(next_at)}"
            )
    if why is None:
        return ParkCheck(
            Verdict.NOT_LAST, f"attempt {attempts} is not its last ({rule.describe()})"
        )
    ahead_s = (state.schedule_time - now).total_seconds()
    if ahead_s < margin_s:
        when = f"in {ahead_s:.0f}s" if ahead_s >= 0 else f"{-ahead_s:.0f}s ago"
        return ParkCheck(
            Verdict.TOO_SOON,
            f"{reason}, but it is due {when}, within REDRIVE_PARK_MARGIN_S ({margin_s:g}s): "
            "Cloud Tasks could dispatch it while it is parked",
            why,
        )
    return ParkCheck(Verdict.PARK, reason, why)


# ---------------------------------------------------------------------------------------------
# Names


def parked_name(parking: QueueName, origin: TaskName, dispatch_count: int, rung: int) -> TaskName:
    """A parked copy's name, one per failure and claim rung: readable (origin queue and task)
    and unique (a hash of the origin's full name, its failed attempt and the rung), so a retried
    CreateTask meets ALREADY_EXISTS instead of parking twice."""
    digest = hashlib.sha256(f"{origin}|{dispatch_count}|{rung}".encode()).hexdigest()[:12]
    suffix = f"--pk{digest}"
    readable = f"{origin.queue}--{original_id(origin)}"
    return parking.task(readable[: _ID_MAX - _PARKED_SUFFIX_LEN] + suffix)


def restored_name(origin: TaskName, parked: TaskName, rung: int) -> TaskName:
    """The restored task's name in the origin queue: the original's id and a copy suffix (as a
    re-create's copy has, so that repeated restores never grow the name), one per parked copy
    and claim rung."""
    digest = hashlib.sha256(f"{parked}|restore|{rung}".encode()).hexdigest()[:12]
    suffix = f"--rc{digest}"
    return origin.queue_name.task(original_id(origin)[: _ID_MAX - len(suffix)] + suffix)


# ---------------------------------------------------------------------------------------------
# What a parked copy records (in its URL, which a BASIC listing returns)


@dataclass(frozen=True)
class Parked:
    """A parked copy's origin and circumstances."""

    origin: TaskName
    dispatch_count: int
    """The failed attempt's dispatch count: the failure this copy stands for."""
    parked_at: datetime
    why: Why
    api: str
    """The API version whose Task the body holds (`v2` or `v2beta3`)."""
    status: str | None = None
    status_code: int | None = None
    failed_at: datetime | None = None
    first_attempt_at: datetime | None = None
    origin_created_at: datetime | None = None
    owner: str = ""

    def url(self) -> str:
        query = {
            "task": str(self.origin),
            "dc": str(self.dispatch_count),
            "at": _iso(self.parked_at),
            "why": self.why.value,
            "api": self.api,
            "status": self.status or "",
            "code": "" if self.status_code is None else str(self.status_code),
            "failed": _iso(self.failed_at),
            "first": _iso(self.first_attempt_at),
            "created": _iso(self.origin_created_at),
            "by": url_safe_owner(self.owner),
        }
        return f"https://{PARKED_HOST}{PARKED_PATH}?{urlencode(query)}"

    @classmethod
    def from_url(cls, url: str | None) -> Parked | None:
        """The record a parked copy's URL holds; None for any other URL (never raises)."""
        if not url:
            return None
        try:
            parts = urlsplit(url)
            if parts.hostname != PARKED_HOST or parts.path != PARKED_PATH:
                return None
            query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            code = query.get("code") or None
            return cls(
                origin=TaskName.parse(query["task"]),
                dispatch_count=int(query["dc"]),
                parked_at=_time(query["at"]) or datetime.min,
                why=Why(query["why"]),
                api=query.get("api") or "v2beta3",
                status=query.get("status") or None,
                status_code=int(code) if code is not None else None,
                failed_at=_time(query.get("failed")),
                first_attempt_at=_time(query.get("first")),
                origin_created_at=_time(query.get("created")),
                owner=query.get("by", ""),
            )
        except (KeyError, ValueError, InvalidName):
            return None

    @classmethod
    def of(cls, state: TaskState, *, why: Why, api: str, at: datetime, owner: str) -> Parked:
        return cls(
            origin=state.name,
            dispatch_count=state.dispatch_count,
            parked_at=at,
            why=why,
            api=api,
            status=state.last_status,
            status_code=state.last_status_code,
            failed_at=state.failed_at,
            first_attempt_at=state.first_dispatch_time,
            origin_created_at=state.create_time,
            owner=owner,
        )

    def expires_at(self, created_at: datetime | None, retention: timedelta = RETENTION) -> datetime:
        """When Cloud Tasks' retention removes the parked copy (created at `created_at`)."""
        return (created_at or self.parked_at) + retention


URL_MAX = 2083
"""Cloud Tasks' limit on an HttpRequest URL: a parked copy's URL, with the longest names the
grammar allows, stays within it (tests/test_parking.py)."""


def url_safe_owner(owner: str) -> str:
    """The owner as a parked copy's URL records it: printable ASCII (owners are message ids, job
    and run names), at most 100 characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in owner)[:100]


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


@dataclass(frozen=True)
class RestoreScope:
    """Which parked tasks a restore takes: by origin queue, by task (the origin's name or the
    parked copy's), or all; a deploy's restore only those whose failure came before it."""

    queues: frozenset[QueueName] = frozenset()
    tasks: frozenset[str] = frozenset()
    everything: bool = False
    fixed_by: datetime | None = None
    """A deploy's time: only failures before it are fixed by it."""
    again: bool = False
    """An operator's word that an earlier restore whose result can no longer be told did not
    run (see redrive.pipeline.parking)."""

    def takes(self, parked: Parked, copy: TaskName) -> bool:
        named = (
            self.everything
            or parked.origin.queue_name in self.queues
            or str(parked.origin) in self.tasks
            or str(copy) in self.tasks
        )
        if not named:
            return False
        return self.fixed_by is None or (parked.failed_at or parked.parked_at) < self.fixed_by
