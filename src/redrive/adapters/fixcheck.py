"""Fix-check strategies: is a fix for this task's failure live, and since when?

- revision: the Cloud Run service behind the task (REDRIVE_SERVICE_MAP first, because explicit
  configuration beats inference; else the service whose URL has the task's target host) and its
  latest ready revision's create time.
- static: REDRIVE_FIX_DEPLOYED_AT.
- none: always live (explicit operator runs).

The evidence is data (`FixEvidence`); the decision core compares it with the failed attempt's time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from redrive.adapters.cloudrun import CloudRun
from redrive.core import errors
from redrive.core.config import Settings
from redrive.core.decide import FixEvidence
from redrive.core.names import TaskName
from redrive.core.state import TaskState


class FixCheck(Protocol):
    @property
    def strategy(self) -> str: ...

    def evidence(self, task: TaskName, state: TaskState) -> FixEvidence: ...


@dataclass(frozen=True)
class NoFixCheck:
    strategy: str = "none"

    def evidence(self, task: TaskName, state: TaskState) -> FixEvidence:
        return FixEvidence("none", note="fix check disabled (REDRIVE_FIX_CHECK=none)")


@dataclass(frozen=True)
class StaticFixCheck:
    deployed_at: datetime
    strategy: str = "static"

    def evidence(self, task: TaskName, state: TaskState) -> FixEvidence:
        return FixEvidence("static", live_since=self.deployed_at)


class RevisionFixCheck:
    strategy = "revision"

    def __init__(self, cloudrun: Callable[[], CloudRun], settings: Settings) -> None:
        # A factory, so that google-cloud-run is imported only when a revision check really runs.
        self._cloudrun = cloudrun
        self._settings = settings

    def service_for(self, task: TaskName, state: TaskState) -> str | None:
        mapped = self._settings.service_for_queue(task.queue_name)
        if mapped is not None:
            if "/" not in mapped:
                mapped = f"projects/{task.project}/locations/{task.location}/services/{mapped}"
            return mapped
        if state.target_url:
            return self._cloudrun().service_for_url(task.project, task.location, state.target_url)
        return None

    def evidence(self, task: TaskName, state: TaskState) -> FixEvidence:
        service = self.service_for(task, state)
        if service is None:
            return FixEvidence(
                "revision",
                note="no Cloud Run service for the task's target URL or in REDRIVE_SERVICE_MAP",
            )
        try:
            live = self._cloudrun().live_revision(service)
        except errors.NotFoundError:
            return FixEvidence("revision", service=service, note="service not found")
        note = "service is reconciling" if live.reconciling else None
        return FixEvidence(
            "revision",
            live_since=live.live_since,
            service=service,
            revision=live.revision,
            note=note,
        )


def make_fix_check(settings: Settings, cloudrun: Callable[[], CloudRun]) -> FixCheck:
    if settings.fix_check == "none":
        return NoFixCheck()
    if settings.fix_check == "static":
        assert settings.fix_deployed_at is not None  # Settings validates this
        return StaticFixCheck(settings.fix_deployed_at)
    return RevisionFixCheck(cloudrun, settings)
