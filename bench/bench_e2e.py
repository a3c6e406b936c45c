"""P1: one signal end to end over HTTP vs the raw RPCs it needs.

End to end: a dead-letter CloudEvent POSTed to a real functions-framework server running
handle_signal in direct mode (fix check none), which reads the task (GetTask), decides, force-runs
it (RunTask) and logs the outcome; timed until the HTTP answer. Raw: the same two calls (GetTask
then RunTask) made directly with the official client from this process. Both against one emulator
in its own process, on distinct tasks that each failed once. Medians of `n` sequential runs.

Measured twice: at the emulator's own speed (RPCs of about a millisecond, so the fixed cost of the
HTTP hop, functions-framework and logging dominates the ratio), and again with `rpc_latency_ms`
of latency injected by the emulator into every GetTask and RunTask (a regional API round trip is
tens of milliseconds), the same for both sides.

    python bench/bench_e2e.py [--n 100] [--rpc-latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

from emulator_bench import Target, stop_emulator  # noqa: E402
from sweep_bench import start_emulator  # noqa: E402

from redrive.emulator import tasks_client  # noqa: E402
from tests.integration.helpers import FunctionServer, now_rfc3339, pubsub_data  # noqa: E402

LOCATION = "projects/bench/locations/local"


def failed_tasks(client: Any, target: Target, queue_id: str, n: int) -> list[str]:
    queue = client.create_queue(
        parent=LOCATION,
        queue={
            "name": f"{LOCATION}/queues/{queue_id}",
            "retry_config": {"max_attempts": -1, "min_backoff": "86400s", "max_backoff": "86400s"},
        },
    ).name
    url = f"http://127.0.0.1:{target.port}/fail"
    names = [
        client.create_task(parent=queue, task={"http_request": {"url": url}}).name for _ in range(n)
    ]
    deadline = time.monotonic() + 60
    for name in names:
        while "response_status" not in client.get_task(name=name).last_attempt:
            if time.monotonic() > deadline:
                raise RuntimeError("first attempts did not fail in time")
            time.sleep(0.01)
    return names


def cloud_event(payload: bytes, message_id: str) -> tuple[dict[str, str], bytes]:
    """A binary-mode Pub/Sub CloudEvent, as Eventarc sends it."""
    published = now_rfc3339()
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/bench/topics/signals",
        "ce-id": message_id,
        "ce-time": published,
        "Content-Type": "application/json",
    }
    return headers, json.dumps(pubsub_data(payload, {}, message_id, published)).encode()


def run(n: int, rpc_latency_ms: float = 20.0) -> dict[str, float]:
    target = Target()
    target.start()
    proc, grpc_target, rest_url = start_emulator()
    server: FunctionServer | None = None
    result: dict[str, float] = {"n": n, "rpc_latency_ms": rpc_latency_ms}
    try:
        client = tasks_client(grpc_target, "v2beta3")
        env = {
            "CLOUD_TASKS_EMULATOR_HOST": grpc_target,
            "REDRIVE_ALLOWED_QUEUES": f"{LOCATION}/queues/*",
            "REDRIVE_FIX_CHECK": "none",
            "REDRIVE_DIRECT_RATE_PER_S": "10000",
        }
        log = Path(tempfile.mkdtemp(prefix="bench-e2e-")) / "fn.log"
        server = FunctionServer("handle_signal", "cloudevent", env, log)
        # One keep-alive client, as Eventarc's push is: a fresh httpx client per request costs
        # ~40 ms here (it builds an SSL context), which would swamp what is measured.
        http = httpx.Client(base_url=server.url, timeout=30)
        phases = {
            label: (
                failed_tasks(client, target, f"{label}e2e", n + 5),
                failed_tasks(client, target, f"{label}raw", n + 5),
            )
            for label in ("", "slow-")
        }  # all made before any latency is injected
        for label, latency_ms in (("", 0.0), ("slow-", rpc_latency_ms)):
            if latency_ms:
                for method in ("GetTask", "RunTask"):
                    fault = {"method": method, "delay_s": latency_ms / 1000, "times": -1}
                    httpx.post(f"{rest_url}/_emulator/faults", json=fault, timeout=10)
            e2e_tasks, raw_tasks = phases[label]
            e2e = _time_e2e(http, e2e_tasks, label)
            raw = _time_raw(client, raw_tasks)
            key = label.replace("-", "_")
            result[f"{key}e2e_ms"] = statistics.median(e2e) * 1000
            result[f"{key}raw_ms"] = statistics.median(raw) * 1000
            result[f"{key}ratio"] = result[f"{key}e2e_ms"] / result[f"{key}raw_ms"]
        http.close()
        dispatched = len(server.outcomes(outcome="DISPATCHED"))
        if dispatched != 2 * (n + 5):
            raise RuntimeError(f"only {dispatched} of {2 * (n + 5)} signals dispatched")
    finally:
        if server is not None:
            server.stop()
        stop_emulator(proc)
        target.stop()
    return result


def _time_e2e(http: httpx.Client, tasks: list[str], label: str) -> list[float]:
    times: list[float] = []
    for i, task in enumerate(tasks):
        payload = json.dumps({"task": task, "dispatchCount": 1}).encode()
        headers, body = cloud_event(payload, f"bench-{label}{i}")
        start = time.perf_counter()
        response = http.post("/", headers=headers, content=body)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"handle_signal answered {response.status_code}")
        if i >= 5:  # the first few warm the instance up (imports, channel)
            times.append(elapsed)
    return times


def _time_raw(client: Any, tasks: list[str]) -> list[float]:
    times: list[float] = []
    for i, task in enumerate(tasks):
        start = time.perf_counter()
        client.get_task(request={"name": task, "response_view": 1})
        client.run_task(request={"name": task, "response_view": 1})
        if i >= 5:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rpc-latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.rpc_latency_ms)))


if __name__ == "__main__":
    main()
