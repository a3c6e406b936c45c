"""Cloud Run Admin API v2 adapter: which service serves a URL, and since when its revision is live.

Clients are parameters (`ServicesClient`/`RevisionsClient` protocols), built by
redrive.adapters.clients from google-cloud-run (imported lazily there). Errors are translated
into redrive's tree here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from redrive.adapters.cloudtasks import make_retry
from redrive.adapters.translate import translate


class ServicesClient(Protocol):
    def get_service(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def list_services(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...


class RevisionsClient(Protocol):
    def get_revision(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...


@dataclass(frozen=True)
class LiveRevision:
    service: str
    revision: str | None
    live_since: datetime | None
    reconciling: bool = False


class CloudRun:
    def __init__(
        self,
        services: ServicesClient,
        revisions: RevisionsClient,
        *,
        retry_deadline_s: float = 30.0,
        call_timeout_s: float = 20.0,
        backoff_initial_s: float = 0.1,
    ) -> None:
        self.services = services
        self.revisions = revisions
        self.retry_deadline_s = retry_deadline_s
        self.call_timeout_s = call_timeout_s
        self.backoff_initial_s = backoff_initial_s
        # host → service name; service URLs do not change for a service's lifetime, so one lookup
        # per instance and location is enough (a miss is not cached: the service may appear).
        self._by_host: dict[str, str] = {}
        self._lock = threading.Lock()

    def _call(self, fn: Any, request: dict[str, Any]) -> Any:
        retry = make_retry(self.retry_deadline_s, self.backoff_initial_s)
        try:
            return retry(lambda: fn(request=request, retry=None, timeout=self.call_timeout_s))()
        except Exception as err:
            raise translate(err) from None

    def service_for_url(self, project: str, location: str, url: str) -> str | None:
        """The full name of the service in project/location serving the URL's host."""
        host = (urlsplit(url).hostname or "").lower()
        if not host:
            return None
        with self._lock:
            if host in self._by_host:
                return self._by_host[host]
        parent = f"projects/{project}/locations/{location}"
        found: str | None = None
        for service in self._call(self.services.list_services, {"parent": parent}):
            urls = [service.uri, *list(getattr(service, "urls", []) or [])]
            hosts = {(urlsplit(u).hostname or "").lower() for u in urls if u}
            if host in hosts:
                found = str(service.name)
                break
        if found is not None:
            with self._lock:
                self._by_host[host] = found
        return found

    def live_revision(self, service: str) -> LiveRevision:
        """The latest ready revision and its create time; no time while the service reconciles.

        While `reconciling` is true, latest_ready_revision may be transient (wire-formats §5.3), so
        no evidence is claimed; after a failed rollout it keeps the last serving revision, whose
        older create time is the right answer.
        """
        svc = self._call(self.services.get_service, {"name": service})
        if bool(getattr(svc, "reconciling", False)):
            return LiveRevision(service, None, None, reconciling=True)
        name = str(svc.latest_ready_revision or "")
        if not name:
            return LiveRevision(service, None, None)
        rev = self._call(self.revisions.get_revision, {"name": name})
        created = rev.create_time
        live_since = None
        if isinstance(created, datetime):
            live_since = datetime(
                created.year,
                created.month,
                created.day,
                created.hour,
                created.minute,
                created.second,
                created.microsecond,
                tzinfo=created.tzinfo or UTC,
            )
        return LiveRevision(service, name, live_since)
