"""The deployable archive runs on a clean Python: fresh venv, requirements, functions-framework."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

from redrive_tools.archive import ROOT, allowlist, archive_files, build_archive, shipped
from tests.integration.helpers import FunctionServer, Stack, dead_letter, now_rfc3339, post_signal

RUNTIME_ONLY = ("src/redrive/",)
NEVER_SHIPPED = ("src/redrive_tools/", "src/cloudtasks_emulator/", "tests/", "bench/", "terraform/")


def test_archive_holds_exactly_the_function_runtime(tmp_path: Path):
    first = build_archive(tmp_path / "a.zip")
    second = build_archive(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()  # reproducible
    names = zipfile.ZipFile(first).namelist()
    assert {"main.py", "requirements.txt"} <= set(names)
    others = [n for n in names if n not in ("main.py", "requirements.txt")]
    assert others and all(n.startswith(RUNTIME_ONLY) for n in others), others
    assert not [n for n in names if n.startswith(NEVER_SHIPPED)]
    assert "src/redrive/entry/on_signal.py" in names and "src/redrive/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Every runtime module ships; no tool or emulator module does.
    runtime = {p.relative_to(ROOT).as_posix() for p in (ROOT / "src/redrive").rglob("*.py")}
    assert runtime - {n for n in names if "__pycache__" not in n} == set()


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_fileset_reads_the_allowlist_as_the_python_builder_does(tmp_path: Path):
    """Terraform's own fileset() on each pattern of deploy-files.txt gives the files the Python
    builder archives (terraform console evaluates it without any provider)."""
    expected = {name for _, name in archive_files()}
    found: set[str] = set()
    for pattern in allowlist():
        done = subprocess.run(
            ["terraform", "console"],
            input=f'jsonencode(fileset("{ROOT}", "{pattern}"))\n',
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
            env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
        )
        assert done.returncode == 0, done.stderr
        found |= {f for f in json.loads(json.loads(done.stdout.strip())) if shipped(f)}
    assert found == expected


@pytest.mark.slow
def test_archive_installs_and_serves_from_a_fresh_venv(tmp_path: Path):
    app = tmp_path / "app"
    with zipfile.ZipFile(build_archive(tmp_path / "redrive.zip")) as archive:
        archive.extractall(app)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(app / "requirements.txt"),
        ],
        check=False,
        cwd=app,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    # Nothing from this checkout leaks in: the venv sees only the archive and its requirements.
    probe = subprocess.run(
        [str(python), "-c", "import main, redrive, sys; print(redrive.__file__)"],
        check=False,
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1].startswith(str(app / "src")), probe.stdout

    stack = Stack()
    try:
        queue = stack.queue("billing")
        env = {**stack.emu.env(), "REDRIVE_ALLOWED_QUEUES": queue, "REDRIVE_FIX_CHECK": "none"}
        server = FunctionServer(
            "handle_signal",
            "cloudevent",
            env,
            tmp_path / "fn.log",
            source_dir=app,
            executable=str(env_dir / "bin" / "functions-framework"),
        )
        try:
            task = stack.failed_task(queue, "deployed-1", "/deployed/1")
            stack.target.statuses["/deployed/1"] = 200
            response = post_signal(server, dead_letter(task), "deployed-1", now_rfc3339())
            assert response.status_code == 200, response.text
            (line,) = server.outcomes(signal__message_id="deployed-1")
            assert line["outcome"] == "DISPATCHED"
        finally:
            server.stop()
    finally:
        stack.stop()
