"""A signal storm in queued mode, shared by tests/stress/test_storm.py and bench/bench_storm.py.

N tasks fail, the fix is deployed, then N dead-letter signals arrive within seconds at a real
handle_signal server. Every failure becomes one named job in the redrive queue, whose rate limit
(`limit_per_min / 60` a second, burst 1) is the only throttle; the emulator dispatches the jobs over
HTTP to a real run_job server, which force-runs each task.

Time: the emulator runs `time_scale` times faster than real time, and so do its queues' rate
limits, so a 1,000-second throttled re-drive takes 1,000 / time_scale real seconds. The RunTask
rate is measured on the emulated clock (the time each RunTask call reached the emulator), which is
the clock the rate limit runs on.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cloudtasks_emulator import Quotas
from redrive_tools.devserver import free_port, wait_for
from tests.integration.helpers import (
    PARENT,
    FunctionServer,
    Stack,
    dead_letter,
    now_rfc3339,
    post_signal,
)

SERVICE = f"{PARENT}/services/storm"
WARM_SERVICE = f"{PARENT}/services/storm-warm"
WINDOW_S = 60.0
TASKS_PER_MESSAGE = 10
PATH = "/storm"
QUEUE_SHARE = 0.8
"""The redrive queue's rate as a share of the RunTask limit. The queue throttles job *dispatches*;
each RunTask follows its dispatch after run_job's latency (GetTask, fix check), so a latency spike
(a cold start, a CPU stall) lets later calls catch up with earlier ones. 20% headroom absorbs
spreads of up to ~12 s at 1/s. The time scale magnifies real stalls (100 ms real = 4 s emulated
at 40x), so the headroom matters more here than in production, where it still covers cold
starts."""


@dataclass(frozen=True)
class StormResult:
    tasks: int
    limit_per_min: int
    queue_rate_per_s: float
    time_scale: float
    signal_s: float
    """Real seconds to deliver every signal."""
    redrive_s: float
    """Real seconds from the first signal until the last task was force-run."""
    runs_per_task: Counter[str]
    """RunTask calls answered OK, per task."""
    run_calls: int
    """Every RunTask call, whatever the answer (the quota counts calls)."""
    max_in_window: int
    """The most RunTask calls in any 60-second window of emulated time."""
    outcomes: Counter[str]
    """handle_signal's outcome lines."""
    job_outcomes: Counter[str]
    """run_job's outcome lines."""


def max_in_window(times_s: list[float], window_s: float = WINDOW_S) -> int:
    """The largest number of times in any half-open window [t, t + window_s).

    Checking windows that start at each event is enough: any window can slide right until its
    start meets an event without losing one.
    """
    ordered = sorted(times_s)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect_left(ordered, start + window_s) - i)
    return best


