"""The admin API's request rate per tenant: a token bucket each, refilled at ``rate`` calls per
second up to ``burst``. A call past it is answered 429 with ``Retry-After`` (whole seconds until
the bucket holds a call again), so one tenant's script cannot take the API from the others.
Platform admins (the operator, no tenant) are not counted."""
from __future__ import annotations

import math
import threading
import time
from typing import Callable


class TenantRate:
    def __init__(self, rate: float, burst: int | None = None, *, clock: Callable[[], float] = time.monotonic):
        if rate < 0:
            raise ValueError("the request rate must be 0 (no limit) or more")
        self.rate = rate
        self.burst = max(1, burst if burst is not None else math.ceil(2 * rate))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}     # tenant -> (calls held, when counted)
        self._lock = threading.Lock()

    def take(self, tenant: str) -> float:
        """Count one call of ``tenant``: 0 when it may go on, else the seconds to wait."""
        if self.rate == 0:
            return 0.0
        now = self._clock()
        with self._lock:
            held, then = self._buckets.get(tenant, (float(self.burst), now))
            held = min(float(self.burst), held + (now - then) * self.rate)
            if held >= 1:
                self._buckets[tenant] = (held - 1, now)
                return 0.0
            self._buckets[tenant] = (held, now)
            return (1 - held) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """``Retry-After`` is whole seconds: rounded up, at least 1."""
        return max(1, math.ceil(wait_s))


__all__ = ["TenantRate"]
