"""The deployable archive runs on a clean Python: fresh venv, requirements, functions-framework."""

from __future__ import annotations

import os
import subprocess
import venv
import zipfile
from pathlib import Path

import pytest

from redrive.deploy import build_archive
from tests.integration.helpers import FunctionServer, Stack, dead_letter, now_rfc3339, post_signal


def test_archive_holds_exactly_the_deployable_source(tmp_path: Path):
    first = build_archive(tmp_path / "a.zip")
    second = build_archive(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()  # reproducible
    names = zipfile.ZipFile(first).namelist()
    assert {"main.py", "requirements.txt"} <= set(names)
    assert {n.split("/")[0] for n in names} == {"main.py", "requirements.txt", "src"}
    assert "src/redrive/handlers.py" in names and "src/redrive/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


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
