"""In-process token bucket for direct mode.

One bucket per function instance, shared by every request thread. It bounds this instance only:
the project's RunTask quota (about 60 a minute) is shared, which is why queued mode (a Cloud Tasks
queue as the global throttle) is the production setup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` stored. Thread-safe."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly going negative = a reservation); return how long to wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s

    def _give_back(self) -> None:
        with self._lock:
            self._tokens = min(self.burst, self._tokens + 1.0)

    def acquire(self, timeout_s: float | None = None) -> bool:
        """Wait for a token. False (and nothing taken) if the wait would exceed `timeout_s`."""
        wait_s = self._reserve()
        if timeout_s is not None and wait_s > timeout_s:
            self._give_back()
            return False
        if wait_s > 0:
            self._sleep(wait_s)
        return True
