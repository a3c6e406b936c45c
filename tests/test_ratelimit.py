"""The direct-mode token bucket, on a fake clock."""

from __future__ import annotations

import threading

from redrive.adapters.ratelimit import TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_rate_is_respected_over_many_acquisitions():
    t = FakeTime()
    bucket = TokenBucket(2.0, burst=1, clock=t.clock, sleep=t.sleep)
    for _ in range(21):
        assert bucket.acquire()
    # 1 burst token + 20 more at 2 per second = 10 s of (fake) waiting.
    assert abs(t.now - 10.0) < 1e-9


def test_timeout_refuses_without_taking_a_token():
    t = FakeTime()
    bucket = TokenBucket(0.5, clock=t.clock, sleep=t.sleep)
    assert bucket.acquire(timeout_s=0)
    assert not bucket.acquire(timeout_s=1.0)  # next token in 2 s
    t.now += 2.0
    assert bucket.acquire(timeout_s=0)


def test_threads_share_one_bucket():
    t = FakeTime()
    bucket = TokenBucket(10.0, burst=1, clock=t.clock, sleep=lambda s: None)
    granted: list[bool] = []
    threads = [
        threading.Thread(target=lambda: granted.append(bucket.acquire(timeout_s=0.35)))
        for _ in range(20)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # At time 0: 1 token now plus reservations up to 0.35 s ahead at 10/s = 1 + 3.
    assert granted.count(True) == 4
