"""OAuth2 client credentials against Coursera's Apigee gateway, with a cached token."""
from __future__ import annotations

import time
from typing import Callable

import requests

from hostspec import metrics
from hostspec.httputil import CachedToken

from . import contract
from .errors import InvalidCredentials, MalformedResponse, NetworkError, error_for_status


class TokenSource:
    """Hands out a bearer token, asking for a new one shortly before expiry or after ``invalidate``."""

    def __init__(self, session: requests.Session, token_url: str, client_id: str,
                 reveal_secret: Callable[[], str], *, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._session, self._url, self._client_id = session, token_url, client_id
        self._reveal, self._timeout = reveal_secret, timeout_s
        self._cached = CachedToken(self._fetch, clock=clock)
        self.fetches = 0

    def __repr__(self) -> str:
        return f"TokenSource(token_url={self._url!r}, client_id={self._client_id!r}, token=***)"

    def token(self) -> str:
        return self._cached.get()

    def invalidate(self) -> None:
        self._cached.invalidate()

    def _fetch(self) -> tuple[str, float]:
        try:
            resp = self._session.post(
                self._url, data={"grant_type": contract.TOKEN_GRANT},
                auth=(self._client_id, self._reveal()), timeout=self._timeout)
        except requests.RequestException as exc:
            raise NetworkError(f"cannot reach the Coursera token endpoint: {type(exc).__name__}") from None
        self.fetches += 1
        metrics.provider_call("coursera", "POST", resp.status_code)
        if resp.status_code in (400, 401):
            raise InvalidCredentials(
                f"Coursera refused the client credentials of client_id {self._client_id!r} "
                f"(HTTP {resp.status_code}); check client_id and client_secret")
        if resp.status_code >= 300:
            raise error_for_status(resp.status_code, "POST", contract.TOKEN_PATH, resp.text)
        try:
            body = resp.json()
            token = body["access_token"]
            ttl = float(body.get("expires_in", contract.TOKEN_DEFAULT_TTL_S))
        except (ValueError, KeyError, TypeError):
            raise MalformedResponse("the Coursera token endpoint answered without an access_token") from None
        if not isinstance(token, str) or not token:
            raise MalformedResponse("the Coursera token endpoint answered an empty access_token")
        return token, max(0.0, ttl - contract.TOKEN_RENEW_MARGIN_S)
