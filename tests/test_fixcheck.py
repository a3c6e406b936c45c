# mypy: disable-error-code="no-untyped-call"
"""Fix-check strategies and the Cloud Run adapter, with fake Cloud Run clients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import run_v2

from redrive.adapters.cloudrun import CloudRun
from redrive.adapters.fixcheck import NoFixCheck, RevisionFixCheck, StaticFixCheck, make_fix_check
from redrive.core import errors
from redrive.core.config import Settings
from redrive.core.names import TaskName
from redrive.core.state import TaskState

T_REV = datetime(2026, 11, 29, 8, 30, tzinfo=UTC)
TASK = TaskName.parse("projects/acme/locations/europe-west1/queues/billing/tasks/inv-441")
SVC = "projects/acme/locations/europe-west1/services/billing"
REV = f"{SVC}/revisions/billing-00002-abc"
STATE = TaskState(
    TASK, 3, 3, last_status_code=13, target_url="https://billing-abc123-ew.a.run.app/invoice"
)


class FakeRun:
    """Services and revisions clients in one: a dict of services, faults per method."""

    def __init__(self, reconciling: bool = False) -> None:
        self.services = {
            SVC: run_v2.Service(
                name=SVC,
                uri="https://billing-abc123-ew.a.run.app",
                urls=["https://billing-123456789012.europe-west1.run.app"],
                latest_ready_revision=REV,
                latest_created_revision=REV,
                reconciling=reconciling,
            ),
            "projects/acme/locations/europe-west1/services/mail": run_v2.Service(
                name="projects/acme/locations/europe-west1/services/mail",
                uri="https://mail-abc123-ew.a.run.app",
            ),
        }
        self.revisions = {REV: run_v2.Revision(name=REV, service=SVC, create_time=T_REV)}
        self.faults: dict[str, list[Exception]] = {}
        self.calls: list[str] = []

    def _fault(self, method: str) -> None:
        self.calls.append(method)
        if self.faults.get(method):
            raise self.faults[method].pop(0)

    def list_services(self, request: Any = None, **kwargs: Any) -> Any:
        self._fault("list_services")
        return [s for n, s in self.services.items() if n.startswith(request["parent"] + "/")]

    def get_service(self, request: Any = None, **kwargs: Any) -> Any:
        self._fault("get_service")
        if request["name"] not in self.services:
            raise gexc.NotFound(request["name"])
        return self.services[request["name"]]

    def get_revision(self, request: Any = None, **kwargs: Any) -> Any:
        self._fault("get_revision")
        return self.revisions[request["name"]]


def cloudrun(fake: FakeRun) -> CloudRun:
    return CloudRun(fake, fake, retry_deadline_s=1.0, backoff_initial_s=0.001)


def test_revision_found_from_the_target_url_host():
    fake = FakeRun()
    run = cloudrun(fake)
    check = RevisionFixCheck(lambda: run, Settings())
    ev = check.evidence(TASK, STATE)
    assert (ev.strategy, ev.service, ev.revision, ev.live_since) == ("revision", SVC, REV, T_REV)
    # The host → service answer is cached per instance; the revision is always read afresh.
    check.evidence(TASK, STATE)
    assert fake.calls.count("list_services") == 1 and fake.calls.count("get_revision") == 2


def test_revision_found_through_the_second_url_form():
    run = cloudrun(FakeRun())
    state = TaskState(TASK, target_url="https://billing-123456789012.europe-west1.run.app/x")
    assert RevisionFixCheck(lambda: run, Settings()).evidence(TASK, state).service == SVC


def test_service_map_wins_and_short_names_are_completed():
    fake = FakeRun()
    run = cloudrun(fake)
    settings = Settings.from_env(
        {"REDRIVE_SERVICE_MAP": '{"billing": ["' + str(TASK.queue_name) + '"]}'}
    )
    ev = RevisionFixCheck(lambda: run, settings).evidence(TASK, TaskState(TASK))
    assert ev.service == SVC and ev.live_since == T_REV
    assert "list_services" not in fake.calls


def test_no_service_found_gives_no_evidence():
    run = cloudrun(FakeRun())
    state = TaskState(TASK, target_url="https://elsewhere.example/x")
    ev = RevisionFixCheck(lambda: run, Settings()).evidence(TASK, state)
    assert ev.live_since is None and ev.note and "REDRIVE_SERVICE_MAP" in ev.note


def test_reconciling_service_gives_no_evidence():
    run = cloudrun(FakeRun(reconciling=True))
    ev = RevisionFixCheck(lambda: run, Settings()).evidence(TASK, STATE)
    assert ev.live_since is None and ev.note == "service is reconciling"


def test_unknown_mapped_service_gives_no_evidence():
    run = cloudrun(FakeRun())
    settings = Settings.from_env(
        {"REDRIVE_SERVICE_MAP": '{"gone": ["projects/acme/locations/europe-west1/queues/billing"]}'}
    )
    ev = RevisionFixCheck(lambda: run, settings).evidence(TASK, STATE)
    assert ev.live_since is None and ev.note == "service not found"


def test_transient_cloud_run_faults_are_retried():
    fake = FakeRun()
    fake.faults["get_service"] = [gexc.ServiceUnavailable("blip")]
    ev = RevisionFixCheck(lambda: cloudrun(fake), Settings()).evidence(TASK, STATE)
    assert ev.live_since == T_REV and fake.calls.count("get_service") == 2


def test_permission_denied_is_translated():
    fake = FakeRun()
    fake.faults["list_services"] = [gexc.PermissionDenied("run.services.list")]
    with pytest.raises(errors.PermissionDeniedError):
        RevisionFixCheck(lambda: cloudrun(fake), Settings()).evidence(TASK, STATE)


def test_factory_and_simple_strategies():
    def never() -> CloudRun:
        raise AssertionError("Cloud Run must not be touched")

    assert isinstance(make_fix_check(Settings(fix_check="none"), never), NoFixCheck)
    static = make_fix_check(Settings(fix_check="static", fix_deployed_at=T_REV), never)
    assert isinstance(static, StaticFixCheck)
    assert static.evidence(TASK, STATE).live_since == T_REV
    assert NoFixCheck().evidence(TASK, STATE).covers(None)
    assert isinstance(make_fix_check(Settings(), never), RevisionFixCheck)
