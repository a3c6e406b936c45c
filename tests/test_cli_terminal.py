"""The command line on a real terminal (a pty): what people see while a call is retried, and
the demo as it prints on a 140-column terminal. Each command runs in its own process group (its
own session), stopped by that group's id if it outlives the hang guard."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import Any

from redrive_tools.devserver import free_port
from tests.integration.helpers import ROOT

HANG_GUARD_S = 120.0
"""Upper bound for one command (a hang guard, never a timing assertion)."""
# SIGINT back to Python's handler first: a shell that starts a job in the background (as CI
# runs the suite) leaves SIGINT ignored in everything it starts, which Ctrl-C at a terminal, sent
# to a foreground command, never is.
CLI = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from redrive_tools.cli import main; main(prog_name='redrive')",
]
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Z0-9]")
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
GRPC_LOG = re.compile(r"chttp2_transport|Got goaway|^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without REDRIVE_*, CLOUD_*, gRPC's or rich's own settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDRIVE_", "CLOUD_", "GRPC_VERBOSITY", "GRPC_TRACE"))
        and k not in {"FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"}
        and k not in {"LINES", "TERM"}
    }
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        TERM="xterm-256color",
        PYTHONIOENCODING="utf-8",
        LC_ALL="C.UTF-8",
        **extra,
    )
    return env


def on_terminal(
    args: list[str], env: dict[str, str], *, columns: int = 120, stdout_too: bool = False
) -> tuple[int, str, str]:
    """Run `args` with stderr (and with `stdout_too` stdout) on a pty of `columns` columns.
    Returns (exit code, what the terminal showed without escape codes, stdout when a pipe)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        args,
        stdin=slave,
        stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
        env=env,
        start_new_session=True,  # its own process group, stopped by its id
    )
    os.close(slave)
    piped: list[bytes] = []
    reader = None
    if proc.stdout is not None:
        stdout = proc.stdout
        reader = threading.Thread(target=lambda: piped.append(stdout.read()), daemon=True)
        reader.start()
    shown = bytearray()
    deadline = time.monotonic() + HANG_GUARD_S
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every end of the terminal is closed
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{args[3:]} did not finish: {shown.decode()[-2000:]}")
        proc.wait(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)
    if reader is not None:
        reader.join(HANG_GUARD_S)
    text = shown.decode("utf-8", errors="replace")
    return proc.returncode, text, b"".join(piped).decode("utf-8", errors="replace")


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "\n")


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def unreachable() -> dict[str, str]:
    """Settings pointing at an address where nothing listens: every call is refused and
    retried until REDRIVE_RETRY_DEADLINE_S."""
    return environment(
        CLOUD_TASKS_EMULATOR_HOST=f"127.0.0.1:{free_port()}",
        REDRIVE_RETRY_DEADLINE_S="2",
        REDRIVE_ALLOWED_QUEUES="projects/demo/locations/local1/queues/nowhere",
    )


def test_a_retried_call_shows_a_spinner_on_the_terminal_and_stdout_holds_only_the_record():
    env = unreachable()
    host = env["CLOUD_TASKS_EMULATOR_HOST"]
    task = "projects/demo/locations/local1/queues/nowhere/tasks/t-1"
    code, shown, stdout = on_terminal([*CLI, "run", task, "--fix-check", "none", "--json"], env)
    assert code == 1
    (record,) = json_lines(stdout)  # nothing but the record on stdout
    assert record["outcome"] == "FAILED" and "UNAVAILABLE" in record["reason"]
    assert "\x1b[?25l" in shown and SPINNER & set(shown)  # a live spinner (the cursor hidden)
    seen = plain(shown)
    assert "GetTask queues/nowhere/tasks/t-1" in seen
    assert f"waiting for Cloud Tasks at {host}" in seen
    assert "attempt 2, last UNAVAILABLE (Connection refused)" in seen
    assert "0:00:0" in seen  # how long the call has been waited for
    # The spinner is gone at the end; the final reason is the last line.
    last = seen.strip().splitlines()[-1]
    assert last.startswith(f"redrive: Cloud Tasks at {host} did not answer GetTask")
    assert "gave up after" in last and "REDRIVE_RETRY_DEADLINE_S=2" in last


def test_a_sweep_on_the_terminal_says_what_it_waits_for():
    env = unreachable()
    queue = "projects/demo/locations/local1/queues/nowhere"
    args = [*CLI, "sweep", queue, "--deployed-at", "2026-01-01T00:00:00Z"]
    code, shown, stdout = on_terminal(args, env)
    assert code == 1
    seen = plain(shown)
    assert "sweeping" in seen and "ListTasks" in seen and "UNAVAILABLE" in seen
    assert "ListTasks attempt 2: UNAVAILABLE (Connection refused)" in seen
    # The table (stdout) has the reason and what was given up on.
    assert "queue FAILED" in stdout and "listing tasks failed" in stdout
    assert "gave up:" in stdout and "ListTasks" in stdout


def test_the_demo_on_a_140_column_terminal():
    code, shown, _ = on_terminal([*CLI, "demo"], environment(), columns=140, stdout_too=True)
    seen = plain(shown)
    assert code == 0, seen
    assert "demo OK" in seen
    assert not GRPC_LOG.search(seen), GRPC_LOG.search(seen)  # no gRPC log line in the story
    assert "…" not in seen and "..." not in seen  # nothing cut
    flat = "".join(seen.split())
    # The failure time in a reason, whole (wrapped, not cut).
    assert re.search(r"lastfailedattemptat\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", flat)
    # The clock is said to be emulated, in the narrative and on the table.
    for said in (
        "The emulator's clock runs 60x",
        "so the times below are emulated and run ahead of this machine's clock",
        "fix evidence (emulated clock, UTC)",
        "ahead of this machine's clock at the end",
    ):
        assert "".join(said.split()) in flat, said
