"""Per-project request quotas, enforced as the real service enforces them: per minute, per project.

Cloud Tasks documents three request quotas (the Quotas and limits page): force-run (RunTask) 60
a minute, list calls (ListTasks, ListQueues, ListLocations) 600 a minute, and every API request
6,000,000 a minute. A call over a quota is refused with RESOURCE_EXHAUSTED and changes nothing;
a refused call does not use up quota.

Each quota is a sliding 60-second window of the emulated clock (so a time scale speeds quotas up
with everything else): a call is let through only if fewer than `limit` calls of its group were
let through in the 60 seconds before it. That makes "no 60-second window holds more than the
limit" hold exactly, which is what a caller throttling itself to the quota relies on.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2

from cloudtasks_emulator.clock import Clock
from cloudtasks_emulator.errors import RpcError

WINDOW_S = 60.0
SERVICE = "cloudtasks.googleapis.com"
RUN_METHODS = frozenset({"RunTask"})
LIST_METHODS = frozenset({"ListTasks", "ListQueues", "ListLocations"})


@dataclass(frozen=True)
class Quotas:
    """Calls allowed per minute and per project; None lifts that quota. Defaults: production."""

    run_per_min: int | None = 60
    list_per_min: int | None = 600
    api_per_min: int | None = 6_000_000

    def __post_init__(self) -> None:
        for name in ("run_per_min", "list_per_min", "api_per_min"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 (or None to lift it)")

    @classmethod
    def lifted(cls) -> Quotas:
        """No quota at all: for tests that burst calls on purpose."""
        return cls(run_per_min=None, list_per_min=None, api_per_min=None)


@dataclass(frozen=True)
class _Group:
    key: str  # quota metric id, as in the console's quota URLs
    metric: str  # display name of the quota metric
    limit_name: str  # display name of the limit
    limit_id: str  # the limit's id in ErrorInfo metadata


_RUN = _Group(
    "run_requests",
    "Force run requests",
    "Force run requests per minute",
    "ForceRunRequestsPerMinutePerProject",
)
_LIST = _Group(
    "list_requests", "List requests", "List requests per minute", "ListRequestsPerMinutePerProject"
)
_API = _Group(
    "api_requests", "API requests", "API requests per minute", "ApiRequestsPerMinutePerProject"
)


def project_number(project: str) -> str:
    """The consumer the real error names is the project *number*; the emulator has none, so a
    numeric project id is used as is and any other id gets a stable 12-digit stand-in."""
    if project.isdigit():
        return project
    digest = hashlib.sha256(project.encode()).digest()
    return str(10**11 + int.from_bytes(digest[:8], "big") % (9 * 10**11))


class QuotaGate:
    """Thread-safe sliding-window counters per (project, quota group)."""

    def __init__(self, quotas: Quotas, clock: Clock) -> None:
        self.quotas = quotas
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], deque[float]] = {}

    def _limits(self, method: str) -> list[tuple[_Group, int]]:
        q = self.quotas
        groups: list[tuple[_Group, int]] = []
        if method in RUN_METHODS and q.run_per_min is not None:
            groups.append((_RUN, q.run_per_min))
        if method in LIST_METHODS and q.list_per_min is not None:
            groups.append((_LIST, q.list_per_min))
        if q.api_per_min is not None:
            groups.append((_API, q.api_per_min))
        return groups

    def admit(self, method: str, project: str | None) -> None:
        """Let one call of `method` for `project` through, or raise RESOURCE_EXHAUSTED.

        Calls without a project (a malformed name) are not counted: the service refuses them
        for their argument before any quota is charged.
        """
        if project is None:
            return
        groups = self._limits(method)
        if not groups:
            return
        now = self.clock.now_s()
        horizon = now - WINDOW_S
        with self._lock:
            windows = []
            for group, limit in groups:
                window = self._windows.setdefault((project, group.key), deque())
                while window and window[0] <= horizon:
                    window.popleft()
                if len(window) >= limit:
                    raise quota_error(group, limit, project)
                windows.append(window)
            for window in windows:  # only a call let through uses up quota
                window.append(now)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


def quota_error(group: _Group, limit: int, project: str) -> RpcError:
    consumer = f"project_number:{project_number(project)}"
    message = (
        f"Quota exceeded for quota metric '{group.metric}' and limit '{group.limit_name}' of "
        f"service '{SERVICE}' for consumer '{consumer}'."
    )
    info = error_details_pb2.ErrorInfo(
        reason="RATE_LIMIT_EXCEEDED",
        domain="googleapis.com",
        metadata={
            "service": SERVICE,
            "consumer": f"projects/{project_number(project)}",
            "quota_metric": f"{SERVICE}/{group.key}",
            "quota_limit": group.limit_id,
            "quota_limit_value": str(limit),
            "quota_location": "global",
        },
    )
    help_links = error_details_pb2.Help(
        links=[
            error_details_pb2.Help.Link(
                description="Request a higher quota limit.",
                url="https://cloud.google.com/docs/quotas/help/request_increase",
            )
        ]
    )
    return RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, details=(info, help_links))
