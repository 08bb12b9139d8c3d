"""Small HTTP helpers shared by provider clients and the publisher: quoting an answer, the call
budget's gate, errors from answers, OAuth2 tokens. Retries are :mod:`hostspec.kit.retry`."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from hostspec.ops import metrics
from hostspec.credentials import CredentialKey, credential_key
from hostspec.errors import ProviderConfigError, ProviderSystemError, ProviderTransientError
from hostspec.kit.retry import parse_retry_after
from hostspec.secrets import redact

EXCERPT_CHARS = 300
RETRYABLE_STATUS = frozenset({408, 429})   # and every 5xx


def body_excerpt(text: Any, limit: int = EXCERPT_CHARS) -> str:
    """A provider's answer as errors, statuses and dead letters may quote it: whitespace
    collapsed, every secret value revealed so far blanked (:func:`hostspec.secrets.redact`),
    then cut to ``limit`` characters. Never more: a response body is not ours to re-publish."""
    flat = redact(" ".join(str(text).split()))
    return flat if len(flat) <= limit else f"{flat[:limit]}… ({len(flat)} characters)"


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

    @property
    def expires_at(self) -> float:
        """When the current token must be renewed (the clock's time)."""
        return self._expires_at

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


# -- errors from answers ---------------------------------------------------------------------------
class RetryableAnswer(ProviderTransientError):
    """A 429, 408 or 5xx answer: ``status``, and ``retry_after`` (seconds the server asked us to
    wait, or None). :func:`~hostspec.kit.retry.retry_policy` waits ``retry_after`` when there is one."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def raise_for_answer(resp: requests.Response, what: str) -> None:
    """Turn an HTTP answer that is not a success into the host's errors; return for 2xx/3xx.

    429, 408, 5xx: :class:`RetryableAnswer` (``retry_after`` from the ``Retry-After`` header);
    401, 403: :class:`~hostspec.errors.ProviderConfigError`; any other 4xx:
    :class:`~hostspec.errors.ProviderSystemError`. The message is
    ``"{what}: HTTP {status}: {body excerpt}"`` (:func:`body_excerpt`: bounded, redacted).
    ``what`` names the call (``"GET /v2/things"``); never put a query string or a token in it.
    """
    status = resp.status_code
    if status < 400:
        return
    message = f"{what}: HTTP {status}: {body_excerpt(resp.text)}"
    if status in RETRYABLE_STATUS or status >= 500:
        raise RetryableAnswer(message, status=status,
                              retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    if status in (401, 403):
        raise ProviderConfigError(message)
    raise ProviderSystemError(message)


# -- OAuth2 client credentials ---------------------------------------------------------------------
_SHARED: dict[CredentialKey, tuple[str, float]] = {}     # credential -> (token, monotonic expiry)
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 10_000


def forget_tokens() -> None:
    """Forget every shared token (tests that fake one token endpoint many times)."""
    with _SHARED_LOCK:
        _SHARED.clear()


class ClientCredentials:
    """OAuth2 client-credentials token cache (RFC 6749 section 4.4) on top of :class:`CachedToken`.

    :param session: the client's session (so the token call shares its call budget and adapters).
    :param reveal_secret: returns the client secret when a token is fetched (``Secret.reveal``):
        the secret is never stored here.
    :param auth_style: ``"basic"`` sends ``client_id:secret`` as HTTP Basic auth; ``"body"`` sends
        ``client_id`` and ``client_secret`` as form fields; ``"json"``, with the grant, as a JSON body.
    :param renew_margin_s: a token is renewed this long before the ``expires_in`` it came with
        (``default_ttl_s`` when the answer states none).

    Errors: network failures are :class:`~hostspec.errors.ProviderTransientError`; a 400 or 401 is
    :class:`~hostspec.errors.ProviderConfigError` naming the client id (never the secret); other
    answers go through :func:`raise_for_answer`; a 2xx without an ``access_token`` is
    :class:`~hostspec.errors.ProviderSystemError`. A provider with its own error classes overrides
    :meth:`network_error`, :meth:`refused_error`, :meth:`check_answer` and :meth:`malformed_error`;
    one with metrics of its own overrides :meth:`count`; one renewing otherwise, :meth:`lifetime`.
    """

    def __init__(self, session: requests.Session, token_url: str, client_id: str, reveal_secret: Callable[[], str], *,
                 provider: str, timeout_s: float = 30.0, renew_margin_s: float = 60.0, scope: str | None = None,
                 auth_style: str = "basic", default_ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic,
                 shared: bool = False, grant_type: str = "client_credentials"):
        """:param shared: keep the token for the next client of the same token URL, client id,
            scope and secret in this process (a worker's next run of the account skips the token
            call: a fixed cost of every run of many small connections). A 401 answered to any of
            them forgets it for all."""
        if auth_style not in ("basic", "body", "json"):
            raise ValueError(f"auth_style must be 'basic', 'body' or 'json', not {auth_style!r}")
        self._session, self.token_url, self.client_id = session, token_url, client_id
        self._reveal, self.provider, self.timeout_s = reveal_secret, provider, timeout_s
        self.renew_margin_s, self.scope, self.auth_style = renew_margin_s, scope, auth_style
        self.default_ttl_s, self.grant_type = default_ttl_s, grant_type
        self._cached = CachedToken(self._fetch, clock=clock)
        self._shared, self._clock = shared, clock
        self.fetches = 0

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(provider={self.provider!r}, token_url={self.token_url!r}, "
                f"client_id={self.client_id!r}, secret=***, token=***)")

    def token(self) -> str:
        """The current token: fetched on first use, again once its lifetime is over."""
        if not self._shared:
            return self._cached.get()
        key = self._key()
        with _SHARED_LOCK:
            kept = _SHARED.get(key)
        if kept is not None and self._clock() < kept[1]:
            return kept[0]
        token = self._cached.get()
        with _SHARED_LOCK:
            _SHARED[key] = (token, self._cached.expires_at)
            while len(_SHARED) > _SHARED_MAX:          # bounded: the oldest accounts go first
                _SHARED.pop(next(iter(_SHARED)))
        return token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the token (after a 401 on an API call): the next :meth:`token` fetches one.
        Given the ``token`` that was refused, forget it only if it is still the current one
        (another thread may have renewed it already)."""
        if self._shared:
            key = self._key()
            with _SHARED_LOCK:
                kept = _SHARED.get(key)
                if kept is not None and (token is None or kept[0] == token):
                    del _SHARED[key]
        self._cached.invalidate(token)

    def _key(self) -> CredentialKey:
        """The credential a token belongs to, its secret included as a keyed digest
        (:mod:`hostspec.credentials`): a wrong or rotated secret is another key, never a hit."""
        return credential_key(self.token_url, self.client_id, self.scope or "", self.auth_style,
                              secret=self._reveal())

    # -- extension points: a provider with typed errors overrides these --------------------------------
    @property
    def what(self) -> str:
        """The call as messages name it: ``POST <token path>`` (no host, no query)."""
        return f"POST {urlsplit(self.token_url).path or '/'}"

    def network_error(self, exc: requests.RequestException) -> Exception:
        return ProviderTransientError(f"cannot reach the {self.provider} token endpoint: {type(exc).__name__}")

    def refused_error(self, resp: requests.Response) -> Exception:
        return ProviderConfigError(
            f"the {self.provider} token endpoint refused the client credentials of client_id {self.client_id!r} "
            f"(HTTP {resp.status_code}); check client_id and client_secret")

    def check_answer(self, resp: requests.Response) -> None:
        """Raise for an answer that is neither a success nor a refusal (400/401)."""
        raise_for_answer(resp, self.what)

    def malformed_error(self, reason: str) -> Exception:
        return ProviderSystemError(f"the {self.provider} token endpoint answered {reason}")

    def count(self, status: int | str) -> None:
        """Count one token call: its HTTP status, ``"timeout"`` or ``"error"``."""
        metrics.provider_call(self.provider, "POST", status)

    def lifetime(self, expires_in: float) -> float:
        """How long a token stated valid for ``expires_in`` seconds is used."""
        return max(0.0, expires_in - self.renew_margin_s)

    # -- the token call ------------------------------------------------------------------------------
    def _fetch(self) -> tuple[str, float]:
        data = {"grant_type": self.grant_type}
        auth: tuple[str, str] | None = None
        if self.auth_style == "basic":
            auth = (self.client_id, self._reveal())
        else:
            data.update(client_id=self.client_id, client_secret=self._reveal())
        if self.scope is not None:
            data["scope"] = self.scope
        try:
            # no redirect: it would carry the secret (Basic or in the form) to wherever it points
            form = {"json": data} if self.auth_style == "json" else {"data": data}
            resp = self._session.post(self.token_url, auth=auth, timeout=self.timeout_s, allow_redirects=False,
                                      **form)
        except requests.RequestException as exc:
            self.count("timeout" if isinstance(exc, requests.Timeout) else "error")
            raise self.network_error(exc) from None
        self.fetches += 1
        self.count(resp.status_code)
        if resp.status_code in (400, 401):
            raise self.refused_error(resp)
        if resp.status_code >= 300:
            self.check_answer(resp)
            raise self.malformed_error(f"HTTP {resp.status_code} instead of a token")  # a 3xx not followed
        try:
            body = resp.json()
            token = body["access_token"]
            ttl = float(body.get("expires_in", self.default_ttl_s))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self.malformed_error("without an access_token") from None
        if not isinstance(token, str) or not token:
            raise self.malformed_error("an empty access_token")
        return token, self.lifetime(ttl)


__all__ = ["CachedToken", "ClientCredentials", "GatedAdapter", "RETRYABLE_STATUS", "RetryableAnswer", "body_excerpt",
           "forget_tokens", "gate_session", "raise_for_answer"]
