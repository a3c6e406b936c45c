"""`redrive status --watch` through the real emulator: a sweep's lines in a log file, the status
refreshed on a terminal (a pty: rich Live, redrawn in place) and without one (a new table per
refresh), then Ctrl-C (SIGINT to the command's own process group): exit 0, as documented."""

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
import termios
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from redrive_tools.cli import main
from tests.integration.helpers import Stack
from tests.test_cli_terminal import CLI, HANG_GUARD_S, environment, plain


@pytest.fixture(scope="module")
def swept(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A log with one finished re-drive (a sweep that re-ran one task), and its id."""
    queue = stack.queue("uxwatch")
    stack.failed_task(queue, "w-1", "/uxwatch/fail")
    stack.target.statuses["/uxwatch/fail"] = 200  # the fix
    at = (stack.emu.clock.now() + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    done = CliRunner().invoke(
        main,
        ["sweep", queue, "--deployed-at", at, "--allow-any-queue", "--json"],
        env=stack.emu.env(),
    )
    assert done.exit_code == 0, done.output
    log = tmp_path_factory.mktemp("uxwatch") / "sweep.log"
    log.write_text(done.stdout)
    (summary,) = [json.loads(x) for x in done.stdout.splitlines() if '"redrive.sweep"' in x]
    assert summary["counts"] == {"DISPATCHED": 1}
    yield log, str(summary["redrive_id"])


def read_until(
    fd: int,
    seen: bytearray,
    done: re.Pattern[str] | Callable[[str], bool],
    proc: subprocess.Popen[bytes],
) -> str:
    """Read `fd` into `seen` until `done` matches what it shows (without escape codes); a hang
    guard, never a timing assertion."""
    deadline = time.monotonic() + HANG_GUARD_S
    matches = done.search if isinstance(done, re.Pattern) else done
    while not matches(plain(seen.decode("utf-8", errors="replace"))):
        assert proc.poll() is None, f"ended early ({proc.returncode}): {seen.decode()[-2000:]}"
        assert time.monotonic() < deadline, f"never matched {done}: {seen.decode()[-2000:]}"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            seen.extend(os.read(fd, 65536))
    return plain(seen.decode("utf-8", errors="replace"))


def refreshed(at_least: int) -> Callable[[str], bool]:
    """The live line has said a refresh numbered `at_least` or more (a redraw, four a second,
    may fall between two refreshes: not every number is drawn)."""

    def done(seen: str) -> bool:
        return max((int(n) for n in re.findall(r"refresh (\d+) at", seen)), default=0) >= at_least

    return done


def interrupt(proc: subprocess.Popen[bytes], outputs: dict[int, bytearray]) -> int:
    """Ctrl-C to the command's process group; read its outputs to their end; its exit code."""
    os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + HANG_GUARD_S
    open_fds = set(outputs)
    try:
        while open_fds:
            assert time.monotonic() < deadline, "did not stop on SIGINT"
            ready, _, _ = select.select(list(open_fds), [], [], 0.1)
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    chunk = b""
                if chunk:
                    outputs[fd].extend(chunk)
                else:
                    open_fds.discard(fd)
            if not ready and proc.poll() is not None:
                break
        return proc.wait(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_status_watch_on_a_terminal_redraws_in_place_until_ctrl_c(
    stack: Stack, swept: tuple[Path, str]
) -> None:
    log, rid = swept
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    args = [*CLI, "status", "--log", str(log), "--watch", "--interval", "0.2"]
    proc = subprocess.Popen(
        args,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=environment(**stack.emu.env()),
        start_new_session=True,  # its own process group, interrupted by its id
    )
    os.close(slave)
    shown = bytearray()
    try:
        seen = read_until(master, shown, refreshed(3), proc)
        code = interrupt(proc, {master: shown})
    finally:
        os.close(master)
    seen = plain(shown.decode("utf-8", errors="replace"))
    assert code == 0, seen[-2000:]
    assert "\x1b[?25l" in shown.decode()  # a live display (the cursor hidden while it runs)
    assert rid in seen and "finished" in seen and "redrive status" in seen
    assert "every 0.2 s; Ctrl-C to stop" in seen
    # Redrawn in place: refreshes 1, 2 and 3 were each drawn over the one before (cursor up).
    assert "\x1b[1A" in shown.decode() or re.search(r"\x1b\[\d+A", shown.decode())
    assert "-- refresh" not in seen  # not the line-per-refresh form
    assert "Traceback" not in seen and "KeyboardInterrupt" not in seen


def test_status_watch_without_a_terminal_prints_a_table_per_refresh_until_ctrl_c(
    stack: Stack, swept: tuple[Path, str]
) -> None:
    log, rid = swept
    args = [*CLI, "status", "--log", str(log), "--watch", "--interval", "0.2"]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(**stack.emu.env()),
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    try:
        read_until(proc.stderr.fileno(), err, re.compile(r"-- refresh 2 at .*Ctrl-C to stop"), proc)
        code = interrupt(proc, {proc.stdout.fileno(): out, proc.stderr.fileno(): err})
    finally:
        proc.stdout.close()
        proc.stderr.close()
    stdout, stderr = out.decode(), err.decode()
    assert code == 0, stderr
    assert stdout.count("redrive status") >= 2 and stdout.count(rid) >= 2  # a table each time
    assert "\x1b[" not in stdout  # no live display, no colour: a pipe
    assert re.search(r"-- refresh 1 at \d\d:\d\d:\d\d; again in 0.2 s; Ctrl-C to stop", stderr)
    assert "Traceback" not in stderr and "Aborted" not in stderr


def test_status_watch_says_a_failed_refresh_and_goes_on(
    stack: Stack, swept: tuple[Path, str]
) -> None:
    import grpc

    log, rid = swept
    redrive_queue = stack.queue("uxwatch-redrive", paused=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    args = [*CLI, "status", "--log", str(log), "--redrive-queue", redrive_queue, "--watch"]
    proc = subprocess.Popen(
        [*args, "--interval", "0.2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=environment(**stack.emu.env(), REDRIVE_RETRY_DEADLINE_S="3"),
        start_new_session=True,
    )
    os.close(slave)
    shown = bytearray()
    try:
        read_until(master, shown, refreshed(2), proc)
        # Cloud Tasks stops answering: the refresh says what it waits for, then that it failed.
        stack.emu.control.fail("ListTasks", grpc.StatusCode.UNAVAILABLE, times=-1)
        try:
            seen = read_until(
                master, shown, re.compile(r"refresh at \d\d:\d\d:\d\d failed: "), proc
            )
        finally:
            stack.emu.control.clear()
        # The redrive queue or the re-run task's queue, whichever was listed when it failed.
        said = re.search(r"refresh at \d\d:\d\d:\d\d failed: (.*)", seen)
        assert said and "ListTasks queues/uxwatch" in said[1], seen[-2000:]
        assert re.search(r"waiting \d+ s: ListTasks queues/uxwatch\S* · attempt \d", seen)
        last = max(int(n) for n in re.findall(r"refresh (\d+) at", seen))
        # Answered again: the next refresh comes, the watch never stopped.
        read_until(master, shown, refreshed(last + 1), proc)
        code = interrupt(proc, {master: shown})
    finally:
        os.close(master)
    assert code == 0
    assert rid in plain(shown.decode("utf-8", errors="replace"))
