"""The Cloud Run Admin fake, reached through the real google-cloud-run clients over gRPC."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from cloudtasks_emulator import Emulator
from cloudtasks_emulator.clock import Clock
from cloudtasks_emulator.cloudrun import CloudRunFake
from cloudtasks_emulator.control import Control
from cloudtasks_emulator.errors import RpcError

SERVICE = "projects/acme/locations/europe-west1/services/billing"
REVISION_RE = re.compile(
    r"projects/acme/locations/europe-west1/services/billing/revisions/billing-(\d{5})-[a-z]{3}"
)


@dataclass
class Stack:
    fake: CloudRunFake
    control: Control
    services: run_v2.ServicesClient
    revisions: run_v2.RevisionsClient


@pytest.fixture
def stack() -> Iterator[Stack]:
    control = Control()
    fake = CloudRunFake(control, Clock())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(fake.grpc_handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Stack(
            fake,
            control,
            run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
            run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
        )
    finally:
        channel.close()
        server.stop(grace=None).wait()


def test_deployed_service_has_what_a_fix_check_reads(stack: Stack) -> None:
    at = datetime(2025, 11, 29, 8, 0, tzinfo=UTC)
    revision_name = stack.fake.deploy(SERVICE, at=at)
    match = REVISION_RE.fullmatch(revision_name)
    assert match is not None and match.group(1) == "00001"

    service = stack.services.get_service(name=SERVICE)
    assert service.name == SERVICE
    assert re.fullmatch(r"https://billing-[0-9a-f]{10}\.a\.run\.app", service.uri)
    assert service.uri in service.urls
    assert service.latest_ready_revision == revision_name
    assert service.latest_created_revision == revision_name
    assert service.create_time == at
    assert service.update_time == at
    assert service.reconciling is False
    assert service.terminal_condition.type_ == "Ready"
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    (status,) = service.traffic_statuses
    assert status.percent == 100
    assert status.revision == revision_name.rsplit("/", 1)[1]
    assert status.type_ == run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST

    revision = stack.revisions.get_revision(name=revision_name)
    assert revision.name == revision_name
    assert revision.service == "billing"
    assert revision.create_time == at
    ready = [c for c in revision.conditions if c.type_ == "Ready"]
    assert ready and ready[0].state == run_v2.Condition.State.CONDITION_SUCCEEDED


def test_redeploy_moves_the_latest_revision_and_keeps_the_service(stack: Stack) -> None:
    first_at = datetime(2025, 11, 29, 8, 0, tzinfo=UTC)
    first = stack.fake.deploy(SERVICE, at=first_at)
    before = stack.services.get_service(name=SERVICE)
    second = stack.fake.deploy(SERVICE)  # now, on the emulated clock
    after = stack.services.get_service(name=SERVICE)

    match = REVISION_RE.fullmatch(second)
    assert match is not None and match.group(1) == "00002"
    assert after.latest_ready_revision == second != first
    assert after.create_time == first_at
    assert after.update_time > first_at
    assert after.uri == before.uri
    assert after.uid == before.uid
    assert after.generation == 2
    assert stack.revisions.get_revision(name=second).create_time == after.update_time
    # The older revision is still there.
    assert stack.revisions.get_revision(name=first).create_time == first_at


def test_deploy_with_uri_points_the_service_at_it(stack: Stack) -> None:
    stack.fake.deploy(SERVICE, uri="http://127.0.0.1:9999")
    service = stack.services.get_service(name=SERVICE)
    assert service.uri == "http://127.0.0.1:9999"
    assert list(service.urls) == ["http://127.0.0.1:9999"]
    stack.fake.deploy(SERVICE, uri="http://127.0.0.1:8888")
    assert stack.services.get_service(name=SERVICE).uri == "http://127.0.0.1:8888"
    stack.fake.deploy(SERVICE)
    assert stack.services.get_service(name=SERVICE).uri == "http://127.0.0.1:8888"


@pytest.mark.parametrize(
    "name",
    [
        "billing",
        "projects/acme/locations/europe-west1/services/Billing",
        "projects/acme/locations/europe-west1/services/billing-",
        "projects/acme/locations/europe-west1/queues/billing",
        f"projects/acme/locations/europe-west1/services/{'a' * 50}",
    ],
)
def test_deploy_refuses_malformed_names(stack: Stack, name: str) -> None:
    with pytest.raises(RpcError) as err:
        stack.fake.deploy(name)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_and_malformed_names(stack: Stack) -> None:
    with pytest.raises(gexc.NotFound):
        stack.services.get_service(name=SERVICE)
    revision = stack.fake.deploy(SERVICE)
    with pytest.raises(gexc.NotFound):
        stack.revisions.get_revision(name=f"{SERVICE}/revisions/billing-00009-abc")
    with pytest.raises(gexc.NotFound):
        stack.revisions.get_revision(name=revision.replace("/billing/", "/other/"))
    with pytest.raises(gexc.NotFound):
        stack.revisions.list_revisions(parent="projects/acme/locations/europe-west1/services/x")
    with pytest.raises(gexc.InvalidArgument):
        stack.services.get_service(name="services/billing")
    with pytest.raises(gexc.InvalidArgument):
        stack.revisions.get_revision(name=SERVICE)
    with pytest.raises(gexc.InvalidArgument):
        stack.services.list_services(parent="projects/acme")
    with pytest.raises(gexc.InvalidArgument):
        stack.services.list_services(
            request={"parent": "projects/acme/locations/-", "page_token": "%%%"}
        )


def test_list_services_pages_and_filters(stack: Stack) -> None:
    names = [f"projects/acme/locations/europe-west1/services/svc-{i}" for i in range(5)]
    for name in names:
        stack.fake.deploy(name)
    stack.fake.deploy("projects/acme/locations/us-central1/services/elsewhere")
    stack.fake.deploy("projects/other/locations/europe-west1/services/svc-0")

    pager = stack.services.list_services(
        request={"parent": "projects/acme/locations/europe-west1", "page_size": 2}
    )
    pages = list(pager.pages)
    assert [len(p.services) for p in pages] == [2, 2, 1]
    assert [s.name for p in pages for s in p.services] == names
    assert pages[-1].next_page_token == ""

    everywhere = stack.services.list_services(parent="projects/acme/locations/-")
    assert len(list(everywhere)) == 6


def test_list_revisions_newest_first_with_paging(stack: Stack) -> None:
    deployed = [stack.fake.deploy(SERVICE) for _ in range(5)]
    other = stack.fake.deploy("projects/acme/locations/europe-west1/services/mail")

    pager = stack.revisions.list_revisions(request={"parent": SERVICE, "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.revisions) for p in pages] == [2, 2, 1]
    assert [r.name for p in pages for r in p.revisions] == list(reversed(deployed))

    all_services = stack.revisions.list_revisions(parent="projects/acme/locations/-/services/-")
    assert {r.name for r in all_services} == {*deployed, other}


def test_a_revision_deployed_between_pages_does_not_shift_the_listing(stack: Stack) -> None:
    deployed = [stack.fake.deploy(SERVICE) for _ in range(4)]
    first = stack.revisions.list_revisions(request={"parent": SERVICE, "page_size": 2})
    newest = stack.fake.deploy(SERVICE)
    rest = stack.revisions.list_revisions(
        request={"parent": SERVICE, "page_size": 10, "page_token": first.next_page_token}
    )
    assert [r.name for r in first.revisions] == deployed[:1:-1]
    assert [r.name for r in rest] == deployed[1::-1]
    assert newest not in [r.name for r in rest.revisions]


def test_every_call_goes_through_the_control(stack: Stack) -> None:
    revision = stack.fake.deploy(SERVICE)
    stack.services.get_service(name=SERVICE)
    list(stack.services.list_services(parent="projects/acme/locations/-"))
    stack.revisions.get_revision(name=revision)
    list(stack.revisions.list_revisions(parent=SERVICE))
    assert stack.control.call_counts() == {
        "run.GetService": 1,
        "run.ListServices": 1,
        "run.GetRevision": 1,
        "run.ListRevisions": 1,
    }

    stack.control.fail("run.GetService", grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(gexc.PermissionDenied):
        stack.services.get_service(name=SERVICE)
    assert stack.services.get_service(name=SERVICE).name == SERVICE

    stack.control.fail("run.GetRevision", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(gexc.ServiceUnavailable):
        stack.revisions.get_revision(name=revision, retry=None)
    assert stack.control.call_counts()["run.GetRevision"] == 2


def test_new_revisions_are_dated_by_the_emulated_clock(stack: Stack) -> None:
    clock = Clock(time_scale=3600.0)
    fake = CloudRunFake(stack.control, clock)
    before = clock.now()
    name = fake.deploy(SERVICE)
    after = clock.now()
    created = fake.get_revision(run_v2.GetRevisionRequest(name=name)).create_time
    assert before <= created <= after


def test_whole_emulator_deploy_over_rest_read_over_grpc() -> None:
    """A standalone emulator: deploy through the REST control endpoint, read the service back
    through google-cloud-run at CLOUD_RUN_EMULATOR_HOST."""
    with Emulator() as emu:
        target = emu.env()["CLOUD_RUN_EMULATOR_HOST"]
        reply = httpx.post(
            f"{emu.rest_url}/_emulator/run/deploy",
            json={"service": SERVICE, "uri": "http://127.0.0.1:8080"},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        revision = reply.json()["revision"]
        channel = grpc.insecure_channel(target)
        try:
            services = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel))
            revisions = run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel))
            service = services.get_service(name=SERVICE)
            assert service.uri == "http://127.0.0.1:8080"
            assert service.latest_ready_revision == revision
            assert revisions.get_revision(name=revision).name == revision
        finally:
            channel.close()
        assert emu.control.call_counts()["run.GetService"] == 1
