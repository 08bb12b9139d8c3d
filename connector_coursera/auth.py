"""OAuth2 client credentials against Coursera's Apigee gateway, with a cached token.

Built on :class:`hostspec.kit.http.ClientCredentials` (HTTP Basic ``client_id:secret``, grant
``client_credentials``); only the errors are Coursera's own (:mod:`connector_coursera.errors`).
"""
from __future__ import annotations

import time
from typing import Callable

import requests

from hostspec.kit import ClientCredentials

from . import contract
from .errors import InvalidCredentials, MalformedResponse, NetworkError, error_for_status


class TokenSource(ClientCredentials):
    """Hands out a bearer token, asking for a new one shortly before expiry or after ``invalidate``."""

    def __init__(self, session: requests.Session, token_url: str, client_id: str,
                 reveal_secret: Callable[[], str], *, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic, shared: bool = True):
        super().__init__(session, token_url, client_id, reveal_secret, provider="coursera", timeout_s=timeout_s,
                         renew_margin_s=contract.TOKEN_RENEW_MARGIN_S, auth_style="basic",
                         default_ttl_s=contract.TOKEN_DEFAULT_TTL_S, clock=clock, shared=shared)

    def network_error(self, exc: requests.RequestException) -> Exception:
        return NetworkError(f"cannot reach the Coursera token endpoint: {type(exc).__name__}")

    def refused_error(self, resp: requests.Response) -> Exception:
        return InvalidCredentials(
            f"Coursera refused the client credentials of client_id {self.client_id!r} "
            f"(HTTP {resp.status_code}); check client_id and client_secret")

    def check_answer(self, resp: requests.Response) -> None:
        raise error_for_status(resp.status_code, "POST", contract.TOKEN_PATH, resp.text)

    def malformed_error(self, reason: str) -> Exception:
        return MalformedResponse(f"the Coursera token endpoint answered {reason}")
