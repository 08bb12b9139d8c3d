"""The token cache the provider and publisher clients share."""
from __future__ import annotations

from hostspec.kit.http import CachedToken


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


def test_a_response_body_is_quoted_as_a_bounded_redacted_excerpt():
    from connector_coursera.errors import error_for_status
    from hostspec.kit.http import body_excerpt
    from hostspec.secrets import Secret

    leaked = Secret("sasl-password-echoed-back").reveal()     # a value this process has revealed
    body = '{"message": "' + "x" * 20_000 + f' {leaked}"' + "}"
    assert leaked not in body_excerpt(body) and len(body_excerpt(body)) < 340
    assert body_excerpt(f"  a\n\n b  {leaked} ") == "a b ***"
    message = str(error_for_status(500, "GET", "/api/x", body))
    assert leaked not in message and len(message) < 500, message
    short = str(error_for_status(400, "GET", "/api/x", f'{{"message": "bad {leaked}"}}'))
    assert short.endswith("bad ***")
