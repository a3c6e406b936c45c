"""Cloud Run Admin API v2 fake (Services, Revisions) for the revision fix check.

Only what a fix check reads is modelled: a service with its URLs, its latest created and ready
revision, times and a Ready condition, and revisions with their creation time. Services come into
being through `deploy` (the emulator's control endpoint, or a test calling it directly), never
through the API, because the real CreateService is a long-running operation that nothing in
a fix check needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import re
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import grpc
from google.api import launch_stage_pb2
from google.cloud.run_v2 import types as run_types

from cloudtasks_emulator.errors import RpcError

SERVICES_SERVICE = "google.cloud.run.v2.Services"
REVISIONS_SERVICE = "google.cloud.run.v2.Revisions"

# Project ids or numbers, region names, and Cloud Run service ids (lowercase letters, digits and
# hyphens, starting with a letter, not ending with a hyphen, at most 49 characters).
_PROJECT = r"[a-z0-9][a-z0-9:.\-]{0,99}"
_LOCATION = r"[a-z0-9][a-z0-9\-]{0,62}"
_SERVICE_ID = r"[a-z](?:[a-z0-9\-]{0,47}[a-z0-9])?"
_REVISION_ID = r"[a-z](?:[a-z0-9\-]{0,61}[a-z0-9])?"
SERVICE_NAME_RE = re.compile(
    rf"projects/({_PROJECT})/locations/({_LOCATION})/services/({_SERVICE_ID})"
)
REVISION_NAME_RE = re.compile(
    rf"projects/({_PROJECT})/locations/({_LOCATION})/services/({_SERVICE_ID})"
    rf"/revisions/({_REVISION_ID})"
)
_SERVICES_PARENT_RE = re.compile(rf"projects/({_PROJECT})/locations/({_LOCATION}|-)")
_REVISIONS_PARENT_RE = re.compile(
    rf"projects/({_PROJECT})/locations/({_LOCATION}|-)/services/({_SERVICE_ID}|-)"
)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class CallGate(Protocol):
    """The part of the emulator's Control the fake needs: count, delay or fail a call."""

    def before_call(self, method: str) -> None: ...


class EmulatedClock(Protocol):
    def now(self) -> datetime: ...


@dataclass
class _Revision:
    name: str
    service_name: str
    uid: str
    generation: int
    create_time: datetime


@dataclass
class _Service:
    name: str
    uid: str
    uri: str
    urls: list[str]
    create_time: datetime
    update_time: datetime
    generation: int = 0
    revisions: list[_Revision] = field(default_factory=list)


