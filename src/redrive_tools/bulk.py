"""`redrive status` and `redrive cancel`: bulk re-drives read back from Cloud Tasks and the logs.

What a re-drive's lines said (its plan, outcome and SWEEP lines, folded by
`redrive.core.redrives.fold`) is joined with what Cloud Tasks shows now:

- the jobs still waiting in the redrive queue with that re-drive's id (listed with the FULL view:
  the id is in each job's body, which run_job believes as the queue holds it);
- each re-run task's fate, from one listing of its queue (BASIC view): gone (succeeded), answered
  with a failure after its forced attempt (failed again), or still to be answered;
- the redrive queue's current dispatch rate, for the ETA.

Cancel deletes only the waiting jobs whose body names that id, a few at a time; a job that is
being dispatched meanwhile is refused by run_job (it acts only on a job the queue still holds).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from redrive.adapters.cloudtasks import CloudTasks, Deleted
from redrive.core import errors
from redrive.core.jobs import Job
from redrive.core.names import InvalidName, QueueName, TaskName
from redrive.core.redrives import Redrive, Rerun, Status, fold, settle, status_of
from redrive.core.state import TaskState

PAGE_SIZE = 1000
DELETE_WORKERS = 16
"""DeleteTask calls in flight at once while cancelling."""


@dataclass
class Waiting:
    """The redrive queue's waiting jobs, by re-drive id."""

    jobs: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Re-drive id → names of its jobs still waiting."""
    others: int = 0
    """Jobs of single failure signals (no re-drive id), or not redrive's."""


def waiting_jobs(tasks: CloudTasks, redrive_queue: QueueName, deadline_s: float) -> Waiting:
    """Every job waiting in the redrive queue, grouped by the re-drive that made it."""
    found = Waiting()
    token = ""
    while True:
        page, token = tasks.list_full_page(
            redrive_queue, token, page_size=PAGE_SIZE, deadline_s=deadline_s
        )
        for name, body in page:
            try:
                rid = Job.parse(body).redrive
            except errors.InvalidJobError:
                rid = None
            if rid is None:
                found.others += 1
            else:
                found.jobs[rid].append(name)
        if not token:
            return found


def reruns(
    tasks: CloudTasks, redrives: Iterable[Redrive], deadline_s: float
) -> dict[str, dict[str, Rerun]]:
    """Re-drive id → task → its fate now; each involved queue is listed once (BASIC view)."""
    wanted: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = defaultdict(list)
    for redrive in redrives:
        for task, run in redrive.dispatched.items():
            look = str(run.get("copy") or task)  # a re-create: its copy carries the work
            try:
                queue = str(TaskName.parse(look).queue_name)
            except InvalidName:
                continue
            wanted[queue].append((redrive.redrive_id, task, run))
    fates: dict[str, dict[str, Rerun]] = defaultdict(dict)
    for queue, items in wanted.items():
        names = {str(item[2].get("copy") or item[1]) for item in items}
        now = _listed(tasks, QueueName.parse(queue), names, deadline_s)
        for rid, task, rerun in items:
            state = now.get(str(rerun.get("copy") or task))
            fates[rid][task] = settle(rerun, state.summary() if state else None)
    return fates


def _listed(
    tasks: CloudTasks, queue: QueueName, names: set[str], deadline_s: float
) -> dict[str, TaskState]:
    """The tasks of `names` that the queue still holds (only those are kept in memory)."""
    held: dict[str, TaskState] = {}
    token = ""
    try:
        while True:
            page, token = tasks.list_page(queue, token, page_size=PAGE_SIZE, deadline_s=deadline_s)
            for task in page:
                state = TaskState.from_task(task)
                if str(state.name) in names:
                    held[str(state.name)] = state
            if not token:
                return held
    except errors.NotFoundError:
        return held  # the queue is gone: so are its tasks


def statuses(
    records: Iterable[Mapping[str, Any]],
    *,
    tasks: CloudTasks | None,
    redrive_queue: QueueName | None,
    deadline_s: float,
) -> tuple[list[Status], Waiting | None]:
    """Every re-drive the records or the redrive queue know of, with its status now."""
    redrives = fold(records)
    waiting: Waiting | None = None
    rate: float | None = None
    if tasks is not None and redrive_queue is not None:
        waiting = waiting_jobs(tasks, redrive_queue, deadline_s)
        for rid in waiting.jobs:
            redrives.setdefault(rid, Redrive(rid, mode="queued"))
        info = tasks.queue_rates(redrive_queue)
        rate = info.rate_per_s if info else None
    fates = reruns(tasks, redrives.values(), deadline_s) if tasks is not None else {}
    out = []
    for rid, redrive in redrives.items():
        own_rate = redrive.rate_per_s
        if redrive.mode == "queued" and rate is not None:
            own_rate = min(rate, own_rate) if own_rate else rate
        out.append(
            status_of(
                redrive,
                waiting=len(waiting.jobs.get(rid, ())) if waiting else 0,
                reruns=fates.get(rid, {}),
                rate_per_s=own_rate,
            )
        )
    return out, waiting


@dataclass(frozen=True)
class Cancelled:
    deleted: int
    gone: int
    failed: int
    reasons: tuple[str, ...]


def cancel(tasks: CloudTasks, redrive_queue: QueueName, rid: str, deadline_s: float) -> Cancelled:
    """Delete the re-drive's waiting jobs (and only those)."""
    names = waiting_jobs(tasks, redrive_queue, deadline_s).jobs.get(rid, [])

    def delete(name: str) -> Deleted | errors.RedriveError:
        try:
            return tasks.delete(TaskName.parse(name))
        except errors.RedriveError as err:
            return err

    with ThreadPoolExecutor(DELETE_WORKERS, thread_name_prefix="redrive-cancel") as pool:
        answers = list(pool.map(delete, names))
    failures = [str(a)[:200] for a in answers if isinstance(a, errors.RedriveError)]
    return Cancelled(
        deleted=sum(1 for a in answers if a in (Deleted.YES, Deleted.PROBABLY)),
        gone=sum(1 for a in answers if a is Deleted.WAS_GONE),
        failed=len(failures),
        reasons=tuple(dict.fromkeys(failures)),
    )
