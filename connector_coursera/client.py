"""The Coursera for Business API client: one session, token handling, retries, paging.

Works unchanged against production or the sandbox: only ``base_url`` (and the token URL derived
from it) differ.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

import requests
import tenacity

from hostspec import provider_call
from hostspec.kit import gate_session

from . import contract
from .auth import TokenSource
from .errors import AccessDenied, MalformedResponse, NetworkError, error_for_status
from .pagination import Cursor, iter_pages
from .report_window import Window
from .retry import build_retrying, parse_retry_after
from .settings import CourseraSettings

USER_AGENT = "learning-connector-host/0.1 (+connector_coursera)"


class CourseraClient:
    """Use as a context manager; every call has a timeout and the configured retry policy.

    :param sleep: injected into the retry policy (tests pass a recorder).
    :param on_retry: called before each retry wait (metrics).
    :param calls: the account's call budget (a run's ``context.calls``): every call, the token's
        included, waits for it.
    """

    def __init__(self, settings: CourseraSettings, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[tenacity.RetryCallState], None] | None = None, calls: Any = None):
        self.settings = settings
        self._base = settings.base_url.rstrip("/")
        self._session = gate_session(session or requests.Session(), calls)
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._tokens = TokenSource(self._session, settings.resolved_token_url, settings.client_id,
                                   settings.client_secret.reveal, timeout_s=settings.timeout_s)
        self._retrying = build_retrying(max_attempts=settings.max_attempts,
                                        max_retry_after_s=settings.max_retry_after_s,
                                        sleep=sleep, on_retry=on_retry)
        self.calls = 0

    def __repr__(self) -> str:
        return f"CourseraClient(base_url={self._base!r}, org_id={self.settings.org_id!r})"

    def __enter__(self) -> "CourseraClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- one call ------------------------------------------------------------------------------
    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` with retries; re-authenticates once when a token is rejected."""
        return self._retrying(self._get_once, path, dict(params or {}))

    def _get_once(self, path: str, params: dict[str, Any]) -> Any:
        resp = self._send(path, params)
        if resp.status_code == 401:  # expired or revoked token: renew once, try once more
            self._tokens.invalidate()
            resp = self._send(path, params)
            if resp.status_code == 401:
                raise AccessDenied(f"GET {path}: Coursera rejected a freshly issued token (401 twice); "
                                   "check that the app is enabled for the Business API")
        if resp.status_code >= 300:
            raise error_for_status(resp.status_code, "GET", path, resp.text,
                                   parse_retry_after(resp.headers.get("Retry-After")))
        try:
            return resp.json()
        except ValueError:
            raise MalformedResponse(f"GET {path} -> {resp.status_code}: body is not valid JSON "
                                    f"({len(resp.content)} bytes)") from None

    def _send(self, path: str, params: dict[str, Any]) -> requests.Response:
        token = self._tokens.token()
        self.calls += 1
        try:
            resp = self._session.get(self._base + path, params=params, timeout=self.settings.timeout_s,
                                     headers={"Authorization": f"Bearer {token}"})
            provider_call("coursera", "GET", resp.status_code)
            return resp
        except requests.Timeout:
            provider_call("coursera", "GET", "timeout")
            raise NetworkError(f"GET {path}: no answer within {self.settings.timeout_s}s") from None
        except requests.RequestException as exc:
            provider_call("coursera", "GET", "error")
            raise NetworkError(f"GET {path}: {type(exc).__name__}") from None

    # -- resources -----------------------------------------------------------------------------
    def _path(self, template: str, **kw: str) -> str:
        return template.format(org_id=self.settings.org_id, **kw)

    def organization(self) -> dict[str, Any]:
        body = self.get_json(self._path(contract.ORG_PATH))
        elements = body.get("elements") if isinstance(body, dict) else None
        if not elements:
            raise MalformedResponse("the organisation endpoint answered no element")
        return elements[0]

    def iter_pages(self, path: str, params: dict[str, Any], what: str, start: Cursor = 0,
                   on_total: Callable[[int], None] | None = None) -> Iterator[tuple[list[Any], Cursor | None]]:
        """Each page's elements with the cursor of the page after it (None on the last page).

        :param on_total: told each page's ``paging.total`` (the API's count of the whole listing)."""
        limit = self.settings.page_size

        def page(cursor: Cursor) -> Any:
            body = self.get_json(path, {**params, contract.PAGE_START: cursor, contract.PAGE_LIMIT: limit})
            total = body.get("paging", {}).get(contract.PAGING_TOTAL) if isinstance(body, dict) and \
                isinstance(body.get("paging"), dict) else None
            if on_total is not None and isinstance(total, int) and not isinstance(total, bool):
                on_total(total)
            return body

        return iter_pages(page, what, start=start)

    def iter_contents(self, *, modified_since: datetime | None = None,
                      on_total: Callable[[int], None] | None = None) -> Iterator[Any]:
        """Every content item available to the org (courses, specializations, clips)."""
        params: dict[str, Any] = {}
        if modified_since is not None:
            params[contract.CONTENTS_MODIFIED_SINCE] = int(modified_since.timestamp()
                                                           / contract.CONTENT_TIMESTAMP_UNIT_S)
        for elements, _next in self.iter_pages(self._path(contract.CONTENTS_PATH), params, "contents",
                                               on_total=on_total):
            yield from elements

    def report_pages(self, window: Window | None = None, *, start: Cursor = 0,
                     on_total: Callable[[int], None] | None = None) -> Iterator[tuple[list[Any], Cursor | None]]:
        """Enrollment report pages (one row per learner and content item) from ``start``, each
        holding the rows of ``window`` (half-open: a row on its end is the next window's).

        An activity window leaves out rows without any activity; an enrollment window finds them.
        """
        params: dict[str, Any] = {
            contract.REPORTS_INCLUDE_S12N: str(self.settings.include_specializations).lower(),
            contract.REPORTS_INCLUDE_DELETED: str(self.settings.include_deleted_members).lower(),
            **(window.params() if window is not None else {}),
        }
        pages = self.iter_pages(self._path(contract.ENROLLMENT_REPORTS_PATH), params, "enrollmentReports", start,
                                on_total=on_total)
        if window is None or not window.bounded:
            return pages
        return (([row for row in rows if window.holds(row)], nxt) for rows, nxt in pages)

    def iter_enrollment_reports(self, window: Window | None = None) -> Iterator[Any]:
        for elements, _next in self.report_pages(window):
            yield from elements
