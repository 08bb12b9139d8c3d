"""The 360Learning API v2 client: OAuth2 client credentials, rate limits, retries, pagination
and the bulk-operation life cycle. The same code talks to production or the sandbox; only
``base_url`` differs.

One client per credential (base URL, client id and secret; :mod:`hostspec.credentials`): its
token, token buckets and bulk-operation slots are shared by every thread and every connection
holding that credential, and by no connection that merely names the same client id.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urljoin

import requests
import tenacity

from hostspec.ops import metrics
from hostspec.kit.http import ClientCredentials, body_excerpt
from hostspec.kit.retry import Retry, parse_retry_after, retry_policy
from hostspec.kit.paging import linked_pages
from hostspec.secrets import Secret

from . import contract
from .errors import PermanentError, TargetConfigError, TransientError, error_code
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .ownership import Fence

log = logging.getLogger(__name__)
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Learning360Client:
    def __init__(self, base_url: str, client_id: str, client_secret: Secret, *, timeout_s: float = 30,
                 max_attempts: int = 8, backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0,
                 max_retry_after_s: float = 120.0, reads_per_s: float = contract.READS_PER_S - 5,
                 writes_per_s: float = contract.WRITES_PER_S - 2, poll_interval_s: float = 0.2,
                 poll_max_interval_s: float = 5.0, operation_timeout_s: float = 3600,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._timeout, self._sleep = timeout_s, sleep
        self._session = requests.Session()
        self._token = TokenSource(self)
        # a one-second window then holds at most rate + burst calls: 45 + 5 reads, 8 + 2 writes
        self.reads = TokenBucket(reads_per_s, max(1, contract.READS_PER_S - reads_per_s), name="reads", sleep=sleep)
        self.writes = TokenBucket(writes_per_s, max(1, contract.WRITES_PER_S - writes_per_s), name="writes",
                                  sleep=sleep)
        self.bulk_slots = threading.BoundedSemaphore(contract.BULK_CONCURRENCY)
        self.poll_interval_s, self.poll_max_interval_s = poll_interval_s, poll_max_interval_s
        self.operation_timeout_s = operation_timeout_s
        self.calls: dict[str, int] = {}
        self.retries = 0
        # ``Retry-After`` when given (capped); else exponential backoff with jitter from ~1 s (the
        # documented advice); a disabled bulk API is the company's setting: no use insisting, the
        # caller's lane backs off
        self._retrying = retry_policy(
            provider="360learning", max_attempts=max_attempts, max_retry_after_s=max_retry_after_s,
            initial_s=backoff_initial_s, max_backoff_s=backoff_max_s, sleep=sleep, report=self._before_retry,
            table=(Retry(lambda e: isinstance(e, TransientError) and e.code == contract.BULK_DISABLED, retry=False),
                   Retry(TransientError, min_wait_s=backoff_initial_s)))

        self._fence: Fence | None = None

    def __repr__(self) -> str:
        return f"Learning360Client(base_url={self.base_url!r}, client_id={self.client_id!r}, secret=***)"

    def fenced(self, fence: Fence | None) -> "Learning360Client":
        """This client (same session, token, rate limits and bulk slots) for one delivery whose
        every write first passes ``fence`` (:mod:`.ownership`): a delivery whose partitions were
        given up meanwhile writes nothing more."""
        if fence is None:
            return self
        view = copy.copy(self)
        view._fence = fence
        return view

    def close(self) -> None:
        self._session.close()

    @property
    def token_fetches(self) -> int:
        """Tokens asked for so far."""
        return self._token.fetches

    # -- one call -----------------------------------------------------------------------------------
    def request(self, method: str, path_or_url: str, *, params: dict[str, Any] | None = None,
                json: Any = None) -> requests.Response:
        """One API call with retries; returns a 2xx response or raises a :mod:`.errors` error."""
        return self._retrying(self._call, method, path_or_url, params, json)

    def _call(self, method: str, path_or_url: str, params: Any, body: Any, *, reauthorized: bool = False):
        url = path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url
        token = self._token.token()
        (self.writes if method in _WRITES else self.reads).acquire()
        where = f"{method} {_path(url)}"
        writing = self._fence.writing(where) if self._fence is not None and method in _WRITES else nullcontext()
        try:
            with writing:
                resp = self._session.request(method, url, params=params, json=body, timeout=self._timeout, headers={
                    "Authorization": f"Bearer {token}", contract.VERSION_HEADER: contract.VERSION})
        except requests.RequestException as exc:
            raise TransientError(f"{where}: {type(exc).__name__}") from None
        self._count(method, resp.status_code)
        status = resp.status_code
        if status < 300:
            return resp
        code, message = error_code(_json(resp))
        code = body_excerpt(code, 80) if code else code          # 360Learning's words are quoted, bounded
        message = body_excerpt(message) if message else message
        detail = f"{where} answered HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        if status == 401 and not reauthorized:
            self._token.invalidate(token)  # expired or revoked: one fresh token, then the same call again
            return self._call(method, path_or_url, params, body, reauthorized=True)
        if status == 401:
            raise TargetConfigError(f"{detail} even with a fresh token", status=status, code=code)
        if status == 429 or status >= 500:
            raise TransientError(detail, status=status, code=code,
                                 retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if status == 403 or code in (contract.RESERVED_NAME, contract.DUPLICATE_PLATFORM, "groupNotFound",
                                     "userNotFound", contract.INTEGRATION_NOT_FOUND):
            raise TargetConfigError(detail, status=status, code=code)
        raise PermanentError(detail + (f" ({body_excerpt(resp.text)})" if code is None else ""), status=status, code=code)

    def _count(self, method: str, status: int) -> None:
        key = f"{method} {status}"
        self.calls[key] = self.calls.get(key, 0) + 1
        metrics.PUBLISHER_CALLS.labels(method, str(status)).inc()

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        metrics.PUBLISHER_RETRIES.labels(getattr(exc, "code", None) or str(getattr(exc, "status", None) or "network")).inc()
        log.warning("360Learning call failed (attempt %d): %s; retrying in %.2fs", state.attempt_number, exc,
                    state.next_action.sleep if state.next_action else 0)

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        resp = self.request("GET", path, params=params)
        body = _json(resp)
        if body is None:
            raise TransientError(f"GET {path} answered a body that is not JSON")
        return body

    def iter_list(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following ``Link: <…>; rel="next"`` to the last page.

        A relative next link is resolved against the page that carried it (:func:`_next_url`).
        A next link is followed only on the API's own scheme and host: the bearer token never
        goes anywhere else."""
        return linked_pages(lambda url: self._retrying(self._page, url, params if url == path else None), path,
                            home=self.base_url, refuse=lambda reason: PermanentError(f"GET {path}: {reason}"))

    def _page(self, url: str, params: Any) -> tuple[list[dict[str, Any]], str | None]:
        resp = self._call("GET", url, params, None)
        body = _json(resp)
        if not isinstance(body, list):
            raise TransientError(f"GET {_path(url)} answered a page that is not a JSON array")
        link = resp.links.get("next", {}).get("url")
        return body, _next_url(resp.url, link) if link else None

    # -- domain calls ---------------------------------------------------------------------------------
    def find_integration(self, group_id: str, label: str) -> dict[str, Any] | None:
        for item in self.iter_list(contract.INTEGRATIONS, {"externalPlatform[eq]": label}):
            if item.get("groupId") == group_id and item.get("externalPlatform") == label:
                return item
        return None

    def create_integration(self, body: dict[str, Any]) -> dict[str, Any]:
        return _json(self.request("POST", contract.INTEGRATIONS, json=body))

    def user_by_mail(self, mail: str) -> dict[str, Any] | None:
        for user in self.iter_list(contract.USERS, {"mail[eq]": mail}):
            if user.get("status") != "deleted":
                return user
        return None

    def users_by_mail(self, mails: list[str], chunk: int = 100) -> dict[str, dict[str, Any]]:
        """Active or invited users for many e-mails, ``mail[in]`` lookups of ``chunk`` at a time;
        keyed by the e-mail as given (matched case-insensitively)."""
        wanted = {m.casefold(): m for m in mails}
        found: dict[str, dict[str, Any]] = {}
        names = sorted(wanted)
        for i in range(0, len(names), chunk):
            params = {f"mail[in][{j}]": wanted[m] for j, m in enumerate(names[i:i + chunk])}
            for user in self.iter_list(contract.USERS, params):
                mail = str(user.get("mail", "")).casefold()
                if mail in wanted and user.get("status") != "deleted":
                    found[wanted[mail]] = user
        return found

    def external_course(self, integration_id: str, external_id: str) -> dict[str, Any] | None:
        """The integration's course ``external_id``, or None when the integration holds no such
        course (400 ``courseNotBelongToIntegration``).

        :raise TargetConfigError: ``integrationNotFound`` (404): the integration itself is gone,
            which the caller must not read as "course absent"."""
        try:
            return self.get_json(contract.EXTERNAL_COURSE.format(integration_id=integration_id,
                                                                 external_id=requests.utils.quote(external_id, safe="")))
        except PermanentError as exc:
            if exc.status == 400 and exc.code == contract.COURSE_NOT_IN_INTEGRATION:
                return None
            raise

    def course_stats(self, course_id: str, user_ids: list[str]) -> list[dict[str, Any]]:
        """The attempts of some users in one course (CourseStatDTO: ``_id``, ``userId``,
        ``firstActivityAt``, ``lastActivityAt``, ``completedAt``, ``progress``, ``pathSessionId``…)."""
        found = []
        step = contract.COURSE_STATS_USERS_PER_CALL
        for i in range(0, len(user_ids), step):
            params: dict[str, Any] = {"courseId[eq]": course_id}
            params.update({f"userId[in][{j}]": u for j, u in enumerate(user_ids[i:i + step])})
            found.extend(self.iter_list(contract.COURSE_STATS, params))
        return found

    def tags(self) -> list[dict[str, Any]]:
        return list(self.iter_list(contract.TAGS))

    def create_tag(self, name: str) -> dict[str, Any]:
        return _json(self.request("POST", contract.TAGS, json={"name": name, "isMain": False}))

    def course_tags(self, course_id: str) -> list[str]:
        return [t["tagId"] for t in self.iter_list(contract.COURSE_TAGS.format(course_id=course_id))]

    def set_course_tags(self, course_id: str, tag_ids: list[str]) -> None:
        self.request("PUT", contract.COURSE_TAGS.format(course_id=course_id), json={"tagIds": tag_ids})

    # -- bulk operations --------------------------------------------------------------------------------
    def run_bulk(self, method: str, path: str, items: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
        """Submit one bulk call, wait for its operation to end, return (operation id, per-item results).

        Holds one of the company's three bulk slots from submission to the end of the operation.
        :raise TransientError: the operation ended in ``error`` or did not end in time.
        """
        with self.bulk_slots:
            resp = self.request(method, path, json={"input": items})
            location = resp.headers.get("Location") or ""
            match = re.search(r"/bulk/operations/([A-Za-z0-9]+)/?$", location)
            if not match:
                raise TransientError(f"{method} {path} was accepted without a usable Location header")
            op_id = match.group(1)
            op = self._wait(op_id)
        metrics.PUBLISHER_BULK.labels(op.get("type") or "unknown", op["status"]).inc()
        if op["status"] == "error":
            raise TransientError(f"bulk operation {op_id} ended in error: {op.get('errorMessage')}")
        results = self.get_json(contract.OPERATION_RESULTS.format(operation_id=op_id))
        if not isinstance(results, list):
            raise TransientError(f"results of bulk operation {op_id} are not a JSON array")
        return op_id, results

    def unfinished_operations(self) -> list[dict[str, Any]]:
        """The company's bulk operations not ended yet (pending, queued or running)."""
        return [op for status in contract.OP_UNFINISHED
                for op in self.iter_list(contract.OPERATIONS, {"status[eq]": status})]

    def _wait(self, op_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.operation_timeout_s
        interval = self.poll_interval_s
        while True:
            op = self.get_json(contract.OPERATION.format(operation_id=op_id))
            if op.get("status") in contract.OP_TERMINAL:
                return op
            if time.monotonic() > deadline:
                raise TransientError(f"bulk operation {op_id} still {op.get('status')} after "
                                     f"{self.operation_timeout_s:.0f}s")
            self._sleep(interval)
            interval = min(self.poll_max_interval_s, interval * 1.5)


class TokenSource(ClientCredentials):
    """The client's OAuth2 token (:class:`hostspec.kit.http.ClientCredentials`): grant and
    credentials in a JSON body, no redirect followed (the secret goes nowhere else), renewed a
    tenth of its lifetime early (at most ``TOKEN_RENEW_MARGIN_S``); 360Learning's errors."""

    def __init__(self, client: Learning360Client):
        super().__init__(client._session, client.base_url + contract.TOKEN_PATH, client.client_id,
                         client._secret.reveal, provider="360learning", timeout_s=client._timeout,
                         auth_style="json", grant_type=contract.TOKEN_GRANT,
                         default_ttl_s=contract.TOKEN_DEFAULT_TTL_S)
        self._client = client

    def __repr__(self) -> str:
        return f"TokenSource(client_id={self.client_id!r}, secret=***, token=***)"

    def network_error(self, exc: requests.RequestException) -> Exception:
        return TransientError(f"cannot reach the 360Learning token endpoint: {type(exc).__name__}")

    def refused_error(self, resp: requests.Response) -> Exception:
        code, _ = error_code(_json(resp))
        code = body_excerpt(code, 80) if code else code
        return TargetConfigError(f"360Learning refused the credentials of client_id {self.client_id!r} "
                                 f"(HTTP {resp.status_code} {code}); check client_id and client_secret",
                                 status=resp.status_code, code=code)

    def check_answer(self, resp: requests.Response) -> None:
        raise TransientError(f"token endpoint answered HTTP {resp.status_code}", status=resp.status_code)

    def malformed_error(self, reason: str) -> Exception:
        return TransientError("the token endpoint answered without a usable access_token")

    def count(self, status: int | str) -> None:
        if isinstance(status, int):        # a token call that got no answer is not counted
            self._client._count("POST", status)

    def lifetime(self, expires_in: float) -> float:
        return max(1.0, expires_in - min(contract.TOKEN_RENEW_MARGIN_S, expires_in / 10))


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return None


def _next_url(page_url: str, link: str) -> str:
    """A ``Link`` target as an absolute URL: resolved against the URL of the page that carried it
    (RFC 8288 §3.2, RFC 3986 §5), so ``/api/v2/users?next=…``, ``users?next=…`` and ``?next=…``
    all name the next page. INFERRED: a rootless link that spells the API's own path
    (``api/v2/…``) starts at the host's root, whatever page it came from."""
    if link.startswith("api/"):
        link = "/" + link
    return urljoin(page_url, link)


def _path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url).split("?")[0]
