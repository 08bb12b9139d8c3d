"""Small HTTP helpers shared by provider clients and the publisher."""
from __future__ import annotations

import email.utils
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

from .secrets import redact

EXCERPT_CHARS = 300


def body_excerpt(text: Any, limit: int = EXCERPT_CHARS) -> str:
    """A provider's answer as errors, statuses and dead letters may quote it: whitespace
    collapsed, every secret value revealed so far blanked (:func:`hostspec.secrets.redact`),
    then cut to ``limit`` characters. Never more: a response body is not ours to re-publish."""
    flat = redact(" ".join(str(text).split()))
    return flat if len(flat) <= limit else f"{flat[:limit]}… ({len(flat)} characters)"


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = (now or (lambda: datetime.now(timezone.utc)))()
    return max(0.0, (when - current).total_seconds())


class CachedToken:
    """A bearer token shared by a client's threads: fetched on first use, and again once its
    lifetime is over or after :meth:`invalidate`.

    :param fetch: asks the token endpoint; returns ``(token, seconds it may be used)`` (the
        caller decides how long before the server's expiry to renew) or raises.
    """

    def __init__(self, fetch: Callable[[], tuple[str, float]], *, clock: Callable[[], float] = time.monotonic):
        self._fetch, self._clock = fetch, clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "CachedToken(token=***)"

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                token, lifetime = self._fetch()
                self._token, self._expires_at = token, self._clock() + lifetime
            return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token (only if it is still ``token``, when given: another thread may have
        renewed it already)."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None


class GatedAdapter(HTTPAdapter):
    """Every request through it waits for the call budget (``gate.acquire()``, then
    ``gate.done()`` when it ended); a 429 answer is reported to it
    (``gate.throttled(retry_after_s)``) before the caller's own retry policy runs."""

    def __init__(self, gate: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self._gate = gate

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self._gate.acquire()
        try:
            response = super().send(request, **kwargs)
        finally:
            self._gate.done()
        if response.status_code == 429:
            self._gate.throttled(parse_retry_after(response.headers.get("Retry-After")))
        return response


def gate_session(session: requests.Session, gate: Any) -> requests.Session:
    """Route every call of ``session`` through ``gate`` (a run's ``context.calls``; None: no budget)."""
    if gate is not None:
        adapter = GatedAdapter(gate)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session
