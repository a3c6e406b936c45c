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
# queue-level calls pause/resume/purge are those of features being built: the day the code makes
# one, these tests ask for its grant.
CALL_RE = re.compile(
    r"\.(get_task|list_tasks|run_task|create_task|delete_task|get_service|get_revision"
    r"|list_revisions|list_services|pause_queue|resume_queue|purge_queue|get_queue|list_queues)\b"
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
    "list_queues": "cloudtasks.queues.list",
}
FULL_VIEW = "cloudtasks.tasks.fullView"
# The calls every deployment makes on the target queues (GetTask, ListTasks for sweeps, RunTask,
# GetQueue for a sweep's plan: the queue's dispatch rate); what re-create and parking add there is
# gated on their inputs. create_task goes to the redrive queue (and, with a feature, elsewhere
# too); get_queue reads the redrive queue's rate and waiting jobs for a queued sweep's plan.
BASE_TARGET_CALLS = {"get_task", "list_tasks", "run_task", "get_queue"}
REDRIVE_QUEUE_CALLS = {"create_task", "get_queue"}
RUN_CALLS = {"get_service", "list_services", "get_revision", "list_revisions"}
# redrive's own tasks read with their body (CloudTasks.get_full, the FULL view): run_job reads the
# job it runs from the redrive queue, the claims register reads its markers from the claims queue.
FULL_READ = re.compile(r"\.get_full\(")
FULL_READ_PERMISSIONS = {"cloudtasks.tasks.get", FULL_VIEW}
FULL_READS_BY_QUEUE = {"redrive": "entry/on_job.py", "claims": "adapters/claims.py"}
RECREATE_TARGET_PERMISSIONS = {"cloudtasks.tasks.create", "cloudtasks.tasks.delete", FULL_VIEW}

# Parking's calls through the Cloud Tasks adapter (redrive.adapters.cloudtasks.CloudTasks), by
# function, and the queue each acts on: the task's own target queue, the parking queue, or a
# location (ListQueues, for REDRIVE_ALLOWED_QUEUES patterns projects/P/locations/L/queues/*).
# `withdraw` deletes a copy; `_pages` lists a queue page by page. The test reads these functions
# and fails when their calls are not exactly those below.
PARKING_CALLS: dict[tuple[str, str], set[tuple[str, str]]] = {
    ("pipeline/parking.py", "park"): {
        ("queue_info", "target"),  # the RetryConfig: is the next attempt the last?
        ("read_original", "target"),  # the original, FULL view
        ("get", "target"),  # the claim's re-read of the task
        ("seen", "parking"),  # a half-done park's copy
        ("create_parked", "parking"),
        ("delete", "target"),  # the original, once its copy exists
        ("delete", "parking"),  # withdraw: a copy whose original could not be deleted
    },
    ("pipeline/parking.py", "restore"): {
        ("read_parked", "parking"),  # the parked copy, FULL view
        ("seen", "target"),  # a half-done restore's task
        ("create_copy", "target"),  # the task again, in its origin queue
        ("delete", "parking"),  # the parked copy, once restored
    },
    ("pipeline/parking.py", "_original_still_there"): {("get", "target")},
    ("pipeline/parking.py", "_unfinished_park"): {("delete", "parking")},
    ("sweep.py", "_patrol_queue"): {("queue_info", "target"), ("list_page", "target")},
    ("sweep.py", "_census"): {("queue_info", "parking"), ("list_page", "parking")},
    ("sweep.py", "_restore_parked"): {("list_page", "parking")},
    ("sweep.py", "_origins_listed"): {("list_page", "target")},  # which originals are gone
    ("sweep.py", "_queues"): {("list_queues", "location")},
}
ADAPTER_CALL_RE = re.compile(r"\brt\.tasks\.(\w+)\(|\b(withdraw)\(|\bself\.(_pages)\(")
ADAPTER_ALIASES = {"withdraw": "delete", "_pages": "list_page"}

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


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    """Every function of a module by name, methods included (the first of a name wins)."""
    found: dict[str, ast.FunctionDef] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            found.setdefault(node.name, node)
    return found


