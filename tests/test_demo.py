"""`redrive demo` runs for real (emulator, application, functions-framework) and tells the story
it promises: fix not deployed, re-driven after the deploy, then NOT_FOUND for a late duplicate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from click.testing import CliRunner

from redrive_tools.cli import main
from redrive_tools.demo import TASKS, run_demo
from tests.integration.helpers import ROOT

GRPC_LOG = re.compile(r"chttp2_transport|Got goaway|^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M)
"""A line of gRPC's own logging (absl format, e.g. "I1201 11:26:37.960598 ... Got goaway")."""


def test_demo_tells_the_whole_story(capsys):
    assert run_demo(json_output=True) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    outcomes = [(r["signal"]["message_id"], r["outcome"]) for r in records]
    assert outcomes == (
        [("alert-1", "SKIPPED_FIX_NOT_DEPLOYED")] * TASKS
        + [("deploy-1", "DISPATCHED")] * TASKS
        + [("alert-1-late", "NOT_FOUND")] * TASKS
    )
    tasks = {r["task"] for r in records}
    assert len(tasks) == TASKS
    dispatched = [r for r in records if r["outcome"] == "DISPATCHED"]
    assert all(r["fix"]["strategy"] == "deploy-signal" and r["sweep"] for r in dispatched)
    assert all(r["run"]["dispatch_count_after"] == 2 for r in dispatched)
    skipped = [r for r in records if r["outcome"] == "SKIPPED_FIX_NOT_DEPLOYED"]
    assert all(r["fix"]["strategy"] == "revision" for r in skipped)
    # The narration went to stderr, step by step, and ends with the verdict.
    for text in ("1. Tasks fail", "2. A dead-letter alert", "3. Deploy the fix", "4. A late"):
        assert text in captured.err
    assert "RunTask was called 3 time(s)" in captured.err and "demo OK" in captured.err


def test_demo_command_exits_0_with_a_table():
    result = CliRunner().invoke(main, ["demo"], env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    assert "outcome lines" in result.output and "demo OK" in result.output
    assert result.output.count("DISPATCHED") >= TASKS
    assert "…" not in result.output  # reasons wrap, whole
    assert "fix evidence (emulated clock, UTC)" in result.output
    assert "ahead of this machine's clock" in " ".join(result.output.split())


def test_demo_as_a_command_holds_no_grpc_log_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDRIVE_", "CLOUD_", "GRPC_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    command = "from redrive_tools.cli import main; main(prog_name='redrive')"
    done = subprocess.run(
        [sys.executable, "-c", command, "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len([json.loads(line) for line in done.stdout.splitlines()]) == 3 * TASKS
    assert not GRPC_LOG.search(done.stdout + done.stderr), done.stderr
    assert "The emulator's clock runs 60x" in done.stderr and "demo OK" in done.stderr
