"""`redrive demo` runs for real (emulator, application, functions-framework) and tells the story
it promises: fix not deployed, re-driven after the deploy, then NOT_FOUND for a late duplicate."""

from __future__ import annotations

import json

from click.testing import CliRunner

from redrive_tools.cli import main
from redrive_tools.demo import TASKS, run_demo


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
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "outcome lines" in result.output and "demo OK" in result.output
    assert result.output.count("DISPATCHED") >= TASKS