def _invalid(message: str) -> RpcError:
    return RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _encode_token(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_token(token: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid(f"invalid page token: {token!r}") from None
    if not isinstance(key, list):
        raise _invalid(f"invalid page token: {token!r}")
    return key


_T = TypeVar("_T")


def _page(
    items: list[_T], key: Callable[[_T], list[Any]], page_size: int, page_token: str
) -> tuple[list[_T], str]:
    """Keyset paging over `items` sorted by `key`: a token is the key of the last item returned,
    so revisions created between two pages neither repeat nor shift what follows."""
    if page_size < 0:
        raise _invalid("page_size must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    ordered = sorted(items, key=key)
    if page_token:
        after = _decode_token(page_token)
        ordered = [item for item in ordered if key(item) > after]
    page = ordered[:size]
    next_token = _encode_token(key(page[-1])) if len(ordered) > size else ""
    return page, next_token


class CloudRunFake:
    """In-memory Cloud Run services and revisions, served over gRPC with the real message types."""

    def __init__(self, control: CallGate, clock: EmulatedClock) -> None:
        self.control = control
        self.clock = clock
        self._lock = threading.Lock()
        self._services: dict[str, _Service] = {}
        self._random = random.Random()

    # -- emulator side -------------------------------------------------------------------------

    def deploy(self, service: str, uri: str | None = None, at: datetime | None = None) -> str:
        """Create `service` if needed and a new ready revision now (or `at`); return its name.

        `uri` replaces the service's URL (e.g. a local target's address); without it a new service
        gets a `https://<id>-<hash>.a.run.app` address and an existing one keeps its own.
        """
        match = SERVICE_NAME_RE.fullmatch(service)
        if match is None:
            raise _invalid(
                "not a Cloud Run service name (want projects/P/locations/L/services/S): "
                f"{service!r}"
            )
        project, location, service_id = match.groups()
        when = at or self.clock.now()
        with self._lock:
            state = self._services.get(service)
            if state is None:
                digest = hashlib.sha256(f"{project}/{location}".encode()).hexdigest()
                default_uri = f"https://{service_id}-{digest[:10]}.a.run.app"
                # The deterministic URL form: <service>-<project number>.<region>.run.app.
                number = int(digest[10:22], 16) % 10**12
                state = _Service(
                    name=service,
                    uid=str(uuid.uuid4()),
                    uri=uri or default_uri,
                    urls=[f"https://{service_id}-{number:012d}.{location}.run.app", default_uri],
                    create_time=when,
                    update_time=when,
                )
                if uri:
                    state.urls = [uri]
                self._services[service] = state
            elif uri:
                state.uri = uri
                state.urls = [uri]
            state.generation += 1
            suffix = "".join(self._random.choices(string.ascii_lowercase, k=3))
            revision = _Revision(
                name=f"{service}/revisions/{service_id}-{state.generation:05d}-{suffix}",
                service_name=service,
                uid=str(uuid.uuid4()),
                generation=state.generation,
                create_time=when,
            )
            state.revisions.append(revision)
            state.update_time = when
            return revision.name

    def service_names(self) -> list[str]:
        with self._lock:
            return sorted(self._services)

    # -- API -----------------------------------------------------------------------------------

    def get_service(self, request: run_types.GetServiceRequest) -> run_types.Service:
        self.control.before_call("run.GetService")
        if SERVICE_NAME_RE.fullmatch(request.name) is None:
            raise _invalid(f"invalid service name: {request.name!r}")
        with self._lock:
            state = self._services.get(request.name)
            if state is None:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Service not found: {request.name}")
            return self._service_message(state)

    def list_services(
        self, request: run_types.ListServicesRequest
    ) -> run_types.ListServicesResponse:
        self.control.before_call("run.ListServices")
        match = _SERVICES_PARENT_RE.fullmatch(request.parent)
        if match is None:
            raise _invalid(f"invalid parent: {request.parent!r}")
        project, location = match.groups()
        with self._lock:
            chosen = [
                state
                for state in self._services.values()
                if (m := SERVICE_NAME_RE.fullmatch(state.name)) is not None
                and m.group(1) == project
                and location in ("-", m.group(2))
            ]
            page, token = _page(chosen, lambda s: [s.name], request.page_size, request.page_token)
            return run_types.ListServicesResponse(
                services=[self._service_message(s) for s in page], next_page_token=token
            )

    def get_revision(self, request: run_types.GetRevisionRequest) -> run_types.Revision:
        self.control.before_call("run.GetRevision")
        match = REVISION_NAME_RE.fullmatch(request.name)
        if match is None:
            raise _invalid(f"invalid revision name: {request.name!r}")
        with self._lock:
            state = self._services.get(request.name.split("/revisions/")[0])
            found = [r for r in state.revisions if r.name == request.name] if state else []
            if not found:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Revision not found: {request.name}")
            return self._revision_message(found[0])

    def list_revisions(
        self, request: run_types.ListRevisionsRequest
    ) -> run_types.ListRevisionsResponse:
        self.control.before_call("run.ListRevisions")
        match = _REVISIONS_PARENT_RE.fullmatch(request.parent)
        if match is None:
            raise _invalid(f"invalid parent: {request.parent!r}")
        project, location, service_id = match.groups()
        with self._lock:
            if location != "-" and service_id != "-" and request.parent not in self._services:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Service not found: {request.parent}")
            chosen: list[_Revision] = []
            for state in self._services.values():
                m = SERVICE_NAME_RE.fullmatch(state.name)
                assert m is not None  # deploy only stores valid names
                if (
                    m.group(1) == project
                    and location in ("-", m.group(2))
                    and (service_id in ("-", m.group(3)))
                ):
                    chosen.extend(state.revisions)
            # Per service, newest revision first, as Cloud Run lists them.
            page, token = _page(
                chosen,
                lambda r: [r.service_name, -r.generation],
                request.page_size,
                request.page_token,
            )
            return run_types.ListRevisionsResponse(
                revisions=[self._revision_message(r) for r in page], next_page_token=token
            )

    # -- messages ------------------------------------------------------------------------------

    def _service_message(self, state: _Service) -> run_types.Service:
        latest = state.revisions[-1]
        ready = run_types.Condition(
            type_="Ready",
            state=run_types.Condition.State.CONDITION_SUCCEEDED,
            last_transition_time=latest.create_time,
        )
        return run_types.Service(
            name=state.name,
            uid=state.uid,
            generation=state.generation,
            observed_generation=state.generation,
            create_time=state.create_time,
            update_time=state.update_time,
            creator="emulator@redrive.local",
            last_modifier="emulator@redrive.local",
            ingress=run_types.IngressTraffic.INGRESS_TRAFFIC_ALL,
            launch_stage=launch_stage_pb2.LaunchStage.GA,
            uri=state.uri,
            urls=list(state.urls),
            latest_ready_revision=latest.name,
            latest_created_revision=latest.name,
            reconciling=False,
            terminal_condition=ready,
            conditions=[
                run_types.Condition(
                    type_=kind,
                    state=run_types.Condition.State.CONDITION_SUCCEEDED,
                    last_transition_time=latest.create_time,
                )
                for kind in ("RoutesReady", "ConfigurationsReady")
            ],
            traffic=[
                run_types.TrafficTarget(
                    type_=run_types.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                    percent=100,
                )
            ],
            traffic_statuses=[
                run_types.TrafficTargetStatus(
                    type_=run_types.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                    revision=latest.name.rsplit("/", 1)[1],
                    percent=100,
                )
            ],
            etag=f'"{state.uid}-{state.generation}"',
        )

    def _revision_message(self, revision: _Revision) -> run_types.Revision:
        return run_types.Revision(
            name=revision.name,
            uid=revision.uid,
            generation=1,
            observed_generation=1,
            create_time=revision.create_time,
            update_time=revision.create_time,
            launch_stage=launch_stage_pb2.LaunchStage.GA,
            # The parent service's id, as Cloud Run reports it on revisions.
            service=revision.service_name.rsplit("/", 1)[1],
            reconciling=False,
            conditions=[
                run_types.Condition(
                    type_=kind,
                    state=run_types.Condition.State.CONDITION_SUCCEEDED,
                    last_transition_time=revision.create_time,
                )
                for kind in ("Ready", "ContainerHealthy", "ResourcesAvailable")
            ],
            creator="emulator@redrive.local",
            etag=f'"{revision.uid}"',
        )

    # -- gRPC ----------------------------------------------------------------------------------

    def grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        """Generic handlers for google.cloud.run.v2.Services and google.cloud.run.v2.Revisions."""

        def unary(
            fn: Callable[[Any], Any], request_type: Any, response_type: Any
        ) -> grpc.RpcMethodHandler:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return fn(request)
                except RpcError as err:
                    context.abort(err.code, err.message)

            return grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=request_type.deserialize,
                response_serializer=response_type.serialize,
            )

        services = grpc.method_handlers_generic_handler(
            SERVICES_SERVICE,
            {
                "GetService": unary(
                    self.get_service, run_types.GetServiceRequest, run_types.Service
                ),
                "ListServices": unary(
                    self.list_services,
                    run_types.ListServicesRequest,
                    run_types.ListServicesResponse,
                ),
            },
        )
        revisions = grpc.method_handlers_generic_handler(
            REVISIONS_SERVICE,
            {
                "GetRevision": unary(
                    self.get_revision, run_types.GetRevisionRequest, run_types.Revision
                ),
                "ListRevisions": unary(
                    self.list_revisions,
                    run_types.ListRevisionsRequest,
                    run_types.ListRevisionsResponse,
                ),
            },
        )
        return [services, revisions]
