"""`terraform validate` and `terraform plan` for real, with the stand-in providers.

Terraform core evaluates everything here (types, references, for_each and count on unknown
values, variable validations, preconditions); the stand-in only serves the provider schemas and
plans computed attributes as unknown, as the real providers do.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tfstandin.check import CheckResult, check

from tests.terraform.conftest import EXAMPLE, EXAMPLE_VARS, FIXTURES, MODULE, ROOT

MODULE_PREFIX = "module.redrive."


@pytest.fixture(scope="module")
def example(terraform: str) -> CheckResult:
    return check(EXAMPLE, variables=EXAMPLE_VARS, terraform=terraform)


@pytest.fixture(scope="module")
def minimal(terraform: str) -> CheckResult:
    return check(MODULE, var_files=[FIXTURES / "module-minimal.tfvars"], terraform=terraform)


@pytest.fixture(scope="module")
def everything(terraform: str) -> CheckResult:
    return check(MODULE, var_files=[FIXTURES / "module-everything.tfvars"], terraform=terraform)


def resources(result: CheckResult, prefix: str = "") -> dict[str, dict[str, Any]]:
    assert result.ok, result.output
    return {
        address.removeprefix(prefix): values
        for address, values in result.planned_resources().items()
        if address.startswith(prefix)
    }


def of_type(planned: Mapping[str, dict[str, Any]], rtype: str) -> dict[str, dict[str, Any]]:
    return {a: v for a, v in planned.items() if a.split("[")[0].split(".")[0] == rtype}


def test_example_validates_and_plans_on_a_fresh_state(example: CheckResult) -> None:
    assert [s.name for s in example.steps] == ["init", "validate", "plan", "show"]
    planned = resources(example, MODULE_PREFIX)
    for needed in (
        "google_cloudfunctions2_function.main",
        "google_cloudfunctions2_function.job",
        "google_pubsub_topic.deploys[0]",
        "google_pubsub_subscription.deploys[0]",
        "google_service_account.build[0]",
        "google_project_iam_member.eventarc_agent[0]",
        "google_monitoring_dashboard.main[0]",
        "google_pubsub_topic.dead_letter[0]",
        "time_sleep.grants",
        'google_cloud_tasks_queue_iam_member.task_runner["projects/acme-prod/locations/europe-west1/queues/billing"]',
        # Parking, on in the example: its queue, its grant there, the patrol and its alerts.
        'google_cloud_tasks_queue.feature["parking"]',
        'google_cloud_tasks_queue_iam_member.feature_queue["parking"]',
        "google_cloud_scheduler_job.patrol[0]",
        "google_monitoring_alert_policy.parking_not_paused[0]",
        'google_service_account_iam_member.runtime_acts_as_task_accounts["billing-tasks@acme-prod.iam.gserviceaccount.com"]',
    ):
        assert needed in planned, sorted(planned)
    assert planned["google_pubsub_topic.deploys[0]"]["name"] == "cloud-builds"


@pytest.mark.parametrize("name", ["minimal", "everything"])
def test_module_plans_alone(name: str, request: pytest.FixtureRequest) -> None:
    result: CheckResult = request.getfixturevalue(name)
    assert result.ok, result.output
    assert "google_cloudfunctions2_function.main" in result.planned_resources()


def test_an_unknown_for_each_key_fails_the_check(terraform: str) -> None:
    """The configuration the example had before: queue ids known only after apply."""
    result = check(FIXTURES / "bad_for_each", terraform=terraform)
    assert not result.ok
    plan = result.steps[-1]
    assert plan.name == "plan" and plan.returncode != 0
    assert "Invalid for_each argument" in plan.output
    assert "Invalid count argument" in plan.output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"job_function": "{ max_instance_request_concurrency = 4 }"},
            "needs available_cpu of at least 1",
        ),
        (
            {"signal_function": '{ max_instance_request_concurrency = 2, available_cpu = "0.5" }'},
            "needs available_cpu of at least 1",
        ),
        ({"job_function": "{ timeout_s = 3600 }"}, "dispatch deadline"),
        ({"pipeline_alerts": "{ enabled = true }"}, "at least one notification channel"),
        ({"outcome_alert": "{ enabled = true }"}, "at least one notification channel"),
        ({"build_service_account": "{ create = false }"}, "build_service_account.email"),
        (
            {
                "deploy_subscription": (
                    '{ enabled = true, topic = "projects/other/topics/cloud-builds" }'
                )
            },
            "deploy_subscription.create_topic = false",
        ),
        ({"parking": "{ enabled = true, warn_s = 2592001 }"}, "the ranges redrive accepts"),
        ({"parking": "{ margin_s = -1 }"}, "the ranges redrive accepts"),
        ({"parking": '{ task_service_accounts = ["billing-tasks"] }'}, "service account emails"),
        (
            {
                "parking": "{ enabled = true }",
                "target_queues": (
                    '["projects/acme-prod/locations/europe-west1/queues/billing", '
                    '"projects/acme-prod/locations/europe-west1/queues/redrive-parking"]'
                ),
            },
            "redrive never re-drives its own queues",
        ),
        (
            {"target_queues": '["projects/acme-prod/locations/europe-west1/queues/*"]'},
            "no wildcards",
        ),
        ({"parking": '{ patrol_schedule = "every 5 minutes" }'}, "unix-cron schedule"),
    ],
)
def test_values_the_api_rejects_fail_the_plan(
    terraform: str, overrides: dict[str, str], message: str
) -> None:
    result = check(
        MODULE,
        variables=overrides,
        var_files=[FIXTURES / "module-minimal.tfvars"],
        terraform=terraform,
    )
    assert not result.ok
    assert message in " ".join(result.output.split()), result.output[-3000:]


def test_the_metric_filter_planned_is_the_one_the_evaluator_tests(minimal: CheckResult) -> None:
    metric = resources(minimal)["google_logging_metric.outcomes[0]"]
    golden = json.loads((FIXTURES / "outcome-metric.json").read_text())
    assert {"filter": metric["filter"], "label_extractors": metric["label_extractors"]} == golden


def test_dashboard_json_charts_real_metrics(everything: CheckResult) -> None:
    dashboard = resources(everything)["google_monitoring_dashboard.main[0]"]
    layout = json.loads(dashboard["dashboard_json"])
    tiles = layout["mosaicLayout"]["tiles"]
    titles = [t["widget"]["title"] for t in tiles]
    assert any("Halted" in t for t in titles) and any("Parked" in t for t in titles)
    for tile in tiles:
        query = tile["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilter"]
        assert query["filter"].startswith('metric.type="'), tile
    filters = " ".join(
        t["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["timeSeriesFilter"]["filter"]
        for t in tiles
    )
    assert "logging.googleapis.com/user/rd/outcomes" in filters
    assert 'queue_id="rd-jobs"' in filters and 'queue_id="rd-parking"' in filters
    assert layout["labels"] == {"team": "payments"}


def test_alert_policies_carry_the_labels_and_wait_for_the_metric(everything: CheckResult) -> None:
    planned = resources(everything)
    policies = of_type(planned, "google_monitoring_alert_policy")
    assert len(policies) == 11, sorted(policies)  # the pipeline's 8 and parking's 3
    for address, values in policies.items():
        assert values["user_labels"]["team"] == "payments", address
        assert values["notification_channels"], address
    module = everything.plan["configuration"]["root_module"] if everything.plan else {}
    on_metric = [
        r
        for r in module["resources"]
        if r["type"] == "google_monitoring_alert_policy"
        and "outcome_metric_type" in json.dumps(r["expressions"])
    ]
    assert len(on_metric) == 4
    for r in on_metric:
        assert "time_sleep.outcome_metric" in r.get("depends_on", []), r["address"]
    # Those on parking's census metrics wait for them.
    on_census = [
        r
        for r in module["resources"]
        if r["type"] == "google_monitoring_alert_policy"
        and "parking_metric_types" in json.dumps(r["expressions"])
    ]
    assert [r["address"] for r in on_census] == ["google_monitoring_alert_policy.parked_expiring"]
    assert on_census[0]["depends_on"] == ["time_sleep.parking_metrics"]
    dashboard = next(r for r in module["resources"] if r["type"] == "google_monitoring_dashboard")
    assert "time_sleep.parking_metrics" in dashboard["depends_on"]


def test_functions_and_the_sink_wait_for_the_grants(everything: CheckResult) -> None:
    assert everything.plan is not None
    config = {r["address"]: r for r in everything.plan["configuration"]["root_module"]["resources"]}
    for fn in ("google_cloudfunctions2_function.main", "google_cloudfunctions2_function.job"):
        assert config[fn]["depends_on"] == ["time_sleep.grants"]
    grants = set(config["time_sleep.grants"]["depends_on"])
    members = {
        address
        for address, r in config.items()
        if r["type"].endswith("_iam_member")
        and r["type"]
        != "google_pubsub_topic_iam_member"  # publishers of topics, not the functions'
        and address
        not in {
            # On the functions themselves, so necessarily after them.
            "google_cloud_run_v2_service_iam_member.job_invoker",
            "google_cloud_run_v2_service_iam_member.signal_invoker",
            # The dead-letter grant on the deploy subscription, which needs the function's URL.
            "google_pubsub_subscription_iam_member.deploys_dead_letter_subscriber",
        }
    }
    assert members <= grants, members - grants
    sink = config["google_logging_project_sink.attempt_failures"]["depends_on"]
    assert "google_cloudfunctions2_function.main" in sink
    assert "google_cloud_run_v2_service_iam_member.signal_invoker" in sink


def test_function_settings_reach_the_functions(everything: CheckResult) -> None:
    # The environment holds apply-time values (the queue id), so the plan shows it unknown;
    # tests/test_terraform.py checks REDRIVE_JOB_DEADLINE_S = job_function.timeout_s statically.
    planned = resources(everything)
    job = planned["google_cloudfunctions2_function.job"]["service_config"][0]
    assert job["timeout_seconds"] == 900
    assert job["max_instance_request_concurrency"] == 8 and job["available_cpu"] == "2"
    assert job["vpc_connector_egress_settings"] == "ALL_TRAFFIC"
    signal = planned["google_cloudfunctions2_function.main"]["service_config"][0]
    assert signal["min_instance_count"] == 1 and signal["max_instance_request_concurrency"] == 4
    build = planned["google_cloudfunctions2_function.main"]["build_config"][0]
    assert build["service_account"].endswith(
        "/serviceAccounts/builder@acme-prod.iam.gserviceaccount.com"
    )


def test_cmek_grants_every_agent_that_encrypts(everything: CheckResult) -> None:
    planned = resources(everything)
    grants = of_type(planned, "google_kms_crypto_key_iam_member")
    members = {v["member"] for v in grants.values()}
    for agent in (
        "gcp-sa-pubsub",
        "gs-project-accounts",
        "gcp-sa-artifactregistry",
        "gcf-admin-robot",
        "serverless-robot-prod",
        "gcp-sa-eventarc",
    ):
        assert any(agent in m for m in members), (agent, members)
    assert planned["google_cloudfunctions2_function.main"]["kms_key_name"]
    assert planned["google_artifact_registry_repository.functions[0]"]["kms_key_name"]


def test_the_archive_ships_the_deploy_files_only(minimal: CheckResult) -> None:
    planned = resources(minimal)
    obj = planned["google_storage_bucket_object.source"]
    archive = (MODULE / obj["source"]).resolve()  # relative to where Terraform ran
    assert archive.parent == MODULE / ".build"
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"main.py", "requirements.txt", "src/redrive/__init__.py"} <= names
    assert not any(
        n.startswith(("tests/", "tools/", "src/redrive_tools/", "src/cloudtasks_emulator/"))
        for n in names
    )
    import hashlib

    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    assert obj["name"] == f"redrive-{md5}.zip"
    assert archive.is_relative_to(ROOT)


def test_terraform_can_start_the_stand_in_itself(terraform: str, tmp_path: Path) -> None:
    """The other route: a dev_overrides entry whose executables run `python -m tfstandin`, which
    then answers go-plugin's handshake (Terraform starts and stops the processes)."""
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = ROOT / "tools"
    for name in ("google", "archive", "time"):
        script = bin_dir / f"terraform-provider-{name}"
        script.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={tools} TFSTANDIN_PROVIDER={name} exec {sys.executable} -m tfstandin\n"
        )
        script.chmod(0o755)
    overrides = "\n".join(
        f'    "hashicorp/{n}" = "{bin_dir}"' for n in ("google", "archive", "time")
    )
    cli = tmp_path / "cli.tfrc"
    cli.write_text(
        f"provider_installation {{\n  dev_overrides {{\n{overrides}\n  }}\n  direct {{}}\n}}\n"
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(cli),
        "TF_DISABLE_PLUGIN_TLS": "1",  # go-plugin's automatic mTLS is not implemented
        "TF_DATA_DIR": str(tmp_path / "data"),
        "CHECKPOINT_DISABLE": "1",
    }
    done = subprocess.run(
        [terraform, "validate", "-no-color"],
        cwd=MODULE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The configuration is valid" in done.stdout


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("task_log_failed", True),
        ("task_log_failed_nanos", False),  # failed, but in mail-out, which is no target queue
        ("task_log_success", False),
        ("task_log_dispatch", False),
        ("task_log_other_resource", False),
    ],
)
def test_sink_and_alert_select_failed_attempts_of_the_target_queues(
    example: CheckResult, sample: str, expected: bool
) -> None:
    from tests.terraform.logfilter import extract, matches

    planned = resources(example, MODULE_PREFIX)
    sink = planned["google_logging_project_sink.attempt_failures[0]"]["filter"]
    alert = planned["google_monitoring_alert_policy.attempt_failures[0]"]["conditions"][0]
    condition = alert["condition_matched_log"][0]
    assert condition["filter"] == sink
    entry = json.loads((ROOT / "tests" / "data" / "signals" / f"{sample}.json").read_text())["data"]
    assert matches(sink, entry) is expected
    if expected:
        task = extract(condition["label_extractors"]["task"], entry)
        assert task == entry["jsonPayload"]["task"]


