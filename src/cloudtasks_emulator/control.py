"""Fault injection and introspection shared by every front end of the emulator.

Both Cloud Tasks front ends (through `CloudTasksService.call`) and the Cloud Run fake call
`before_call(method)` first: it counts the call, applies injected latency, then raises the injected
fault, in that order, so a test can make "the next 2 RunTask calls answer UNAVAILABLE after 1 s".
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime

import grpc

from cloudtasks_emulator.errors import RpcError


@dataclass(frozen=True)
class RunRecord:
    """One RunTask call as the emulator answered it."""

    task: str
    api: str
    wall_time: float  # real epoch seconds (time.time()) when the call arrived
    emulated_time: datetime  # emulated clock at the same moment
    code: grpc.StatusCode  # OK when a dispatch was started
    message: str = ""
    dispatch_count: int | None = None  # the task's dispatch_count in the answer (OK only)


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    remaining: int  # -1: until cleared
    skip: int = 0  # calls let through before the first failure


@dataclass
class _Delay:
    seconds: float
    remaining: int


class Control:
    """Thread-safe fault table, call counters and RunTask log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, list[_Delay]] = {}
        self._counts: Counter[str] = Counter()
        self._runs: list[RunRecord] = []

    # -- injection -------------------------------------------------------------------------
    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        times: int = 1,
        message: str | None = None,
        after: int = 0,
    ) -> None:
        """Make the next `times` calls of `method` fail with `code` (times=-1: until `clear()`),
        after letting `after` calls through (a fault in the middle of a paged listing).

        `method` is an RPC name ("RunTask"), optionally version-qualified ("v2beta3.RunTask"),
        or a Cloud Run name ("run.GetService"). Faults queue up in the order they were added.
        """
        if times == 0 or times < -1:
            raise ValueError("times must be a positive count or -1 (persistent)")
        if after < 0:
            raise ValueError("after must be >= 0")
        if code == grpc.StatusCode.OK:
            raise ValueError("a fault needs a non-OK code")
        text = message or f"injected fault: {code.name} for {method}"
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(code, text, times, after))

    def delay(self, method: str, seconds: float, times: int = 1) -> None:
        """Add `seconds` of real latency to the next `times` calls of `method` (-1: forever)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if times == 0 or times < -1:
            raise ValueError("times must be a positive count or -1 (persistent)")
        with self._lock:
            self._delays.setdefault(method, []).append(_Delay(seconds, times))

    def clear(self) -> None:
        """Drop every injected fault and delay (counters and the run log are kept)."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()

    # -- the hook every front end calls first ----------------------------------------------
    def before_call(self, method: str, api: str | None = None) -> None:
        """Count the call, sleep any injected latency, raise an injected fault.

        With `api` the call is also counted (and faults looked up) under "<api>.<method>";
        the version-qualified entry wins over the plain one.
        """
        names = (f"{api}.{method}", method) if api else (method,)
        with self._lock:
            for name in names:
                self._counts[name] += 1
            pause = self._take_delay(names)
            fault = self._take_fault(names)
        if pause:
            time.sleep(pause)
        if fault is not None:
            raise RpcError(fault.code, fault.message)

    def _take_delay(self, names: tuple[str, ...]) -> float:
        for name in names:
            queue = self._delays.get(name)
            if queue:
                head = queue[0]
                if head.remaining > 0:
                    head.remaining -= 1
                    if head.remaining == 0:
                        queue.pop(0)
                return head.seconds
        return 0.0

    def _take_fault(self, names: tuple[str, ...]) -> _Fault | None:
        for name in names:
            queue = self._faults.get(name)
            if queue:
                head = queue[0]
                if head.skip > 0:
                    head.skip -= 1
                    return None
                if head.remaining > 0:
                    head.remaining -= 1
                    if head.remaining == 0:
                        queue.pop(0)
                return head
        return None

    # -- introspection ---------------------------------------------------------------------
    def call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def record_run(self, record: RunRecord) -> None:
        with self._lock:
            self._runs.append(record)

    def run_log(self) -> list[RunRecord]:
        with self._lock:
            return [replace(r) for r in self._runs]

    def reset_counters(self) -> None:
        """Zero the call counts and empty the run log (faults are kept)."""
        with self._lock:
            self._counts.clear()
            self._runs.clear()
