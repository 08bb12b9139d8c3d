"""The token cache the provider and publisher clients share."""
from __future__ import annotations

from hostspec.httputil import CachedToken


def test_fetched_once_renewed_after_its_lifetime_and_after_invalidate():
    now, issued = [0.0], []

    def fetch():
        issued.append(f"t{len(issued)}")
        return issued[-1], 10.0

    cache = CachedToken(fetch, clock=lambda: now[0])
    assert cache.get() == cache.get() == "t0"
    now[0] = 10.0
    assert cache.get() == "t1"                       # lifetime over
    cache.invalidate("t0")                           # a stale token: another thread renewed already
    assert cache.get() == "t1"
    cache.invalidate("t1")
    assert cache.get() == "t2" and "t2" not in repr(cache)
