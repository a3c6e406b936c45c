"""The Terraform module checked against the code it deploys (python-hcl2; no provider needed).

What ties them together: the environment the module sets is what `redrive.core.config` reads, the
entry points are `main.py`'s functions, and the IAM grants are exactly the permissions of the
Cloud Tasks / Cloud Run calls found in the source, on the narrowest resource.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "terraform"
EXAMPLE = MODULE / "examples" / "complete"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from redrive.core.config import ENV_VARS  # noqa: E402
from redrive.core.outcomes import Outcome  # noqa: E402

FRAMEWORK_ENV = {"LOG_EXECUTION_ID"}  # functions-framework's own, not redrive's
QUEUED_MODE_ENV = {
    "REDRIVE_ALLOWED_QUEUES",
    "REDRIVE_QUEUE",
    "REDRIVE_JOB_URL",
    "REDRIVE_JOB_SERVICE_ACCOUNT",
}
ENTRY_POINTS = {"main": "handle_signal", "job": "run_job"}

# Attribute access, called or passed on (`self._call(self.services.get_service, ...)`). The
# queue-level calls and delete_task are those of this wave's features (re-create deletes the
# original task, parking pauses its queue): the day the code makes one, these tests ask for its
# grant.
CALL_RE = re.compile(
    r"\.(get_task|list_tasks|run_task|create_task|delete_task|get_service|get_revision"
    r"|list_revisions|list_services|pause_queue|resume_queue|purge_queue|get_queue)\b"
)
CALL_PERMISSION = {
    "get_task": "cloudtasks.tasks.get",
    "list_tasks": "cloudtasks.tasks.list",
    "run_task": "cloudtasks.tasks.run",
    "create_task": "cloudtasks.tasks.create",
    "delete_task": "cloudtasks.tasks.delete",
    "get_service": "run.services.get",
    "list_services": "run.services.list",
    "get_revision": "run.revisions.get",
    "list_revisions": "run.revisions.list",
    "pause_queue": "cloudtasks.queues.pause",
    "resume_queue": "cloudtasks.queues.resume",
    "purge_queue": "cloudtasks.queues.purge",
    "get_queue": "cloudtasks.queues.get",
}
# Calls made on the target queues; create_task goes to the redrive queue (and, with a feature
# queue, there too); get_queue is a sweep's plan reading the rates (a target queue's, the redrive
# queue's); the other queue-level calls go to the features' own queues.
TARGET_QUEUE_CALLS = {"get_task", "list_tasks", "run_task", "delete_task", "get_queue"}
REDRIVE_QUEUE_CALLS = {"create_task", "get_queue"}
FEATURE_QUEUE_CALLS = {"pause_queue", "resume_queue", "purge_queue"}
RUN_CALLS = {"get_service", "list_services", "get_revision", "list_revisions"}
# redrive's own tasks read with their body (CloudTasks.get_full, the FULL view): run_job reads the
# job it runs from the redrive queue, the claims register reads its markers from the claims queue.
FULL_READ = re.compile(r"\.get_full\(")
FULL_READ_PERMISSIONS = {"cloudtasks.tasks.get", "cloudtasks.tasks.fullView"}
FULL_READS_BY_QUEUE = {"redrive": "entry/on_job.py", "claims": "adapters/claims.py"}

# The predefined roles the module may grant: the only resource type each may be bound through and
# the member it may be granted to (a local of the module, or any member when None).
ALLOWED_PREDEFINED: dict[str, tuple[str, str | None]] = {
    "roles/iam.serviceAccountUser": ("google_service_account_iam_member", "runtime_member"),
    "roles/run.invoker": ("google_cloud_run_v2_service_iam_member", None),
    "roles/pubsub.publisher": ("google_pubsub_topic_iam_member", None),
    "roles/pubsub.subscriber": ("google_pubsub_subscription_iam_member", "agents.pubsub"),
    "roles/logging.logWriter": ("google_project_iam_member", "build_member"),
    "roles/storage.objectViewer": ("google_storage_bucket_iam_member", "build_member"),
    "roles/artifactregistry.writer": (
        "google_artifact_registry_repository_iam_member",
        "build_member",
    ),
    "roles/eventarc.serviceAgent": ("google_project_iam_member", "agents.eventarc"),
    "roles/iam.serviceAccountTokenCreator": ("google_service_account_iam_member", "agents.pubsub"),
    "roles/cloudkms.cryptoKeyEncrypterDecrypter": ("google_kms_crypto_key_iam_member", None),
}
# A service agent's own role, granted to that agent only (checked above).
SERVICE_AGENT_ROLES = {"roles/eventarc.serviceAgent"}
BROAD_ROLE_RE = re.compile(r"roles/(owner|editor|viewer|[\w.]*[aA]dmin\w*|[\w.]*\.serviceAgent)$")


# ---------------------------------------------------------------------------------------------
# Loading


def unq(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@dataclass
class Module:
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}


def load_module(folder: Path) -> Module:
    mod = Module()
    files = sorted(folder.glob("*.tf"))
    assert files, f"no .tf files in {folder}"
    for path in files:
        with path.open() as f:
            doc = hcl2.load(f)
        for kind, target in (("resource", mod.resources), ("data", mod.data)):
            for entry in doc.get(kind, []):
                for rtype, instances in entry.items():
                    for rname, body in instances.items():
                        target[(unq(rtype), unq(rname))] = body
        for block in doc.get("locals", []):
            mod.locals.update({k: v for k, v in block.items() if not k.startswith("__")})
        for entry in doc.get("variable", []):
            mod.variables.update({unq(k): v for k, v in entry.items()})
        for entry in doc.get("output", []):
            mod.outputs.update({unq(k): v for k, v in entry.items()})
    return mod


@pytest.fixture(scope="module")
def module() -> Module:
    return load_module(MODULE)


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    items = body[name]
    assert isinstance(items, list) and len(items) == 1, name
    first = items[0]
    assert isinstance(first, dict)
    return first


def env_keys(expr: Any, locals_: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str]:
    """Keys of the map an expression evaluates to: literal keys, followed through `local.X`."""
    if isinstance(expr, dict):
        return {k for k in expr if not k.startswith("__")}
    text = str(expr)
    keys = set(re.findall(r"[{,]\s*([A-Z][A-Z0-9_]+)\s*=", text))  # inline object literals
    for name in re.findall(r"\blocal\.(\w+)", text):
        if name in seen:
            continue
        assert name in locals_, f"unknown local.{name}"
        keys |= env_keys(locals_[name], locals_, seen | {name})
    return keys


def function_env(mod: Module, resource_name: str) -> set[str]:
    fn = mod.resources[("google_cloudfunctions2_function", resource_name)]
    service = block(fn, "service_config")
    return env_keys(service["environment_variables"], mod.locals)


def quoted_permissions(expr: Any) -> list[str]:
    return re.findall(r'"((?:cloudtasks|run|iam|pubsub)\.[A-Za-z]+\.[A-Za-z]+)"', str(expr))


def permissions_of(mod: Module, expr: Any, seen: frozenset[str] = frozenset()) -> list[str]:
    """The quoted permissions of an expression, following every `local.X` it names."""
    found = quoted_permissions(expr)
    for name in re.findall(r"\blocal\.(\w+)", str(expr)):
        if name not in seen:
            found += permissions_of(mod, mod.locals[name], seen | {name})
    return found


def resolve_local(mod: Module, expr: Any) -> Any:
    match = re.fullmatch(r"\$\{local\.(\w+)\}", str(expr))
    return mod.locals[match.group(1)] if match else expr


def source_calls() -> dict[str, set[str]]:
    """API method → files calling it, in the code that runs in the functions."""
    package = ROOT / "src" / "redrive"
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        rel = path.relative_to(package)
        if rel.parts[0] == "emulator" or rel.as_posix() == "cli.py":
            continue
        for method in CALL_RE.findall(path.read_text()):
            found.setdefault(method, set()).add(rel.as_posix())
    return found


def all_role_bindings(mod: Module) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (rtype, unq(body["role"]), body)
        for (rtype, _), body in mod.resources.items()
        if "role" in body and rtype.endswith(("_iam_member", "_iam_binding"))
    ]


# ---------------------------------------------------------------------------------------------
# Environment


@pytest.mark.parametrize("fn", sorted(ENTRY_POINTS))
def test_every_env_var_set_is_one_redrive_reads(module: Module, fn: str) -> None:
    keys = function_env(module, fn)
    assert keys, "no environment variables found: the resolver lost track"
    unknown = keys - set(ENV_VARS) - FRAMEWORK_ENV
    assert not unknown, f"{fn} sets variables redrive.core.config does not read: {sorted(unknown)}"
    local_only = sorted(k for k in keys if k in ENV_VARS and not ENV_VARS[k].deployed)
    assert not local_only, f"{fn} sets local-only (deployed=False) variables: {local_only}"


@pytest.mark.parametrize("fn", sorted(ENTRY_POINTS))
def test_queued_mode_variables_are_set(module: Module, fn: str) -> None:
    # run_job refuses jobs without REDRIVE_QUEUE, which Settings only accepts with REDRIVE_JOB_URL.
    missing = QUEUED_MODE_ENV - function_env(module, fn)
    assert not missing, f"{fn} lacks {sorted(missing)}"


def test_sweep_budget_is_set_on_the_signal_function_and_kept_below_its_timeout(
    module: Module,
) -> None:
    assert "REDRIVE_SWEEP_BUDGET_S" in function_env(module, "main")
    rules = [v["condition"] for v in module.variables["signal_function"]["validation"]]
    assert any(
        "sweep_budget_s" in rule and "timeout_s" in rule and "<" in rule for rule in rules
    ), "no validation keeps signal_function.sweep_budget_s below timeout_s"


def test_job_url_and_oidc_account_point_at_run_job_and_its_only_invoker(module: Module) -> None:
    queued = module.locals["env_queued"]
    assert unq(queued["REDRIVE_JOB_SERVICE_ACCOUNT"]) == "${google_service_account.invoker.email}"
    job_url = unq(resolve_local(module, queued["REDRIVE_JOB_URL"]))
    assert "${local.job_function_name}" in job_url and job_url.endswith(".run.app")
    assert unq(queued["REDRIVE_QUEUE"]) == "${google_cloud_tasks_queue.main.id}"
    invokers = module.of_type("google_cloud_run_v2_service_iam_member")
    on_job = [b for b in invokers.values() if "cloudfunctions2_function.job." in str(b["name"])]
    assert len(on_job) == 1
    assert unq(on_job[0]["role"]) == "roles/run.invoker"
    assert "google_service_account.invoker.email" in str(on_job[0]["member"])
    # The invoker account has no other grant of its own.
    others = [
        body
        for _, _, body in all_role_bindings(module)
        if "google_service_account.invoker.email" in str(body.get("member", ""))
    ]
    assert others == on_job


# ---------------------------------------------------------------------------------------------
# Entry points and function shape


def main_py_functions() -> dict[str, list[str]]:
    main_py = ROOT / "main.py"
    assert main_py.exists(), "main.py (the entry points) is missing"
    tree = ast.parse(main_py.read_text())
    return {
        node.name: [ast.unparse(d) for d in node.decorator_list]
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_entry_points_match_main_py(module: Module) -> None:
    functions = main_py_functions()
    for resource_name, entry_point in ENTRY_POINTS.items():
        fn = module.resources[("google_cloudfunctions2_function", resource_name)]
        assert unq(block(fn, "build_config")["entry_point"]) == entry_point
        assert entry_point in functions, f"main.py has no {entry_point}()"
    assert any("cloud_event" in d for d in functions["handle_signal"])
    assert any(d.endswith(".http") for d in functions["run_job"])


def test_handle_signal_is_pubsub_triggered_with_retries(module: Module) -> None:
    fn = module.resources[("google_cloudfunctions2_function", "main")]
    trigger = block(fn, "event_trigger")
    assert unq(trigger["event_type"]) == "google.cloud.pubsub.topic.v1.messagePublished"
    assert unq(trigger["retry_policy"]) == "RETRY_POLICY_RETRY"
    assert unq(trigger["pubsub_topic"]) == "${local.topic_id}"


def test_run_job_is_private_http(module: Module) -> None:
    fn = module.resources[("google_cloudfunctions2_function", "job")]
    assert "event_trigger" not in fn
    ingress = unq(block(fn, "service_config")["ingress_settings"])
    assert ingress in {"ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"}
    public = [
        body
        for _, _, body in all_role_bindings(module)
        if unq(body.get("member")) in {"allUsers", "allAuthenticatedUsers"}
    ]
    assert not public


def test_both_functions_run_as_the_one_dedicated_account(module: Module) -> None:
    for resource_name in ENTRY_POINTS:
        fn = module.resources[("google_cloudfunctions2_function", resource_name)]
        account = block(fn, "service_config")["service_account_email"]
        assert unq(account) == "${google_service_account.main.email}"
        assert str(unq(block(fn, "build_config")["runtime"])) == "${var.runtime}"


def test_archive_ships_the_allowlist_of_deploy_files(module: Module) -> None:
    """The module archives what deploy-files.txt lists, the file redrive_tools.archive reads."""
    patterns = str(module.locals["source_patterns"])
    assert 'file("${local.source_dir}/deploy-files.txt")' in patterns
    files = str(module.locals["source_files"])
    assert "fileset(local.source_dir, pattern)" in files
    assert '"__pycache__/"' in files and '".pyc"' in files
    default_dir = str(module.locals["source_dir"])
    assert "${path.module}/.." in default_dir
    for needed in ("main.py", "requirements.txt", "deploy-files.txt", "src/redrive/__init__.py"):
        assert (ROOT / needed).exists(), f"{needed} is archived but missing from the repository"


# ---------------------------------------------------------------------------------------------
# Least privilege


def test_granted_permissions_are_exactly_those_of_the_calls_in_the_source(module: Module) -> None:
    calls = source_calls()
    assert {"get_task", "run_task"} <= set(calls), f"scanner found too little: {calls}"

    roles = module.of_type("google_project_iam_custom_role")
    runner_perms = {
        p
        for p in permissions_of(module, roles["task_runner"]["permissions"])
        if p != "cloudtasks.tasks.fullView"
    }
    enqueuer_perms = set(permissions_of(module, roles["job_enqueuer"]["permissions"]))
    run_perms = set(permissions_of(module, roles["run_viewer"]["permissions"]))
    feature_perms = set(permissions_of(module, module.locals["feature_queues"]))

    # Re-create's calls on the target queues (a copy created there, the original read with its
    # body and deleted) are granted only when var.recreate enables them.
    recreate = {"cloudtasks.tasks.create", "cloudtasks.tasks.delete", "cloudtasks.tasks.fullView"}
    gated = str(module.locals["feature_target_permissions"])
    assert "var.recreate.enabled" in gated, gated
    assert set(quoted_permissions(module.locals["feature_target_permissions"])) == recreate
    pipeline_source = (ROOT / "src/redrive/pipeline.py").read_text()
    assert "delete_task" in calls and "create_copy" in pipeline_source
    runner_perms -= recreate
    want_target = {CALL_PERMISSION[c] for c in calls if c in TARGET_QUEUE_CALLS} - recreate
    want_redrive = {CALL_PERMISSION[c] for c in calls if c in REDRIVE_QUEUE_CALLS}
    package = ROOT / "src" / "redrive"
    full_reads = {
        queue: bool(FULL_READ.search((package / path).read_text()))
        for queue, path in FULL_READS_BY_QUEUE.items()
    }
    assert all(full_reads.values()), f"the scanner lost track of the FULL reads: {full_reads}"
    want_redrive |= FULL_READ_PERMISSIONS
    claims_perms = {unq(p) for p in module.locals["feature_queues"]["claims"]["permissions"]}
    assert claims_perms == {"cloudtasks.tasks.create"} | FULL_READ_PERMISSIONS, claims_perms
    want_run = {CALL_PERMISSION[c] for c in calls if c in RUN_CALLS}
    want_feature = {CALL_PERMISSION[c] for c in calls if c in FEATURE_QUEUE_CALLS}
    assert runner_perms == want_target, f"target queues: granted {runner_perms}, calls {calls}"
    assert enqueuer_perms == want_redrive, f"redrive queue: granted {enqueuer_perms}"
    assert run_perms == want_run, f"Cloud Run: granted {run_perms}, calls {sorted(want_run)}"
    assert want_feature <= feature_perms, (
        f"the code calls {sorted(want_feature)}: give the feature its queue and grants in "
        "local.feature_queues (terraform/queue.tf)"
    )
    # The Cloud Run reader is a custom role bound in the fix check's projects only.
    binding = module.resources[("google_project_iam_member", "run_viewer")]
    assert unq(binding["role"]) == "${google_project_iam_custom_role.run_viewer[each.key].name}"
    assert 'fix_check == "revision"' in str(module.locals["run_viewer_projects"])


def test_full_view_is_granted_only_when_configured(module: Module) -> None:
    runner = str(
        resolve_local(
            module,
            module.resources[("google_project_iam_custom_role", "task_runner")]["permissions"],
        )
    )
    assert re.search(
        r'var\.settings\.response_view == "FULL" \? \["cloudtasks\.tasks\.fullView"\] : \[\]',
        runner,
    ), runner
    assert runner.count("cloudtasks.tasks.fullView") == 1


def test_custom_roles_are_bound_on_the_right_queues(module: Module) -> None:
    bindings = module.of_type("google_cloud_tasks_queue_iam_member")
    by_role = {str(b["role"]): b for b in bindings.values()}
    runner = by_role["${google_project_iam_custom_role.task_runner[each.value.project].name}"]
    assert unq(runner["for_each"]) == "${local.target_queues}"
    assert "var.target_queues" in str(module.locals["target_queues"])
    enqueuer = by_role["${google_project_iam_custom_role.job_enqueuer.name}"]
    assert unq(enqueuer["name"]) == "${google_cloud_tasks_queue.main.name}"
    feature = by_role["${google_project_iam_custom_role.feature_queue[each.key].name}"]
    assert unq(feature["for_each"]) == "${local.feature_queues}"
    assert unq(feature["name"]) == "${google_cloud_tasks_queue.feature[each.key].name}"
    assert len(bindings) == 3
    allowed = str(module.locals["env_common"]["REDRIVE_ALLOWED_QUEUES"])
    assert "var.target_queues" in allowed


@pytest.mark.parametrize("folder", [MODULE, EXAMPLE], ids=["module", "example"])
def test_no_broad_roles(folder: Path) -> None:
    mod = load_module(folder)
    for rtype, role, body in all_role_bindings(mod):
        member = str(body.get("member", ""))
        if role in SERVICE_AGENT_ROLES:
            assert "agents.eventarc" in member, f"{role} granted to {member}"
        else:
            assert not BROAD_ROLE_RE.search(role), f"{rtype} grants the broad role {role}"
        if role.startswith("roles/"):
            assert role in ALLOWED_PREDEFINED, f"{rtype} grants {role}"
            if folder == MODULE:
                allowed_type, allowed_member = ALLOWED_PREDEFINED[role]
                assert allowed_type == rtype, f"{role} bound through {rtype}"
                if allowed_member is not None:
                    assert allowed_member in member, f"{role} granted to {member}"
    project_level = [
        role for t, role, _ in all_role_bindings(mod) if t == "google_project_iam_member"
    ]
    assert set(project_level) <= {
        "roles/logging.logWriter",
        "roles/eventarc.serviceAgent",
        "${google_project_iam_custom_role.run_viewer[each.key].name}",
    }
    for name, body in mod.of_type("google_project_iam_custom_role").items():
        if name == "feature_queue":
            assert unq(body["permissions"]) == "${each.value.permissions}"
            continue
        perms = permissions_of(mod, body["permissions"])
        assert perms, name
        assert all(
            p.startswith(("cloudtasks.tasks.", "cloudtasks.queues."))
            or p in {"run.services.get", "run.services.list", "run.revisions.get"}
            for p in perms
        ), perms


def test_the_build_account_holds_exactly_what_a_build_needs(module: Module) -> None:
    build = {
        role: rtype
        for rtype, role, body in all_role_bindings(module)
        if "build_member" in str(body["member"])
    }
    assert build == {
        "roles/logging.logWriter": "google_project_iam_member",
        "roles/storage.objectViewer": "google_storage_bucket_iam_member",
        "roles/artifactregistry.writer": "google_artifact_registry_repository_iam_member",
    }
    for fn in ENTRY_POINTS:
        config = block(module.resources[("google_cloudfunctions2_function", fn)], "build_config")
        assert "local.build_account_email" in str(config["service_account"])
        assert unq(config["docker_repository"]) == "${local.repository_id}"


def test_functions_wait_for_the_grants(module: Module) -> None:
    for fn in ENTRY_POINTS:
        body = module.resources[("google_cloudfunctions2_function", fn)]
        assert body["depends_on"] == ["${time_sleep.grants}"]
    waited = {str(d) for d in module.resources[("time_sleep", "grants")]["depends_on"]}
    for rtype, _, _ in all_role_bindings(module):
        if rtype in {"google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member"}:
            continue  # publishers of the topics and the dead-letter forwarding: not the functions'
        names = [
            n
            for (t, n) in module.resources
            if t == rtype and rtype != "google_cloud_run_v2_service_iam_member"
        ]
        for name in names:
            assert f"${{{rtype}.{name}}}" in waited, f"{rtype}.{name} is not waited for"


# ---------------------------------------------------------------------------------------------
# Signals and observability


def test_attempt_failure_alert_extracts_the_task_into_its_documentation(module: Module) -> None:
    policy = module.resources[("google_monitoring_alert_policy", "attempt_failures")]
    condition = block(block(policy, "conditions"), "condition_matched_log")
    assert unq(condition["label_extractors"]["task"]) == "EXTRACT(jsonPayload.task)"
    content = unq(block(policy, "documentation")["content"])
    # `$$` is Terraform's escape: Monitoring receives ${log.extracted_label.task}.
    assert "task=$${log.extracted_label.task}" in content
    assert block(block(policy, "alert_strategy"), "notification_rate_limit")["period"]
    assert "task_operations_log" in str(module.locals["attempt_failure_filter"])


def test_outcome_metric_counts_by_outcome_and_alert_defaults_are_real_outcomes(
    module: Module,
) -> None:
    metric = module.resources[("google_logging_metric", "outcomes")]
    assert unq(metric["label_extractors"]["outcome"]) == "EXTRACT(jsonPayload.outcome)"
    assert unq(metric["filter"]) == "${local.outcome_filter}"
    # Decisions only (tests/terraform/test_outcome_metric.py evaluates it on real lines).
    assert 'jsonPayload.event=\\"redrive.outcome\\"' in str(module.locals["outcome_filter"])
    assert "jsonPayload.outcome:*" not in str(module.locals["outcome_filter"])
    alert_type = str(module.variables["outcome_alert"]["type"])
    match = re.search(r"outcomes\s*=\s*optional\(list\(string\),\s*\[([^\]]*)\]", alert_type)
    assert match, alert_type
    defaults = re.findall(r'"([A-Z_]+)"', match.group(1))
    assert set(defaults) == {"FAILED", "PERMISSION_DENIED"}
    assert set(defaults) <= {o.value for o in Outcome}


def test_jobs_carry_run_job_s_timeout_as_their_dispatch_deadline(module: Module) -> None:
    queued = module.locals["env_queued"]
    assert unq(queued["REDRIVE_JOB_DEADLINE_S"]) == "${tostring(var.job_function.timeout_s)}"
    rules = " ".join(str(v["condition"]) for v in module.variables["job_function"]["validation"])
    assert "var.job_function.timeout_s <= 1800" in rules


@pytest.mark.parametrize("fn", ["signal_function", "job_function"])
def test_concurrency_above_one_needs_a_whole_vcpu(module: Module, fn: str) -> None:
    rules = [str(v["condition"]) for v in module.variables[fn]["validation"]]
    assert any(
        "max_instance_request_concurrency == 1" in r and "available_cpu" in r and ">= 1" in r
        for r in rules
    ), rules


def test_alert_policies_carry_the_module_labels(module: Module) -> None:
    policies = module.of_type("google_monitoring_alert_policy")
    assert len(policies) >= 8
    for name, body in policies.items():
        assert "var.labels" in str(body["user_labels"]), name
        assert body.get("notification_channels"), name


def test_redrive_queue_defaults_below_the_run_task_quota(module: Module) -> None:
    queue_type = str(module.variables["redrive_queue"]["type"])
    # Below the RunTask quota (1/s): bursts and run_job latency bunch calls (tests/stress/storm.py).
    assert re.search(r"max_dispatches_per_s\s*=\s*optional\(number,\s*0\.8\)", queue_type)
    queue = module.resources[("google_cloud_tasks_queue", "main")]
    assert block(queue, "stackdriver_logging_config")["sampling_ratio"]
    assert block(queue, "retry_config")["min_backoff"]


# ---------------------------------------------------------------------------------------------
# Hygiene


@pytest.mark.parametrize("folder", [MODULE, EXAMPLE], ids=["module", "example"])
def test_variables_have_type_and_description(folder: Path) -> None:
    mod = load_module(folder)
    assert mod.variables
    for name, body in mod.variables.items():
        assert "type" in body, f"variable {name} has no type"
        description = unq(body.get("description", ""))
        assert description and description.endswith("."), f"variable {name}: full sentence"


def test_outputs_cover_topic_functions_queue_and_account(module: Module) -> None:
    assert {
        "signals_topic",
        "signal_function",
        "job_function",
        "redrive_queue",
        "service_account",
    } <= set(module.outputs)
    for name, body in module.outputs.items():
        assert unq(body.get("description", "")), f"output {name} has no description"


def test_example_uses_the_module_from_two_levels_up() -> None:
    with (EXAMPLE / "main.tf").open() as f:
        doc = hcl2.load(f)
    calls = [body for entry in doc.get("module", []) for body in entry.values()]
    assert [unq(c["source"]) for c in calls] == ["../.."]


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    done = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(MODULE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