def test_a_folder_with_state_is_not_planned(terraform: str, tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text('output "x" {\n  value = 1\n}\n')
    (tmp_path / "terraform.tfstate").write_text("{}")
    result = check(tmp_path, terraform=terraform)
    assert not result.ok and [s.name for s in result.steps] == ["fresh state"]


def test_the_patrol_publishes_a_message_handle_signal_reads_as_a_patrol(
    everything: CheckResult,
) -> None:
    """The scheduled message goes through the same decoding as a delivered event (the Pub/Sub
    message's base64 data, as Eventarc hands it to handle_signal) and the same parser."""
    from redrive.core.signals import message_from_event, parse_message
    from redrive.core.signals.model import Patrol

    job = resources(everything)["google_cloud_scheduler_job.patrol[0]"]
    assert job["name"] == "rd-patrol" and job["region"] == "europe-west1"
    assert job["schedule"] == "*/5 * * * *" and job["time_zone"] == "Etc/UTC"
    (target,) = job["pubsub_target"]
    event = {"message": {"data": target["data"], "messageId": "patrol-1"}}
    parsed = parse_message(message_from_event(event, ce_time="2026-12-01T12:00:00Z"))
    assert parsed.kind == "patrol", parsed
    (signal,) = parsed.signals
    assert isinstance(signal, Patrol) and signal.queues == ()  # every allowed queue


def test_no_patrol_without_parking(minimal: CheckResult) -> None:
    planned = resources(minimal)
    assert not of_type(planned, "google_cloud_scheduler_job")
    assert not any("parking" in address for address in planned)
