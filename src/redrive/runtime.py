"""The runtime of one function instance: settings read once, adapters built once, the throttle.

Cloud Functions reuses an instance for many requests, so the gRPC channels, the token bucket and
the host→service cache live here for the instance's lifetime. Everything heavy is imported on first
use, so `import main` (a cold start) stays light.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from redrive.adapters.claims import Claims
from redrive.adapters.clients import run_clients, tasks_client
from redrive.adapters.cloudrun import CloudRun
from redrive.adapters.cloudtasks import CloudTasks
from redrive.adapters.fixcheck import FixCheck, make_fix_check
from redrive.adapters.log import OutcomeLog
from redrive.adapters.ratelimit import TokenBucket
from redrive.core import errors
from redrive.core.config import Settings
from redrive.core.decide import Decision, Policy, for_error
from redrive.core.records import COMPONENT


class Runtime:
    """Everything a handler needs, built lazily and once. Tests build their own."""

    def __init__(
        self,
        settings: Settings,
        *,
        tasks: CloudTasks | None = None,
        cloudrun: CloudRun | None = None,
        log: OutcomeLog | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.clock: Callable[[], datetime] = clock or settings.now
        self.log = log or OutcomeLog()
        self.limiter = TokenBucket(settings.direct_rate_per_s, burst=1.0)
        self._tasks = tasks
        self._cloudrun = cloudrun
        self._claims: Claims | None = None
        self.started_s = time.monotonic()
        self._lock = threading.Lock()
        self.fix_check: FixCheck = make_fix_check(settings, self.cloudrun)

    def for_error(self, err: errors.RedriveError) -> Decision:
        """The outcome of an error, in this instance's circumstances (its age, for a missing
        permission: see REDRIVE_PERMISSION_GRACE_S)."""
        young = time.monotonic() - self.started_s < self.settings.permission_grace_s
        return for_error(err, permission_grace=young)

    @property
    def claims(self) -> Claims | None:
        """The claims register (REDRIVE_CLAIMS_QUEUE), or None when no claims queue is set."""
        queue = self.settings.claims_queue
        if queue is None:
            return None
        tasks = self.tasks
        with self._lock:
            if self._claims is None:
                # A RunTask that timed out may still dispatch on the service for about as long as
                # its deadline: twice the RPC timeout is when its outcome shows in the task.
                window_s = 2 * self.settings.rpc_timeout_s
                self._claims = Claims(tasks, queue, window_s=window_s, clock=self.clock)
            return self._claims

    @property
    def tasks(self) -> CloudTasks:
        with self._lock:
            if self._tasks is None:
                self._tasks = CloudTasks(
                    tasks_client(self.settings),
                    api_version=self.settings.tasks_api,
                    response_view=self.settings.response_view,
                    retry_deadline_s=self.settings.retry_deadline_s,
                    call_timeout_s=self.settings.rpc_timeout_s,
                )
            return self._tasks

    def cloudrun(self) -> CloudRun:
        with self._lock:
            if self._cloudrun is None:
                services, revisions = run_clients(self.settings)
                self._cloudrun = CloudRun(
                    services,
                    revisions,
                    retry_deadline_s=self.settings.retry_deadline_s,
                    call_timeout_s=self.settings.rpc_timeout_s,
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
