"""Emulated time: real time sped up by a constant factor, so multi-minute backoff schedules run in
seconds while every reported timestamp stays consistent with every other one."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """`now()` starts at the real wall-clock time and advances `time_scale` times faster."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self._origin_wall = datetime.now(UTC)
        self._origin_mono = time.monotonic()
        self._origin_epoch = self._origin_wall.timestamp()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._origin_mono) * self.time_scale
        return self._origin_wall + timedelta(seconds=elapsed)

    @property
    def origin_epoch_s(self) -> float:
        """The wall-clock instant (epoch seconds) at which emulated and real time coincide."""
        return self._origin_epoch

    def now_s(self) -> float:
        """Emulated now as epoch seconds (the hot paths keep floats, not datetimes)."""
        return self._origin_epoch + (time.monotonic() - self._origin_mono) * self.time_scale

    def real_seconds(self, emulated_s: float) -> float:
        """How long `emulated_s` of emulated time lasts in real time."""
        return max(0.0, emulated_s / self.time_scale)

    def sleep(self, emulated_s: float) -> None:
        time.sleep(self.real_seconds(emulated_s))

    def until(self, when: datetime) -> float:
        """Real seconds until emulated time reaches `when` (0 if it already has)."""
        return self.real_seconds((when - self.now()).total_seconds())

    def until_s(self, when_s: float) -> float:
        """Real seconds until emulated time reaches epoch seconds `when_s` (0 if it already has)."""
        return self.real_seconds(when_s - self.now_s())
