"""A token bucket per company and kind of call (reads, writes), shared by every thread.

With ``rate`` r per second and ``burst`` b, no one-second window holds more than r + b calls;
the defaults keep that at or under 360Learning's limits (50 reads/s, 10 writes/s).
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from hostspec.ops import metrics


class TokenBucket:
    def __init__(self, rate: float, burst: float, *, name: str = "calls", clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens, self._at = burst, clock()
        self._lock = threading.Lock()
        self.name = name
        self.waited_s = 0.0
        self.waits = 0

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            if wait:
                self.waits += 1
                self.waited_s += wait
        if wait:
            metrics.PUBLISHER_THROTTLE.labels(self.name).inc(wait)
            self._sleep(wait)
        return wait
