"""A command line that never leaves an operator guessing (issue 17, item 6), for every command:
while a call is retried against an address where nothing answers, a spinner on a terminal (a
pty) or one line on stderr elsewhere; the end is one line saying what was given up on; no
Google credentials is one line and exit 4; gRPC is quiet; the docs say what the commands do.

Each command runs in its own process (group), stopped by that group's id if it outlives the
hang guard of tests.test_cli_terminal."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest

from redrive_tools.cli import EXIT_CODES_HELP
from redrive_tools.commands import main
from tests.integration.helpers import ROOT
from tests.test_cli_terminal import HANG_GUARD_S, SPINNER, on_terminal, plain, unreachable

# SIGINT back to Python's handler first: a shell that starts a job in the background (as CI
# runs the suite) leaves SIGINT ignored in everything it starts, which Ctrl-C at a terminal, sent
# to a foreground command, never is.
CLI = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from redrive_tools.commands import main; main(prog_name='redrive')",
]
NOWHERE = "projects/demo/locations/local1/queues/nowhere"
PARKING = "projects/demo/locations/local1/queues/parking"

# Every command that calls Cloud Tasks before it can answer, with the call it waits for first.
WAITING_COMMANDS: list[tuple[list[str], str]] = [
    (["inspect", NOWHERE], "ListTasks queues/nowhere"),
    (["status", "--redrive-queue", NOWHERE], "ListTasks queues/nowhere"),
    (["cancel", "rd-000000000000", "--redrive-queue", NOWHERE], "ListTasks queues/nowhere"),
    (["parked", "list"], "GetQueue queues/parking"),
    (["parked", "show", f"{NOWHERE}/tasks/t-1"], "GetQueue queues/parking"),
    (["parked", "purge", "--all", "--yes"], "ListTasks queues/parking"),
    (["run", f"{NOWHERE}/tasks/t-1", "--fix-check", "none"], "GetTask queues/nowhere/tasks/t-1"),
]
"""These show a spinner; `sweep` and `parked restore` show a progress bar instead (below)."""


def settings() -> dict[str, str]:
    env = unreachable()
    env.update(
        REDRIVE_PARKING_QUEUE=PARKING,
        REDRIVE_CLAIMS_QUEUE="projects/demo/locations/local1/queues/claims",
    )
    return env


def ids(value: Any) -> str:
    return " ".join(value[:2]) if isinstance(value, list) else ""


@pytest.mark.parametrize(("args", "call"), WAITING_COMMANDS, ids=ids)
def test_on_a_terminal_a_spinner_says_what_is_waited_for_and_the_end_is_one_line(
    args: list[str], call: str
) -> None:
    env = settings()
    host = env["CLOUD_TASKS_EMULATOR_HOST"]
    code, shown, stdout = on_terminal([*CLI, *args], env)
    assert code == 1, plain(shown)
    assert "\x1b[?25l" in shown and SPINNER & set(shown)  # a live spinner (the cursor hidden)
    seen = plain(shown)
    assert call in seen and f"Cloud Tasks at {host}" in seen
    assert "UNAVAILABLE (Connection refused)" in seen  # the last answer, while it retries
    if args[0] == "run":  # its outcome table is on stdout, the reason whole in it
        assert "FAILED" in stdout and "gaveupafter" in "".join(stdout.split())
        return
    assert stdout == ""
    # The spinner is gone at the end; the final reason is the last line, and one line.
    last = seen.strip().splitlines()[-1]
    assert last.startswith("redrive: ") and " failed: " in last, seen[-1500:]
    assert f"Cloud Tasks at {host} did not answer {call}: gave up after" in last
    assert "REDRIVE_RETRY_DEADLINE_S=2" in last and f"is the emulator running at {host}?" in last


@pytest.mark.parametrize(
    ("args", "doing"),
    [
        (["sweep", NOWHERE, "--deployed-at", "2026-01-01T00:00:00Z"], "sweeping"),
        (["parked", "restore", "--all"], "restoring"),
    ],
    ids=ids,
)
def test_on_a_terminal_a_bulk_command_has_a_bar_that_says_what_is_waited_for(
    args: list[str], doing: str
) -> None:
    code, shown, stdout = on_terminal([*CLI, *args], settings())
    assert code == 1
    seen = plain(shown)
    assert doing in seen and "ListTasks attempt 2: UNAVAILABLE (Connection refused)" in seen
    assert "gave up:" in stdout and "did not answer ListTasks" in stdout


@pytest.mark.parametrize(("args", "call"), WAITING_COMMANDS, ids=ids)
def test_off_a_terminal_a_retried_call_is_said_once_and_the_end_is_one_line(
    args: list[str], call: str
) -> None:
    env = settings()
    host = env["CLOUD_TASKS_EMULATOR_HOST"]
    done = subprocess.run(
        [*CLI, *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    retrying = [line for line in lines if "retrying for up to 2 s" in line]
    assert len(retrying) == 1, done.stderr  # said once, not once per display
    assert retrying[0].startswith(f"redrive: Cloud Tasks at {host} did not answer {call}: ")
    assert "Traceback" not in done.stderr and "\x1b[" not in done.stderr  # no live display
    if args[0] == "run":  # the record on stdout, the reason given up on last on stderr
        assert done.stdout.count("\n") == 1 and '"outcome": "FAILED"' in done.stdout
    else:
        assert done.stdout == ""
        assert len(lines) == 2, done.stderr
    assert f"did not answer {call}: gave up after" in lines[-1]


def no_credentials(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDRIVE_", "CLOUD_", "GOOGLE_", "GCE_", "CLOUDSDK_"))
    }
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        GCE_METADATA_HOST="127.0.0.1:9",  # no metadata server either
        GCE_METADATA_IP="127.0.0.1:9",
        REDRIVE_PARKING_QUEUE="projects/p/locations/l/queues/parking",
        REDRIVE_CLAIMS_QUEUE="projects/p/locations/l/queues/claims",
    )
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--redrive-queue", "projects/p/locations/l/queues/redrive"],
        ["cancel", "rd-000000000000", "--redrive-queue", "projects/p/locations/l/queues/r"],
        ["parked", "list"],
        ["parked", "show", "projects/p/locations/l/queues/q/tasks/t"],
        ["parked", "restore", "--all"],
        ["parked", "purge", "--all", "--yes"],
    ],
    ids=ids,
)
def test_no_google_credentials_is_one_line_and_exit_4_for_every_command(
    args: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [*CLI, *args],
        env=no_credentials(tmp_path),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "no Google credentials" in line and "gcloud auth application-default login" in line
    assert "CLOUD_TASKS_EMULATOR_HOST" in line and done.stdout == ""


def test_grpc_is_quiet_unless_asked_for() -> None:
    show = "import os; print(os.environ['GRPC_VERBOSITY'], repr(os.environ['GRPC_TRACE']))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    env["PYTHONPATH"] = str(ROOT / "src")

    def entry(extra: dict[str, str]) -> str:
        code = f"import redrive_tools.commands, sys; assert 'grpc' not in sys.modules; {show}"
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
            check=True,
        )
        return done.stdout.strip()

    # Set by the command's own module, before anything can start gRPC.
    assert entry({}) == "ERROR ''"
    assert entry({"GRPC_VERBOSITY": "DEBUG", "GRPC_TRACE": "http"}) == "DEBUG 'http'"
    # The demo passes the same to the functions-framework process it starts (its narrative is
    # checked free of gRPC's lines in tests/test_cli_terminal.py).
    from redrive_tools.quiet import GRPC_QUIET

    assert GRPC_QUIET == {"GRPC_VERBOSITY": "ERROR", "GRPC_TRACE": ""}


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", command))
    return found


def test_every_command_but_emulator_takes_json_as_the_docs_say() -> None:
    docs = (ROOT / "docs" / "cli.md").read_text()
    assert "Every command but `emulator` takes `--json`" in docs
    names = [name for name, _ in commands(main)]
    assert {"run", "sweep", "inspect", "status", "cancel", "demo", "emulator"} <= set(names)
    for name, command in commands(main):
        flags = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert ("--json" in flags) == (name != "emulator"), name


def test_docs_describe_every_command_and_the_exit_codes() -> None:
    docs = (ROOT / "docs" / "cli.md").read_text()
    for name, _ in commands(main):
        top = name.split()[0]
        assert f"`redrive {top}" in docs or f"`{name.split()[-1]} " in docs, name
    for option in ("--watch", "--interval", "--log", "--since", "--redrive-queue"):
        assert option in docs, option
    # The exit-code table of the docs is the one of every command's --help.
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", docs, re.M))
    helped = dict(re.findall(r"^  (\d+)  (.+)$", EXIT_CODES_HELP, re.M))
    assert sorted(table) == sorted(helped) == ["0", "1", "130", "2", "3", "4", "5"]
    assert "halted" in table["5"] and "halted" in helped["5"]
    assert "Ctrl-C" in table["130"] and "Ctrl-C" in helped["130"]
    assert "setup problem" in table["4"] and "setup problem" in helped["4"]
    assert "Ctrl-C" in table["0"] and "--watch" in table["0"]  # how --watch ends
    readme = (ROOT / "README.md").read_text()
    quick = readme[: readme.index("## What redrive does")]  # the quick start
    assert ". .venv/bin/activate" in quick and "pip install -e ." in quick


def test_ctrl_c_is_one_line_and_exit_130() -> None:
    env = settings()
    env["REDRIVE_RETRY_DEADLINE_S"] = "600"  # it would retry for ten minutes
    args = [*CLI, "sweep", NOWHERE, "--deployed-at", "2026-01-01T00:00:00Z", "--json"]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, interrupted by its id
    )
    assert proc.stdout is not None and proc.stderr is not None
    said = bytearray()
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while b"retrying for up to 600 s" not in said:  # it is waiting on the call
            assert proc.poll() is None and time.monotonic() < deadline, said.decode()
            if select.select([proc.stderr], [], [], 0.1)[0]:
                said.extend(os.read(proc.stderr.fileno(), 65536))
        os.killpg(proc.pid, signal.SIGINT)
        stdout, rest = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    stderr = (said + rest).decode()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("redrive: interrupted (Ctrl-C)") and "run the same command" in last
    assert all(line.startswith(b"{") for line in stdout.splitlines())  # only records, if any
