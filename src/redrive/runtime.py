"""Per-instance state: settings read once, clients created once, the direct-mode throttle.

Cloud Functions reuses an instance for many requests, so the gRPC channels, the token bucket and
the host→service cache live here for the instance's lifetime. Everything heavy is imported on first
use, so `import main` (a cold start) stays light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from redrive.cloudrun_client import CloudRun
from redrive.config import Settings
from redrive.decide import Policy
from redrive.fixcheck import FixCheck, make_fix_check
from redrive.outcome_log import COMPONENT, OutcomeLog
from redrive.ratelimit import TokenBucket
from redrive.tasks import CloudTasks


def tasks_module(api: str) -> Any:
    """google.cloud.tasks_v2 or tasks_v2beta3 (imported on first use: it is heavy)."""
    if api == "v2":
        from google.cloud import tasks_v2

        return tasks_v2
    from google.cloud import tasks_v2beta3

    return tasks_v2beta3


def tasks_client(settings: Settings) -> Any:
    """A CloudTasksClient of the configured API version; emulator over an insecure channel."""
    tasks_mod = tasks_module(settings.tasks_api)
    if settings.tasks_emulator_host:
        import grpc

        transport_cls = tasks_mod.services.cloud_tasks.transports.CloudTasksGrpcTransport
        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_mod.CloudTasksClient(transport=transport_cls(channel=channel))
    return tasks_mod.CloudTasksClient()


def run_clients(settings: Settings) -> tuple[Any, Any]:
    """(ServicesClient, RevisionsClient) of Cloud Run Admin v2; emulator: an insecure channel."""
    from google.cloud import run_v2

    if settings.run_emulator_host:
        import grpc
        from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
        from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

        channel = grpc.insecure_channel(settings.run_emulator_host)
        return (
            run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
            run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
        )
    return run_v2.ServicesClient(), run_v2.RevisionsClient()


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    """Everything a handler needs, built lazily and once. Tests build their own."""

    def __init__(
        self,
        settings: Settings,
        *,
        tasks: CloudTasks | None = None,
        cloudrun: CloudRun | None = None,
        log: OutcomeLog | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.clock = clock
        self.log = log or OutcomeLog()
        self.limiter = TokenBucket(settings.direct_rate_per_s, burst=1.0)
        self._tasks = tasks
        self._cloudrun = cloudrun
        self._lock = threading.Lock()
        self.fix_check: FixCheck = make_fix_check(settings, self.cloudrun)

    @property
    def tasks(self) -> CloudTasks:
        with self._lock:
            if self._tasks is None:
                self._tasks = CloudTasks(
                    tasks_client(self.settings),
                    api_version=self.settings.tasks_api,
                    response_view=self.settings.response_view,
                    retry_deadline_s=self.settings.retry_deadline_s,
                )
            return self._tasks

    def cloudrun(self) -> CloudRun:
        with self._lock:
            if self._cloudrun is None:
                services, revisions = run_clients(self.settings)
                self._cloudrun = CloudRun(
                    services, revisions, retry_deadline_s=self.settings.retry_deadline_s
                )
            return self._cloudrun

    def announce(self) -> None:
        """Log the mode and every start-up warning once (one JSON line each)."""
        s = self.settings
        mode = f"queued via {s.redrive_queue}" if s.queued else "direct"
        self.log.emit(
            {
                "event": "redrive.startup",
                "severity": "INFO",
                "message": f"redrive started: {mode}, fix check {s.fix_check}, API {s.tasks_api}"
                + (", DRY RUN" if s.dry_run else ""),
                "labels": {"component": COMPONENT},
            }
        )
        for warning in s.startup_warnings():
            self.log.emit(
                {
                    "event": "redrive.startup",
                    "severity": "WARNING",
                    "message": warning,
                    "labels": {"component": COMPONENT},
                }
            )


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The instance's runtime, created from the environment on first use."""
    global _runtime  # noqa: PLW0603 - one runtime per function instance, by design
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(Settings.from_env())
            _runtime.announce()
        return _runtime


def reset_runtime() -> None:
    """Forget the instance's runtime (tests that change the environment)."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        _runtime = None