def run_storm(
    tasks: int,
    *,
    limit_per_min: int = 60,
    queue_share: float = QUEUE_SHARE,
    time_scale: float = 40.0,
    logs: Path,
) -> StormResult:
    stack = Stack(time_scale=time_scale, quotas=Quotas())  # production quotas, emulated time
    servers: list[FunctionServer] = []
    try:
        # The application's queue: a failed task would wait ~11 emulated days for its own retry.
        app_queue = stack.queue("storm", min_backoff_s=1e6)
        warm_queue = stack.queue("storm-warm", min_backoff_s=1e6)
        redrive = f"{PARENT}/queues/storm-redrive"
        stack.client.create_queue(
            request={
                "parent": PARENT,
                "queue": {
                    "name": redrive,
                    "rate_limits": {
                        "max_dispatches_per_second": queue_share * limit_per_min / 60.0
                    },
                    "retry_config": {"max_attempts": -1, "min_backoff": "1s", "max_backoff": "10s"},
                },
            }
        )
        job_port = free_port()
        env = {
            **stack.emu.env(),
            "REDRIVE_ALLOWED_QUEUES": f"{app_queue},{warm_queue}",
            "REDRIVE_SERVICE_MAP": json.dumps({SERVICE: [app_queue], WARM_SERVICE: [warm_queue]}),
            "REDRIVE_QUEUE": redrive,
            "REDRIVE_JOB_URL": f"http://127.0.0.1:{job_port}/",
            "REDRIVE_RETRY_DEADLINE_S": "5",
            "THREADS": "16",
        }
        servers.append(FunctionServer("handle_signal", "cloudevent", env, logs / "signal.log"))
        servers.append(FunctionServer("run_job", "http", env, logs / "job.log", port=job_port))
        signal_fn, job_fn = servers

        # Warm both instances up first (imports, channels): a cold start is one or two real
        # seconds, which the time scale would turn into a minute of emulated backlog.
        warm = stack.failed_task(warm_queue, "warm", "/storm-warm")
        stack.emu.cloudrun.deploy(WARM_SERVICE)
        post_signal(signal_fn, dead_letter(warm, dispatch_count=1), "storm-warm", now_rfc3339())
        wait_for(lambda: job_fn.outcomes(task=warm), "the warm-up job")

        stack.target.statuses[PATH] = 500
        names = [stack.task(app_queue, f"storm-{i}", PATH) for i in range(tasks)]
        wait_for(
            lambda: sum(1 for p, _, _ in stack.target.requests if p == PATH) >= tasks,
            "every task's first failed attempt",
            timeout_s=300,  # a hang guard: a loaded machine is slow to dispatch 1,000
        )
        stack.emu.cloudrun.deploy(SERVICE)  # the fix is live...
        stack.target.statuses[PATH] = 200  # ...and the application succeeds

        messages = [
            json.dumps(
                {
                    "tasks": [
                        {"task": n, "dispatch_count": 1} for n in names[i : i + TASKS_PER_MESSAGE]
                    ]
                }
            ).encode()
            for i in range(0, tasks, TASKS_PER_MESSAGE)
        ]
        started = time.monotonic()
        published = now_rfc3339()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda im: (
                        post_signal(signal_fn, im[1], f"storm-{im[0]}", published).status_code
                    ),
                    enumerate(messages),
                )
            )
        signal_s = time.monotonic() - started
        if set(statuses) != {200}:
            raise AssertionError(f"handle_signal answered {Counter(statuses)}")

        # Throttled: tasks / rate emulated seconds; generous real-time guard on top.
        expected_s = tasks / (queue_share * limit_per_min / 60.0) / time_scale
        wait_for(
            lambda: sum(1 for r in stack.emu.control.run_log() if r.code.name == "OK") >= tasks,
            "every task to be force-run",
            timeout_s=expected_s * 3 + 60,
        )
        redrive_s = time.monotonic() - started
        # Let anything still in the pipes land before counting (a duplicate would show here).
        wait_for(lambda: all(stack.gone(n) for n in names[-20:]), "the last tasks to complete")
        wait_for(
            lambda: len(job_fn.outcomes()) >= tasks + 1, "every run_job outcome line", timeout_s=60
        )
        time.sleep(stack.emu.clock.real_seconds(2.0) + 0.2)
        ours = set(names)
        log = [r for r in stack.emu.control.run_log() if r.task in ours]
        return StormResult(
            tasks=tasks,
            limit_per_min=limit_per_min,
            queue_rate_per_s=queue_share * limit_per_min / 60.0,
            time_scale=time_scale,
            signal_s=signal_s,
            redrive_s=redrive_s,
            runs_per_task=Counter(r.task for r in log if r.code.name == "OK"),
            run_calls=len(log),
            max_in_window=max_in_window([r.emulated_time.timestamp() for r in log]),
            outcomes=Counter(
                line["outcome"] for line in signal_fn.outcomes() if line["task"] in ours
            ),
            job_outcomes=Counter(
                line["outcome"] for line in job_fn.outcomes() if line["task"] in ours
            ),
        )
    finally:
        for server in servers:
            server.stop()
        stack.stop()