def adapter_permissions() -> dict[str, set[str]]:
    """Each CloudTasks method (redrive.adapters.cloudtasks) → the permissions of the API calls it
    makes, through the other methods it calls: GetTask with `VIEWS["FULL"]` in the method itself
    needs the FULL view too; the configured view (`self.view`) counts as BASIC here (FULL is
    settings.response_view's grant)."""
    path = ROOT / "src/redrive/adapters/cloudtasks.py"
    source = path.read_text()
    tree = ast.parse(source)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CloudTasks"]
    bodies = {
        f.name: ast.get_source_segment(source, f) or ""
        for f in cls.body
        if isinstance(f, ast.FunctionDef)
    }

    def apis(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        text = bodies[name]
        found = set(re.findall(r"self\.client\.(\w+)\(", text))
        for callee in re.findall(r"self\.(\w+)\(", text):
            if callee in bodies and callee not in seen | {name}:
                found |= apis(callee, seen | {name})
        return found

    result = {}
    for name, text in bodies.items():
        calls = apis(name)
        perms = {CALL_PERMISSION[c] for c in calls}
        if "get_task" in calls and 'VIEWS["FULL"]' in text:
            perms.add(FULL_VIEW)
        result[name] = perms
    return result


def adapter_calls(rel: str, function: str) -> set[str]:
    """The CloudTasks methods one function of src/redrive calls (see ADAPTER_CALL_RE)."""
    path = ROOT / "src/redrive" / rel
    node = _functions(path).get(function)
    assert node is not None, f"{rel} has no function {function}: update PARKING_CALLS"
    text = ast.get_source_segment(path.read_text(), node) or ""
    return {
        ADAPTER_ALIASES.get(name, name)
        for match in ADAPTER_CALL_RE.finditer(text)
        for name in match.groups()
        if name
    }


def parking_permissions() -> dict[str, set[str]]:
    """Queue kind (target, parking, location) → the permissions parking's calls need there."""
    adapter = adapter_permissions()
    wanted: dict[str, set[str]] = {}
    for calls in PARKING_CALLS.values():
        for method, queue in calls:
            assert method in adapter, f"CloudTasks has no method {method}"
            wanted.setdefault(queue, set()).update(adapter[method])
    return wanted


def feature_queue(mod: Module, key: str) -> str:
    """The text of one entry of local.feature_queues (queue.tf)."""
    match = re.search(rf"\b{key} = \{{([^{{}}]*)\}}", str(mod.locals["feature_queues"]))
    assert match, f"local.feature_queues has no entry {key}"
    return match.group(1)


def target_queue_regex(mod: Module) -> str:
    """The regular expression the target_queues validation holds every name to."""
    rules = " ".join(str(v["condition"]) for v in mod.variables["target_queues"]["validation"])
    match = re.search(r'regex\("(\^projects/[^"]+)"', rules)
    assert match, rules
    return match.group(1).replace("\\\\", "\\")


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


# The parking settings, each from its field of var.parking (or the parking queue).
PARKING_ENV = {
    "REDRIVE_PARKING_QUEUE": 'google_cloud_tasks_queue.feature["parking"].id',
    "REDRIVE_PARK_MARGIN_S": "tostring(var.parking.margin_s)",
    "REDRIVE_PARK_BEFORE_EXPIRY_S": "tostring(var.parking.before_expiry_s)",
    "REDRIVE_PARKED_WARN_S": "tostring(var.parking.warn_s)",
}


def test_parking_settings_reach_both_functions_only_when_parking_is_on(module: Module) -> None:
    # Every parking variable redrive reads, and nothing else.
    assert {name for name in ENV_VARS if "PARK" in name} == set(PARKING_ENV)
    common = module.locals["env_common"]
    for name, source in PARKING_ENV.items():
        assert unq(common[name]) == f"${{var.parking.enabled ? {source} : null}}", name
    for fn in ENTRY_POINTS:  # run_job parks too: its pipeline parks a task it finds unfixed
        assert set(PARKING_ENV) <= function_env(module, fn), fn
    # The module's defaults are the runtime's.
    parking_type = str(module.variables["parking"]["type"])
    for name, source in PARKING_ENV.items():
        input_field = re.search(r"var\.parking\.(\w+)", source)
        if input_field is None:
            continue
        match = re.search(
            rf"{input_field.group(1)}\s*=\s*optional\(number,\s*([0-9.]+)\)", parking_type
        )
        assert match, (input_field.group(1), parking_type)
        assert float(match.group(1)) == float(ENV_VARS[name].default or "nan"), name
    assert re.search(r"enabled\s*=\s*optional\(bool,\s*false\)", parking_type), (
        "parking must be off by default"
    )


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
    assert {"get_task", "run_task", "get_queue", "list_queues"} <= set(calls), (
        f"scanner found too little: {calls}"
    )

    roles = module.of_type("google_project_iam_custom_role")
    runner_perms = set(permissions_of(module, roles["task_runner"]["permissions"]))
    enqueuer_perms = set(permissions_of(module, roles["job_enqueuer"]["permissions"]))
    run_perms = set(permissions_of(module, roles["run_viewer"]["permissions"]))
    granted_anywhere = set(permissions_of(module, module.locals["feature_queues"]))
    granted_anywhere |= runner_perms | enqueuer_perms | run_perms

    # Every API method the functions call is granted somewhere, but ListQueues: the patrol lists
    # a location's queues only for REDRIVE_ALLOWED_QUEUES patterns, which target_queues refuses.
    names = target_queue_regex(module)
    assert re.fullmatch(names, "projects/acme-prod/locations/europe-west1/queues/billing"), names
    pattern = "projects/acme-prod/locations/europe-west1/queues/*"
    assert not re.fullmatch(names, pattern), "target_queues takes patterns: grant ListQueues"
    assert CALL_PERMISSION["list_queues"] not in granted_anywhere
    missing = {
        method
        for method in calls
        if method != "list_queues" and CALL_PERMISSION[method] not in granted_anywhere
    }
    assert not missing, f"the code calls {sorted(missing)} and nothing grants it"

    # Re-create's calls on the target queues (a copy created there, the original read with its
    # body and deleted) are granted only when var.recreate enables them.
    gated = str(module.locals["recreate_target_permissions"])
    assert "var.recreate.enabled" in gated, gated
    assert set(quoted_permissions(gated)) == RECREATE_TARGET_PERMISSIONS
    pipeline_source = "".join(
        path.read_text() for path in (ROOT / "src/redrive/pipeline").glob("*.py")
    )
    assert "delete_task" in calls and "create_copy" in pipeline_source

    # Parking's, on the target queues and on the parking queue, only when var.parking enables it.
    parking = parking_permissions()
    assert set(parking) == {"target", "parking", "location"}, parking
    assert parking["location"] == {CALL_PERMISSION["list_queues"]}
    gated = str(module.locals["parking_target_permissions"])
    assert "var.parking.enabled" in gated, gated
    assert set(quoted_permissions(gated)) == parking["target"], gated
    own = set(permissions_of(module, feature_queue(module, "parking")))
    assert own == parking["parking"], own
    assert "var.parking.enabled ? {parking = {" in str(module.locals["feature_queues"])
    assert str(module.locals["feature_target_permissions"]).count("local.") == 2

    want_base = {CALL_PERMISSION[c] for c in calls if c in BASE_TARGET_CALLS}
    assert runner_perms == want_base | {FULL_VIEW} | RECREATE_TARGET_PERMISSIONS | parking["target"]
    want_redrive = {CALL_PERMISSION[c] for c in calls if c in REDRIVE_QUEUE_CALLS}
    package = ROOT / "src" / "redrive"
    full_reads = {
        queue: bool(FULL_READ.search((package / path).read_text()))
        for queue, path in FULL_READS_BY_QUEUE.items()
    }
    assert all(full_reads.values()), f"the scanner lost track of the FULL reads: {full_reads}"
    want_redrive |= FULL_READ_PERMISSIONS
    claims_perms = set(permissions_of(module, feature_queue(module, "claims")))
    assert claims_perms == {"cloudtasks.tasks.create"} | FULL_READ_PERMISSIONS, claims_perms
    want_run = {CALL_PERMISSION[c] for c in calls if c in RUN_CALLS}
    assert enqueuer_perms == want_redrive, f"redrive queue: granted {enqueuer_perms}"
    assert run_perms == want_run, f"Cloud Run: granted {run_perms}, calls {sorted(want_run)}"
    # The Cloud Run reader is a custom role bound in the fix check's projects only.
    binding = module.resources[("google_project_iam_member", "run_viewer")]
    assert unq(binding["role"]) == "${google_project_iam_custom_role.run_viewer[each.key].name}"
    assert 'fix_check == "revision"' in str(module.locals["run_viewer_projects"])


def test_parking_calls_are_read_from_the_source() -> None:
    """PARKING_CALLS is exactly what parking's functions call, and covers every function of
    redrive.pipeline.parking that calls Cloud Tasks."""
    for (rel, function), table in PARKING_CALLS.items():
        assert adapter_calls(rel, function) == {method for method, _ in table}, (rel, function)
    path = ROOT / "src/redrive/pipeline/parking.py"
    calling = {name for name in _functions(path) if adapter_calls("pipeline/parking.py", name)}
    listed = {function for rel, function in PARKING_CALLS if rel == "pipeline/parking.py"}
    # Nested functions (a claim's resume check) are read as part of the function around them.
    nested = {"half_done", "give_up", "take"}
    assert calling - nested == listed, calling - nested ^ listed


def test_adapter_permissions_follow_the_calls_each_method_makes() -> None:
    adapter = adapter_permissions()
    assert adapter["read_parked"] == {"cloudtasks.tasks.get", FULL_VIEW}
    assert adapter["seen"] == {"cloudtasks.tasks.get"}
    assert adapter["queue_info"] == {"cloudtasks.queues.get"}
    assert adapter["list_queues"] == {"cloudtasks.queues.list"}
    assert adapter["create_parked"] == adapter["create_copy"] == {"cloudtasks.tasks.create"}
    assert adapter["delete"] == {"cloudtasks.tasks.delete"}
    assert adapter["run"] == {"cloudtasks.tasks.run", "cloudtasks.tasks.get"}


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


def test_a_parked_copy_is_never_deleted_by_its_retries_and_the_queue_is_paused_by_hand(
    module: Module,
) -> None:
    # Unlimited attempts, and no max_retry_duration: a copy dispatched from a queue resumed by
    # mistake fails against its .invalid host and stays, until restored, purged or retention.
    assert re.search(r"max_attempts = -1\b", feature_queue(module, "parking"))
    queue = module.resources[("google_cloud_tasks_queue", "feature")]
    retry = {k for k in block(queue, "retry_config") if not k.startswith("__")}
    assert retry == {"max_attempts"}, retry
    assert unq(block(queue, "retry_config")["max_attempts"]) == "${each.value.max_attempts}"
    command = unq(module.outputs["parking_queue_pause_command"]["value"])
    assert 'var.parking.enabled ? "gcloud tasks queues pause ' in command, command
    assert 'google_cloud_tasks_queue.feature["parking"].name' in command


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


def test_the_patrol_is_published_to_the_topic_handle_signal_is_triggered_by(
    module: Module,
) -> None:
    job = module.resources[("google_cloud_scheduler_job", "patrol")]
    assert unq(job["count"]) == "${var.parking.enabled ? 1 : 0}"
    target = block(job, "pubsub_target")
    trigger = block(module.resources[("google_cloudfunctions2_function", "main")], "event_trigger")
    assert unq(target["topic_name"]) == unq(trigger["pubsub_topic"]) == "${local.topic_id}"
    assert "attributes" not in target  # the data alone says patrol (tests/terraform decodes it)
    assert job["depends_on"] == ["${google_cloudfunctions2_function.main}"]
    # Nothing grants publishing to the Cloud Scheduler service agent: its own role holds it.
    assert not [
        body
        for _, _, body in all_role_bindings(module)
        if "cloudscheduler" in str(body.get("member", ""))
    ]


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
    assert set(defaults) == {"FAILED", "PERMISSION_DENIED", "HALTED"}
    assert set(defaults) <= {o.value for o in Outcome}


def test_parking_metrics_and_alerts_read_what_the_patrol_and_the_decisions_write(
    module: Module,
) -> None:
    """The field names and values the parking metrics and alerts filter on are the code's
    (tests/terraform/test_parking_records.py evaluates them on real lines)."""
    from redrive.adapters.cloudtasks import QUEUE_STATES

    sweep = ROOT / "src/redrive/sweep.py"
    census = ast.get_source_segment(sweep.read_text(), _functions(sweep)["_census"]) or ""
    metrics = str(module.locals["parking_metrics"])
    assert metrics.startswith("${var.parking.enabled ? {"), metrics
    fields = set(re.findall(r'field = "(\w+)"', metrics))
    assert fields == {"parked", "expiring"}
    for name in fields | {"state"}:
        assert f'"{name}"' in census, f"the census writes no parking.{name}"
    metric = module.resources[("google_logging_metric", "parking")]
    assert unq(metric["value_extractor"]) == "EXTRACT(jsonPayload.parking.${each.value.field})"
    assert unq(metric["filter"]) == "${local.census_filter}"
    assert unq(block(metric, "metric_descriptor")["value_type"]) == "DISTRIBUTION"
    patrol = str(module.locals["patrol_filter"])
    assert 'jsonPayload.event=\\"redrive.sweep\\"' in patrol
    assert 'jsonPayload.purpose=\\"patrol\\"' in patrol
    assert "jsonPayload.parking.expiring:*" in str(module.locals["census_filter"])
    not_paused = str(module.locals["parking_not_paused_filter"])
    assert 'jsonPayload.parking.state!=\\"PAUSED\\"' in not_paused and "PAUSED" in set(
        QUEUE_STATES.values()
    )
    assert "jsonPayload.parking.state:*" in not_paused
    parked = module.resources[("google_monitoring_alert_policy", "parked")]
    condition = block(block(parked, "conditions"), "condition_threshold")
    outcomes = re.findall(r'outcome=\\"([A-Z_]+)\\"', str(condition["filter"]))
    assert outcomes == [Outcome.PARKED.value], outcomes
    assert "var.parking.alerts.parked.threshold" in str(condition["threshold_value"])
    gates = module.locals["pipeline_alert"]
    for name in ("parked", "parked_expiring", "parking_paused"):
        assert "var.parking.enabled" in str(gates[name]) and "pipeline_alerts.enabled" in str(
            gates[name]
        ), name


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
