"""The grants as Terraform plans them, feature by feature: parking and re-create each on and off.

tests/test_terraform.py reads the HCL and ties each permission to the calls in the source, queue by
queue; here Terraform core evaluates the conditionals, so each combination of inputs must plan
exactly the permissions of the calls it enables, on the queues they act on, and nothing more.
"""

from __future__ import annotations

from typing import Any

import pytest
from tfstandin.check import CheckResult, check

from tests.terraform.conftest import FIXTURES, MODULE
from tests.test_terraform import (
    BASE_TARGET_CALLS,
    CALL_PERMISSION,
    FULL_VIEW,
    RECREATE_TARGET_PERMISSIONS,
    parking_permissions,
)

BILLING = "projects/acme-prod/locations/europe-west1/queues/billing"
TOKEN_ACCOUNT = "billing-tasks@acme-prod.iam.gserviceaccount.com"
OTHER_ACCOUNT = "mailer-tasks@acme-prod.iam.gserviceaccount.com"

CASES: dict[str, dict[str, str]] = {
    "off": {},
    "parking": {"parking": f'{{ enabled = true, task_service_accounts = ["{TOKEN_ACCOUNT}"] }}'},
    "recreate": {"recreate": f'{{ enabled = true, task_service_accounts = ["{TOKEN_ACCOUNT}"] }}'},
    "both": {
        "parking": (
            f'{{ enabled = true, task_service_accounts = ["{TOKEN_ACCOUNT}", "{OTHER_ACCOUNT}"] }}'
        ),
        "recreate": f'{{ enabled = true, task_service_accounts = ["{TOKEN_ACCOUNT}"] }}',
        "settings": '{ response_view = "FULL" }',
    },
    # An account listed for a feature that is off gets no actAs.
    "accounts-of-features-that-are-off": {
        "parking": f'{{ task_service_accounts = ["{OTHER_ACCOUNT}"] }}',
        "recreate": f'{{ task_service_accounts = ["{TOKEN_ACCOUNT}"] }}',
    },
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest, terraform: str) -> tuple[str, dict[str, Any]]:
    name: str = request.param
    result: CheckResult = check(
        MODULE,
        variables=CASES[name],
        var_files=[FIXTURES / "module-minimal.tfvars"],
        terraform=terraform,
    )
    assert result.ok, result.output[-3000:]
    return name, result.planned_resources()


def wanted(name: str) -> dict[str, Any]:
    """What the case's inputs enable, from the calls in the source."""
    overrides = CASES[name]
    parking_on = "enabled = true" in overrides.get("parking", "")
    recreate_on = "enabled = true" in overrides.get("recreate", "")
    parking = parking_permissions()
    target = {CALL_PERMISSION[c] for c in BASE_TARGET_CALLS}
    if "FULL" in overrides.get("settings", ""):
        target.add(FULL_VIEW)
    if recreate_on:
        target |= RECREATE_TARGET_PERMISSIONS
    if parking_on:
        target |= parking["target"]
    accounts = set()
    for feature, on in (("parking", parking_on), ("recreate", recreate_on)):
        if on:
            accounts |= {a for a in (TOKEN_ACCOUNT, OTHER_ACCOUNT) if a in overrides[feature]}
    return {
        "target": target,
        "parking_queue": parking["parking"] if parking_on else None,
        "accounts": accounts,
    }


def test_target_queues_hold_exactly_the_permissions_of_the_enabled_calls(
    case: tuple[str, dict[str, Any]],
) -> None:
    name, planned = case
    role = planned['google_project_iam_custom_role.task_runner["acme-prod"]']
    assert len(role["permissions"]) == len(set(role["permissions"])), "a permission twice"
    assert set(role["permissions"]) == wanted(name)["target"]
    assert f'google_cloud_tasks_queue_iam_member.task_runner["{BILLING}"]' in planned


def test_the_parking_queue_and_its_role_exist_only_with_parking(
    case: tuple[str, dict[str, Any]],
) -> None:
    name, planned = case
    want = wanted(name)["parking_queue"]
    role = planned.get('google_project_iam_custom_role.feature_queue["parking"]')
    queue = planned.get('google_cloud_tasks_queue.feature["parking"]')
    binding = planned.get('google_cloud_tasks_queue_iam_member.feature_queue["parking"]')
    if want is None:
        assert role is None and queue is None and binding is None
        return
    assert role is not None and set(role["permissions"]) == want
    assert queue is not None and queue["name"] == "redrive-parking"
    assert queue["retry_config"] == [{"max_attempts": -1}]
    assert binding is not None and binding["name"] == "redrive-parking"
    # The claims queue keeps its own role, untouched by parking.
    claims = planned['google_project_iam_custom_role.feature_queue["claims"]']
    assert set(claims["permissions"]) == {
        "cloudtasks.tasks.create",
        "cloudtasks.tasks.get",
        FULL_VIEW,
    }


def test_act_as_is_granted_once_per_token_account_of_an_enabled_feature(
    case: tuple[str, dict[str, Any]],
) -> None:
    name, planned = case
    prefix = "google_service_account_iam_member.runtime_acts_as_task_accounts["
    granted = {
        address.removeprefix(prefix).strip('"]')
        for address in planned
        if address.startswith(prefix)
    }
    assert granted == wanted(name)["accounts"]
    for address, values in planned.items():
        if address.startswith(prefix):
            assert values["role"] == "roles/iam.serviceAccountUser"
            assert values["service_account_id"].startswith("projects/-/serviceAccounts/")


def test_no_location_wide_listing_is_ever_granted(case: tuple[str, dict[str, Any]]) -> None:
    _, planned = case
    for address, values in planned.items():
        if address.startswith("google_project_iam_custom_role."):
            assert CALL_PERMISSION["list_queues"] not in values["permissions"], address
