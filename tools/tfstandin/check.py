"""`terraform init`, `validate` and `plan` of a configuration against the stand-in providers.

Terraform runs for real; only the providers are the stand-in's, attached through
TF_REATTACH_PROVIDERS. Terraform's data folder, its CLI configuration and the plan live in a
temporary folder, so the checked configuration's folder gains nothing but what the configuration
itself writes (the archive the module builds under `.build/`, as with the real archive provider).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfstandin.server import reattach_value, serve_all

STEP_TIMEOUT_S = 600


@dataclass
class Step:
    name: str
    command: list[str]
    returncode: int
    output: str
    seconds: float


@dataclass
class CheckResult:
    directory: Path
    steps: list[Step] = field(default_factory=list)
    plan: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.returncode == 0 for s in self.steps)

    @property
    def output(self) -> str:
        return "\n".join(f"$ {' '.join(s.command)}\n{s.output}" for s in self.steps)

    def planned_resources(self) -> dict[str, dict[str, Any]]:
        """Address -> planned values of every resource in the plan (modules included)."""
        found: dict[str, dict[str, Any]] = {}

        def walk(module: dict[str, Any]) -> None:
            for resource in module.get("resources", []):
                found[resource["address"]] = resource.get("values", {})
            for child in module.get("child_modules", []):
                walk(child)

        if self.plan:
            walk(self.plan.get("planned_values", {}).get("root_module", {}))
        return found


def terraform_binary() -> str | None:
    return shutil.which("terraform")


def check(
    directory: Path,
    variables: Mapping[str, str] | None = None,
    var_files: Sequence[Path] = (),
    plan: bool = True,
    terraform: str | None = None,
) -> CheckResult:
    """init + validate (+ plan, and the plan as JSON) of `directory`; stops at the first failure."""
    binary = terraform or terraform_binary()
    if binary is None:
        raise FileNotFoundError("terraform is not on PATH")
    directory = directory.resolve()
    result = CheckResult(directory)
    state = directory / "terraform.tfstate"
    if state.exists():  # the local backend would plan against it: not a fresh state
        result.steps.append(Step("fresh state", ["test", "!", "-e", str(state)], 1, "", 0.0))
        return result
    with tempfile.TemporaryDirectory(prefix="tfstandin-") as tmp:
        folder = Path(tmp)
        cli_config = folder / "cli.tfrc"
        cli_config.write_text("disable_checkpoint = true\n")
        served = serve_all(folder, workdir=directory)
        try:
            env = {
                **os.environ,
                "TF_REATTACH_PROVIDERS": reattach_value(served),
                "TF_DATA_DIR": str(folder / "data"),
                "TF_CLI_CONFIG_FILE": str(cli_config),
                "TF_IN_AUTOMATION": "1",
                "TF_INPUT": "0",
                "CHECKPOINT_DISABLE": "1",
            }
            env.pop("TF_CLI_ARGS", None)
            plan_file = folder / "plan.bin"
            # Terraform takes the last value given for a variable: the files first, so that
            # `variables` override what a file sets.
            var_args = [f"-var-file={f.resolve()}" for f in var_files]
            var_args += [f"-var={k}={v}" for k, v in (variables or {}).items()]
            steps = [
                ("init", ["init", "-backend=false", "-input=false", "-no-color"]),
                ("validate", ["validate", "-no-color"]),
            ]
            if plan:
                steps.append(
                    (
                        "plan",
                        [
                            "plan",
                            "-input=false",
                            "-lock=false",
                            "-refresh=false",
                            "-no-color",
                            f"-out={plan_file}",
                            *var_args,
                        ],
                    )
                )
                steps.append(("show", ["show", "-json", "-no-color", str(plan_file)]))
            for name, args in steps:
                started = time.monotonic()
                done = subprocess.run(
                    [binary, *args],
                    cwd=directory,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=STEP_TIMEOUT_S,
                    check=False,
                )
                output = done.stdout if name == "show" else done.stdout + done.stderr
                step = Step(name, ["terraform", *args], done.returncode, output, 0.0)
                step.seconds = time.monotonic() - started
                if name == "show" and done.returncode == 0:
                    result.plan = json.loads(done.stdout)
                    step.output = f"({len(done.stdout)} bytes of plan JSON)\n{done.stderr}"
                result.steps.append(step)
                if done.returncode != 0:
                    break
        finally:
            for s in served:
                s.stop()
        lock = directory / ".terraform.lock.hcl"
        if lock.exists() and "provider" not in lock.read_text():
            lock.unlink()  # init writes an empty lock file when every provider is attached
    return result
