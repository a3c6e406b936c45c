"""Emulator throughput on this machine: GetTask/s and RunTask/s over gRPC, HTTP dispatches/s.

The emulator runs in its own process (`cloudtasks_emulator.serve`), with the production quotas
(the quota check is on every call's path, so its cost is in these figures); the clients and the
HTTP target (a minimal asyncio HTTP/1.1 responder with keep-alive) run in this one. RunTask/s is
measured on a second emulator with the RunTask quota lifted: at the production quota it is 60 a
minute by design, which the last row shows. Prints a table.

    PYTHONPATH=src python bench/emulator_bench.py [--seconds 5] [--threads 4] [--tasks 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from google.cloud import tasks_v2beta3  # noqa: E402

from cloudtasks_emulator import tasks_client  # noqa: E402
from redrive_tools.devserver import free_port  # noqa: E402

LOCATION = "projects/bench/locations/local"


class Target:
    """Answers every request with 200 (or 500 under /fail), counting them, on its own loop."""

    def __init__(self) -> None:
        self.count = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        )
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer, self._status)

    def _status(self, head: bytes) -> bytes:
        self.count += 1
        return b"500 Internal Server Error" if b" /fail" in head[:64] else b"200 OK"


async def answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status_of: Callable[[bytes], bytes]
) -> None:
    """Answer each HTTP/1.1 request of one connection (read whole, body included) with the
    status `status_of` gives for its head, and no body."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(b"HTTP/1.1 " + status_of(head) + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def start_emulator(
    time_scale: float, *, lift_quotas: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    quotas = "Quotas.lifted()" if lift_quotas else "Quotas()"
    code = (
        "from cloudtasks_emulator import Quotas, serve; "
        f"serve(host='127.0.0.1', grpc_port={port}, rest_port={free_port()}, "
        f"time_scale={time_scale}, quotas={quotas})"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # own process group: stopped by its id below
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        if raw.startswith(b"export CLOUD_TASKS_EMULATOR_HOST="):
            return proc, raw.decode().strip().split("=", 1)[1]
    raise RuntimeError("emulator did not start")


def stop_emulator(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def per_second(fn: Any, seconds: float, threads: int) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            fn()
            counts[i] += 1

    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return sum(counts) / (time.monotonic() - start)


def run_burst(client: Any, task: str, calls: int) -> int:
    """RunTask `calls` times at once; return how many were refused for quota."""
    from google.api_core import exceptions as gexc

    refused = 0
    for _ in range(calls):
        try:
            client.run_task(name=task)
        except gexc.ResourceExhausted:
            refused += 1
    return refused


def dispatch_rate(target_grpc: str, target: Target, n: int, qid: str) -> float:
    c = tasks_client(target_grpc, "v2beta3")
    q = c.create_queue(parent=LOCATION, queue={"name": f"{LOCATION}/queues/{qid}"}).name
    c.pause_queue(name=q)
    url = f"http://127.0.0.1:{target.port}/ok"
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: c.create_task(parent=q, task={"http_request": {"url": url}}), range(n)
            )
        )
    before = target.count
    start = time.monotonic()
    c.resume_queue(name=q)
    while target.count - before < n:
        time.sleep(0.005)
    return n / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=4000)
    args = parser.parse_args()

    target = Target()
    target.start()
    rows: list[tuple[str, str, str]] = []
    proc, grpc_target = start_emulator(1.0)
    try:
        c = tasks_client(grpc_target, "v2beta3")
        unlimited = {"max_attempts": -1}  # forced runs fail on purpose: keep the task
        queue = {"name": f"{LOCATION}/queues/get", "retry_config": unlimited}
        q = c.create_queue(parent=LOCATION, queue=queue).name
        c.pause_queue(name=q)
        fail_url = f"http://127.0.0.1:{target.port}/fail"
        task = c.create_task(parent=q, task={"http_request": {"url": fail_url}}).name
        view = tasks_v2beta3.Task.View.BASIC
        rate = per_second(
            lambda: c.get_task(request={"name": task, "response_view": view}),
            args.seconds,
            args.threads,
        )
        rows.append(("GetTask over gRPC", f"{rate:,.0f}/s", f"{args.threads} client threads"))
        rate = dispatch_rate(grpc_target, target, args.tasks, "disp")
        rows.append(
            (
                "HTTP dispatches, one queue",
                f"{rate:,.0f}/s",
                f"{args.tasks} tasks, queue limit 500/s (burst 100)",
            )
        )
        refused = run_burst(c, task, 80)
        rows.append(
            (
                "RunTask at the production quota",
                f"{80 - refused}/80",
                f"calls let through in a burst of 80 ({refused} RESOURCE_EXHAUSTED)",
            )
        )
    finally:
        stop_emulator(proc)
    proc, grpc_target = start_emulator(1.0, lift_quotas=True)
    try:
        c = tasks_client(grpc_target, "v2beta3")
        queue = {"name": f"{LOCATION}/queues/run", "retry_config": unlimited}
        q = c.create_queue(parent=LOCATION, queue=queue).name
        c.pause_queue(name=q)
        task = c.create_task(parent=q, task={"http_request": {"url": fail_url}}).name
        rate = per_second(lambda: c.run_task(name=task), args.seconds, args.threads)
        rows.append(
            (
                "RunTask over gRPC",
                f"{rate:,.0f}/s",
                "quota lifted; each one dispatched (target answers 500)",
            )
        )
    finally:
        stop_emulator(proc)
    # time_scale 4: the 500/s limit is emulated time, so real capacity above 500/s shows here
    proc, grpc_target = start_emulator(4.0)
    try:
        rate = dispatch_rate(grpc_target, target, args.tasks, "fast")
        rows.append(
            (
                "HTTP dispatches, one queue",
                f"{rate:,.0f}/s",
                "time_scale 4 (limit = 2,000/s real): raw dispatcher capacity",
            )
        )
    finally:
        stop_emulator(proc)
        target.stop()

    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'rate':>10}  notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
