"""LinkedIn Learning HTTP client: a cached 2-legged OAuth token, retries with backoff (honouring
``Retry-After``), Rest.li ``start``/``count`` paging. Failures become the host's provider errors."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import requests
import tenacity

from hostspec import ProviderConfigError, ProviderSystemError, ProviderTransientError, metrics
from hostspec.httputil import CachedToken, body_excerpt, gate_session, parse_retry_after

from . import contract
from .settings import LinkedInSettings

log = logging.getLogger(__name__)
PROVIDER = "linkedin_learning"


class _Transient(ProviderTransientError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class LinkedInClient:
    def __init__(self, settings: LinkedInSettings, *, sleep=time.sleep, calls: Any = None):
        self.settings = settings
        self._session = gate_session(requests.Session(), calls)
        self._token = CachedToken(self._fetch_token)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Transient) and exc.retry_after is not None:
                return min(exc.retry_after, settings.max_retry_after_s)
            return tenacity.wait_random_exponential(multiplier=0.5, max=30)(state)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            metrics.provider_retry(PROVIDER, type(exc).__name__)
            log.warning("linkedin learning call failed (attempt %d): %s", state.attempt_number, exc)

        self._retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Transient), wait=wait,
                                           stop=tenacity.stop_after_attempt(settings.max_attempts), sleep=sleep,
                                           before_sleep=before_sleep, reraise=True)

    def __repr__(self) -> str:
        return f"LinkedInClient(api_url={self.settings.api_url!r}, client_id={self.settings.client_id!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "LinkedInClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- token ----------------------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, float]:
        s = self.settings
        try:
            resp = self._session.post(s.token_url, timeout=s.timeout_s, data={
                "grant_type": contract.TOKEN_GRANT, "client_id": s.client_id, "client_secret": s.client_secret.reveal()})
        except requests.RequestException as exc:
            raise _Transient(f"cannot reach the LinkedIn token endpoint: {type(exc).__name__}") from None
        metrics.provider_call(PROVIDER, "POST", resp.status_code)
        if resp.status_code in (400, 401):
            raise ProviderConfigError(f"LinkedIn refused the client credentials of client_id {s.client_id!r} "
                                      f"(HTTP {resp.status_code}); check client_id and client_secret")
        if resp.status_code >= 300:
            raise _Transient(f"LinkedIn token endpoint answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            token = str(body["access_token"])
            ttl = float(body.get("expires_in", contract.TOKEN_DEFAULT_TTL_S))
        except (ValueError, KeyError, TypeError):
            raise ProviderSystemError("the LinkedIn token endpoint answered without an access_token") from None
        return token, max(1.0, ttl - contract.TOKEN_RENEW_MARGIN_S)

    # -- calls ----------------------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any]) -> Any:
        return self._retrying(self._get, path, params)

    def _get(self, path: str, params: dict[str, Any], *, renewed: bool = False) -> Any:
        token = self._token.get()
        try:
            resp = self._session.get(self.settings.api_url.rstrip("/") + path, params=params,
                                     timeout=self.settings.timeout_s,
                                     headers={"Authorization": f"Bearer {token}", "X-Restli-Protocol-Version": "2.0.0"})
        except requests.RequestException as exc:
            metrics.provider_call(PROVIDER, "GET", "error")
            raise _Transient(f"GET {path}: {type(exc).__name__}") from None
        metrics.provider_call(PROVIDER, "GET", resp.status_code)
        if resp.status_code == 401 and not renewed:
            self._token.invalidate(token)
            return self._get(path, params, renewed=True)
        if resp.status_code in (401, 403):
            raise ProviderConfigError(f"GET {path}: LinkedIn answered HTTP {resp.status_code}; check that the "
                                      "application has the Learning API products enabled")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Transient(f"GET {path}: HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status_code >= 400:
            raise ProviderSystemError(f"GET {path}: HTTP {resp.status_code}: {body_excerpt(resp.text)}")
        try:
            return resp.json()
        except ValueError:
            raise _Transient(f"GET {path}: the body is not JSON") from None

    def pages(self, path: str, params: dict[str, Any], start: int = 0) -> Iterator[tuple[list[Any], int | None]]:
        """Each page's elements and the start of the next page (None after the last)."""
        count = self.settings.page_size
        while True:
            body = self.get_json(path, {**params, contract.PAGE_START: start, contract.PAGE_COUNT: count})
            elements = body.get("elements") if isinstance(body, dict) else None
            if not isinstance(elements, list):
                raise ProviderSystemError(f"GET {path}: a page without a list of elements")
            paging = body.get("paging") or {}
            total = paging.get("total")
            nxt = start + len(elements)
            more = bool(elements) and (nxt < total if isinstance(total, int) else len(elements) == count)
            yield elements, nxt if more else None
            if not more:
                return
            start = nxt

    # -- resources ------------------------------------------------------------------------------
    def assets(self) -> Iterator[dict[str, Any]]:
        language, country = self.settings.locale.split("_")
        params = {"q": contract.ASSETS_FINDER, "assetType": contract.ASSET_TYPE, "sourceLocale.language": language,
                  "sourceLocale.country": country, "expandDepth": 1, "includeRetired": "false"}
        for elements, _next in self.pages(contract.ASSETS_PATH, params):
            yield from elements

    def report_pages(self, started_at: datetime, days: int, start: int = 0) -> Iterator[tuple[list[Any], int | None]]:
        params = {"q": contract.REPORTS_FINDER, "startedAt": int(started_at.timestamp() * 1000),
                  "timeOffset.unit": "DAY", "timeOffset.duration": days,
                  "aggregationCriteria.primary": "INDIVIDUAL", "aggregationCriteria.secondary": "CONTENT",
                  "contentSource": "ALL_SOURCES", "assetType": contract.ASSET_TYPE}
        return self.pages(contract.REPORTS_PATH, params, start)


def report_window(since: datetime | None, until: datetime | None, first_sync_days: int,
                  now: datetime) -> tuple[datetime, int]:
    """(startedAt, days) of the report query covering ``since``..``until`` (or a first sync)."""
    end = until or now
    begin = since or datetime.fromtimestamp(end.timestamp() - first_sync_days * 86400, timezone.utc)
    days = max(1, min(contract.REPORT_WINDOW_MAX_DAYS, int((end - begin).total_seconds() // 86400) + 1))
    return begin, days
