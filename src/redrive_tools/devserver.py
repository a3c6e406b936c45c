"""A real functions-framework server in its own process group, for local runs (the demo), the
tests and the benchmarks: the functions served exactly as Cloud Functions serves them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; a bounded wait
    (a hang guard, never a timing assertion). Raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


class FunctionServer:
    """`functions-framework --target TARGET` on loopback; its stdout (JSON lines) to `log_path`.

    The environment is this process's without REDRIVE_*, CLOUD_* and PYTHONPATH, plus `env`: the
    server sees only the settings it is given. Stopped by its process group.
    """

    def __init__(
        self,
        target: str,
        signature_type: str,
        env: dict[str, str],
        log_path: Path,
        *,
        source: Path,
        command: Sequence[str] | None = None,
        port: int | None = None,
        pythonpath: str | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.target = target
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("REDRIVE_", "CLOUD_")) and k != "PYTHONPATH"
        }
        base.update(env, PYTHONUNBUFFERED="1")
        if pythonpath:
            base["PYTHONPATH"] = pythonpath
        self.process = subprocess.Popen(
            [
                *(command or [sys.executable, "-m", "functions_framework"]),
                "--target",
                target,
                "--signature-type",
                signature_type,
                "--source",
                str(source),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=source.parent,
            env=base,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends it and its workers
        )
        deadline = time.monotonic() + start_timeout_s
        while not self._up():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"functions-framework {target} did not listen on {self.port}")
            time.sleep(0.05)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"functions-framework {self.target} exited:\n"
                + self.log_path.read_text(errors="replace")[-4000:]
            )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line the server printed so far."""
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                with suppress(ValueError):
                    out.append(json.loads(raw))
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
