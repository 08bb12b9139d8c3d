"""LinkedIn Learning HTTP client: a cached 2-legged OAuth token, retries with backoff (honouring
``Retry-After``), Rest.li ``start``/``count`` paging, every query written in the one Rest.li
protocol the client declares (``contract.RESTLI_PROTOCOL``, :mod:`.restli`). Failures become the
host's provider errors.

Token, retries and error answers are the host's helpers (:class:`hostspec.kit.http.ClientCredentials`,
:func:`~hostspec.kit.retry.retry_policy`, :func:`~hostspec.kit.http.raise_for_answer`)."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import requests

from hostspec import ProviderConfigError, ProviderSystemError, ProviderTransientError, provider_call
from hostspec.kit import ClientCredentials, gate_session, offset_pages, raise_for_answer, retry_policy

from . import contract, restli
from .settings import LinkedInSettings

log = logging.getLogger(__name__)
PROVIDER = "linkedin_learning"


class LinkedInClient:
    def __init__(self, settings: LinkedInSettings, *, sleep=time.sleep, calls: Any = None,
                 protocol: str = contract.RESTLI_PROTOCOL):
        self.settings, self.protocol = settings, protocol
        self._session = gate_session(requests.Session(), calls)
        self._token = ClientCredentials(self._session, settings.token_url, settings.client_id,
                                        settings.client_secret.reveal, provider=PROVIDER,
                                        timeout_s=settings.timeout_s, renew_margin_s=contract.TOKEN_RENEW_MARGIN_S,
                                        auth_style="body", default_ttl_s=contract.TOKEN_DEFAULT_TTL_S,
                                        shared=True)   # the next run of the account reuses the token
        self._retrying = retry_policy(provider=PROVIDER, max_attempts=settings.max_attempts,
                                      max_retry_after_s=settings.max_retry_after_s, sleep=sleep)

    def __repr__(self) -> str:
        return f"LinkedInClient(api_url={self.settings.api_url!r}, client_id={self.settings.client_id!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "LinkedInClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ----------------------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any]) -> Any:
        return self._retrying(self._get, path, params)

    def _get(self, path: str, params: dict[str, Any], *, renewed: bool = False) -> Any:
        token = self._token.token()
        try:
            resp = self._session.get(self.settings.api_url.rstrip("/") + path,
                                     params=restli.query(params, self.protocol), timeout=self.settings.timeout_s,
                                     headers={"Authorization": f"Bearer {token}", **restli.headers(self.protocol)})
        except requests.RequestException as exc:
            provider_call(PROVIDER, "GET", "error")
            raise ProviderTransientError(f"GET {path}: {type(exc).__name__}") from None
        provider_call(PROVIDER, "GET", resp.status_code)
        if resp.status_code == 401 and not renewed:
            self._token.invalidate(token)
            return self._get(path, params, renewed=True)
        if resp.status_code in (401, 403):
            raise ProviderConfigError(f"GET {path}: LinkedIn answered HTTP {resp.status_code}; check that the "
                                      "application has the Learning API products enabled")
        raise_for_answer(resp, f"GET {path}")     # 429/408/5xx: RetryableAnswer (retried); other 4xx: system error
        try:
            return resp.json()
        except ValueError:
            raise ProviderTransientError(f"GET {path}: the body is not JSON") from None

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
    def asset_params(self) -> dict[str, Any]:
        language, country = self.settings.locale.split("_")
        return {"q": contract.ASSETS_FINDER, "assetType": contract.ASSET_TYPE,
                contract.ASSETS_LOCALE: {"language": language, "country": country},
                "expandDepth": contract.ASSETS_EXPAND_DEPTH, "includeRetired": False}

    def assets(self) -> Iterator[dict[str, Any]]:
        params = self.asset_params()
        yield from offset_pages(
            lambda start, count: self.get_json(contract.ASSETS_PATH, {**params, contract.PAGE_START: start,
                                                                      contract.PAGE_COUNT: count}),
            page_size=self.settings.page_size, items="elements", total="paging.total")

    def report_pages(self, started_at_ms: int, days: int, start: int = 0) -> Iterator[tuple[list[Any], int | None]]:
        """The INDIVIDUAL × CONTENT report of the ``days`` from ``started_at_ms``, page by page."""
        params = {"q": contract.REPORTS_FINDER, "startedAt": started_at_ms,
                  "timeOffset": {"unit": contract.REPORT_TIME_UNIT, "duration": days},
                  "aggregationCriteria": dict(contract.REPORT_AGGREGATION),
                  "contentSource": contract.REPORT_CONTENT_SOURCE, "assetType": contract.REPORT_ASSET_TYPE}
        return self.pages(contract.REPORTS_PATH, params, start)
