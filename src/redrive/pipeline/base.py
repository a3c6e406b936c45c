"""The pipeline's shared vocabulary: what a caller asks for (`Request`, `Act`), what every guard
allowed (`Pending`), the per-task lock, and the small steps both the run and the parking paths
use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from redrive.adapters.claims import Refusal
from redrive.core import errors
from redrive.core.decide import Failure, FixEvidence
from redrive.core.jobs import JobTask
from redrive.core.names import TaskName
from redrive.core.records import Result
from redrive.core.state import TaskState
from redrive.runtime import Runtime

NO_RUN_SLOT = "no_run_slot"
"""`Result.extra` key set when the throttle had no RunTask slot in time (nothing was done)."""
WITHDRAW_S = 1.0
"""A re-create's copy is withdrawn only while it is at least this far from due (the DeleteTask
must land before Cloud Tasks dispatches it)."""
STALE_AFTER_S = 0.5
"""A state older than this (a throttle wait, a listing) is read again before RunTask."""

EvidenceSource = FixEvidence | Callable[[TaskState], FixEvidence] | None
"""Fix evidence given outright (a job's, a deploy's), a function of the task's state (a sweep's
cache), or None: the configured fix check."""


class Act(StrEnum):
    """What to do with a task once every guard passed."""

    RUN = "run"
    """Force-run it now (RunTask): direct mode, run_job, the command line."""
    ENQUEUE = "enqueue"
    """Create one redrive job for it (queued mode); run_job does the RUN later."""
    RECREATE = "recreate"
    """Re-create it as a new task due now and delete the original (redrive.core.recreate)."""
    PARK = "park"
    """Park it when its next attempt would be its last and no fix is live (the patrol)."""
    RESTORE = "restore"
    """Restore a parked copy (`Request.parked`) into its origin queue (redrive.core.parking)."""


@dataclass(frozen=True)
class Request:
    """One failure and how the caller wants it handled."""

    failure: Failure
    act: Act
    evidence: EvidenceSource = None
    listed: TaskState | None = None
    """The state a sweep listed: decided on without a GetTask, read again before a RunTask."""
    throttle: bool = False
    """Wait for the in-process RunTask throttle (direct mode) before acting."""
    throttle_timeout_s: float | None = None
    """How long to wait for a RunTask slot; None: REDRIVE_RETRY_DEADLINE_S (at least 1 s). With no
    slot in time the Result is FAILED (429) and its `extra` says `no_run_slot`."""
    owner: str = "unknown"
    """Who acts: the delivery that may come back after a fault (`msg:<Pub/Sub message id>`,
    `job:<redrive job name>`, `cli:<run id>`; `@rd-...` for a bulk re-drive's); the claim is
    held in its name."""
    redrive_id: str | None = None
    """The bulk re-drive this request belongs to (core.redrives); its job carries it."""
    parked: TaskName | None = None
    """For `Act.RESTORE`: the parked copy (the failure's task is its origin)."""
    again: bool = False
    """For `Act.RESTORE`: an operator's word that an earlier restore whose result can no longer
    be told (over an hour ago) did not run: restore once more."""
    origin_gone: bool = False
    """For `Act.RESTORE`: a listing of the origin queue, made by this restore's sweep, held no
    task of the origin's name, so the original is gone for good (the name of a deleted task never
    comes back as that task) and the restore needs no GetTask of it."""


@dataclass(frozen=True)
class Pending:
    """A request every guard allowed, whose act has not happened yet."""

    request: Request
    state: TaskState
    fix: FixEvidence | None
    job: JobTask | None = None
    """For `Act.ENQUEUE`: the job to create."""


class TaskLocks:
    """One lock per task name, held while any thread uses it (then forgotten)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._held.get(key, (threading.Lock(), 0))
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)


TASK_LOCKS = TaskLocks()
"""Concurrent request threads of one instance run one task's read-decide-act one at a time, so a
duplicate delivery reads the task after the first one's RunTask and sees it dispatched."""


def withdraw(copy: TaskName, rt: Runtime) -> bool:
    """Delete a copy that must not run. True when it is gone (deleted, or never there)."""
    try:
        rt.tasks.delete(copy)
    except errors.RedriveError:
        return False
    return True


def refused(claimed: Refusal, state: TaskState, evidence: FixEvidence | None) -> Result:
    return Result(
        claimed.outcome,
        claimed.reason,
        claimed.http_status,
        state=state,
        fix=evidence,
        claim=claimed.fields(),
        retry_after_s=claimed.retry_after_s,
    )


def evidence_for(source: EvidenceSource, state: TaskState, rt: Runtime) -> FixEvidence:
    if source is None:
        return rt.fix_check.evidence(state.name, state)
    if isinstance(source, FixEvidence):
        return source
    return source(state)
