"""A LinkedIn Learning stand-in over real HTTP on loopback: token, learning assets, activity
reports, with deterministic data and switchable faults (``POST /_sandbox/faults``:
``status_429`` with optional ``retry_after``, ``status_5xx`` with ``status``, ``expire_token``).

As LinkedIn does (contract.py PROTOCOL, REPORTS):

* each request is read in the Rest.li protocol it declares (no ``X-Restli-Protocol-Version``
  header: 1.0, ``2.0.0``: 2.0) and a query in the other protocol's syntax is refused with a 400
  (:mod:`.sandbox_restli`);
* a report summarizes its window: a learner's sessions in a course are spread over days, and a
  report from ``startedAt`` over ``timeOffset`` days counts the seconds, completions, progress and
  engagement moments of the sessions inside that range only. ``clock_ms`` (settable) hides the
  sessions that have not happened yet."""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hostspec.kit import FaultBook, SandboxRequestHandler, SandboxServer, retry_after_header

from . import contract
from .sandbox_restli import QueryRefused, parse, protocol_of

NOW_MS = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp() * 1000)
DAY_MS = 86_400_000
TOPICS = ["Leadership", "Project Management", "Python", "Data Analysis", "Communication", "Cloud Computing"]
FIRST = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Finn", "Gia", "Hugo"]
ACTIONS = frozenset({"status_429", "status_5xx", "expire_token"})
# the record parameters of each finder (every other parameter is a plain value)
FINDERS = {contract.ASSETS_PATH: frozenset({contract.ASSETS_LOCALE}),
           contract.REPORTS_PATH: frozenset({"timeOffset", "aggregationCriteria"})}


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class LinkedInSpec:
    courses: int = 20
    learners: int = 15
    activities: int = 60          # learner × course report rows
    seed: int = 7
    history_days: int = 200       # a learner's first session falls 10 .. 10 + history_days days before NOW_MS
    spread_days: int = 5          # and the last one up to spread_days after the first
    sessions: int = 4             # at most this many sessions per learner and course

    def __post_init__(self) -> None:
        if self.activities > self.courses * self.learners:
            raise ValueError("activities must not exceed courses × learners")


class LinkedInSandbox(SandboxServer):
    thread_name = "linkedin-sandbox"

    def __init__(self, spec: LinkedInSpec | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 client_id: str = "li-sandbox-client", client_secret: str = "li-sandbox-secret",
                 token_ttl_s: float = 1800):
        self.bind(host, port, _handler(self))
        self.spec = spec or LinkedInSpec()
        self.client_id, self.client_secret, self.token_ttl_s = client_id, client_secret, token_ttl_s
        self.faults = FaultBook(ACTIONS)
        self.tokens: dict[str, float] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.clock_ms: int | None = None     # the sandbox's now: sessions after it are not reported yet
        self.extra_sessions: dict[int, list[dict[str, Any]]] = {}     # row -> sessions added (change_progress)

    # -- data --------------------------------------------------------------------------------------
    def asset(self, n: int) -> dict[str, Any]:
        h = _h(self.spec.seed, "asset", n)
        topic = TOPICS[h % len(TOPICS)]
        urn = f"urn:li:lyndaCourse:{100000 + n}"
        return {
            "urn": urn,
            "title": {"value": f"{topic}: Essentials {n}", "locale": {"language": "en", "country": "US"}},
            "details": {
                "description": {"value": f"Learn the essentials of {topic.lower()}, step by step."},
                "level": ["BEGINNER", "INTERMEDIATE", "ADVANCED"][(h >> 4) % 3],
                "timeToComplete": {"duration": 600 + (h >> 8) % 7200, "unit": "SECOND"},
                "urls": {"webLaunch": f"https://www.linkedin.com/learning/{topic.lower().replace(' ', '-')}-{n}"},
                "images": {"primary": f"https://media.licdn.com/sandbox/{n}.png"},
                "classifications": [
                    {"associatedClassification": {"urn": f"urn:li:skill:{h % 50}", "type": "SKILL",
                                                  "name": {"value": topic}}},
                    {"associatedClassification": {"urn": f"urn:li:lyndaCategory:{h % 9}", "type": "TOPIC",
                                                  "name": {"value": f"{topic} topics"}}}],
                "contributors": [{"name": {"value": f"{FIRST[h % len(FIRST)]} Instructor"},
                                  "contributionType": "AUTHOR"}],
                "lastUpdatedAt": NOW_MS - (h % 300) * DAY_MS,
                "availability": "AVAILABLE",
            },
        }

    def learner(self, n: int) -> dict[str, Any]:
        name = FIRST[_h(self.spec.seed, "learner", n) % len(FIRST)]
        mail = f"{name.lower()}.{n}@acme.test"
        return {"email": mail, "uniqueUserId": f"li-{n:05d}", "name": {"value": f"{name} Learner"}}

    def sessions(self, i: int) -> list[dict[str, Any]]:
        """Activity row ``i``'s sessions, oldest first: when, seconds viewed, progress after it,
        whether it completed the course (the last session of a completed course does)."""
        s = self.spec
        h = _h(s.seed, "row", i)
        first = NOW_MS - (10 + h % s.history_days) * DAY_MS
        span = (h >> 8) % (s.spread_days * DAY_MS + 1)
        middle = [first + _h(s.seed, "session", i, j) % (span + 1) for j in range(max(0, (h >> 40) % s.sessions - 1))]
        times = sorted({first, first + span, *middle})
        completed = (h >> 16) % 101 == 100 or h % 4 == 0
        final = 100 if completed else (h >> 16) % 101
        return [{"at": at, "seconds": 30 + _h(s.seed, "seconds", i, j) % 3000,
                 "progress": final * (j + 1) // len(times), "completes": completed and j == len(times) - 1}
                for j, at in enumerate(times)] + self.extra_sessions.get(i, [])

    def change_progress(self, at: datetime) -> dict[str, Any] | None:
        """One learner studies a little more at ``at`` (the conformance suite's incremental check):
        a session of ten minutes and 10 more points on the first row in progress below 90 %."""
        at_ms = int(at.timestamp() * 1000)
        with self.lock:
            for i in range(self.spec.activities):
                done = self.sessions(i)
                if not any(x["completes"] for x in done) and 0 < done[-1]["progress"] < 90 and done[-1]["at"] < at_ms:
                    self.extra_sessions.setdefault(i, []).append(
                        {"at": at_ms, "seconds": 600, "progress": done[-1]["progress"] + 10, "completes": False})
                    s = self.spec
                    course_n = (i // s.learners + i % s.learners * 3) % s.courses
                    return {"learner": self.learner(i % s.learners)["email"], "course": self.asset(course_n)["urn"]}
        return None

    def row(self, i: int, start_ms: int = 0, end_ms: int = 2**62) -> dict[str, Any] | None:
        """Row ``i`` of a report over ``start_ms`` .. ``end_ms``: its sessions in that range only
        (``None`` when it has none); by default, over all time."""
        s = self.spec
        inside = [x for x in self.sessions(i) if start_ms <= x["at"] < end_ms
                  and (self.clock_ms is None or x["at"] < self.clock_ms)]
        if not inside:
            return None
        learner_n, course_n = i % s.learners, (i // s.learners + i % s.learners * 3) % s.courses
        first, last = inside[0]["at"], inside[-1]["at"]
        activities = [
            {"engagementType": contract.SECONDS_VIEWED, "engagementValue": sum(x["seconds"] for x in inside),
             "engagementMetricQualifier": "TOTAL", "firstEngagedAt": first, "lastEngagedAt": last,
             "assetType": "COURSE"},
            {"engagementType": contract.PROGRESS_PERCENTAGE, "engagementValue": inside[-1]["progress"],
             "engagementMetricQualifier": "TOTAL", "firstEngagedAt": first, "lastEngagedAt": last,
             "assetType": "COURSE"}]
        done = [x["at"] for x in inside if x["completes"]]
        if done:
            activities.append({"engagementType": contract.COMPLETIONS, "engagementValue": len(done),
                               "engagementMetricQualifier": "TOTAL", "firstEngagedAt": done[0],
                               "lastEngagedAt": done[-1], "assetType": "COURSE"})
        asset = self.asset(course_n)
        return {"learnerDetails": self.learner(learner_n),
                "contentDetails": {"contentUrn": asset["urn"], "name": asset["title"]["value"],
                                   "contentProviderName": "LinkedIn", "locale": {"language": "en", "country": "US"}},
                "activities": activities, "latestDataAt": min(end_ms, self.clock_ms or NOW_MS, NOW_MS)}

    def rows_between(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """The report over ``start_ms`` .. ``end_ms``: a row per learner and course with sessions in it."""
        return [row for i in range(self.spec.activities) if (row := self.row(i, start_ms, end_ms)) is not None]

    # -- life cycle --------------------------------------------------------------------------------
    DATA_ROUTE = "/v2/*"            # conformance faults: the API, not the token endpoint

    @property
    def expected(self) -> dict[str, int]:
        """Records a complete fetch of each scope yields (the conformance suite's paging check)."""
        return {"catalog": self.spec.courses, "progress": self.spec.activities}

    @property
    def settings(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_secret": self.client_secret, "api_url": self.url,
                "token_url": self.url + "/oauth/v2/accessToken"}

    def describe(self) -> str:
        return (f"LinkedIn Learning sandbox at {self.url}: {self.spec.courses} courses, {self.spec.learners} "
                f"learners, {self.spec.activities} activity rows")

    # -- answers -----------------------------------------------------------------------------------
    def answer(self, method: str, path: str, raw_query: str, form: dict[str, str],
               auth: str, protocol: str | None = None) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and path == "/oauth/v2/accessToken":
            if form.get("grant_type") != contract.TOKEN_GRANT:
                return 400, {"error": "unsupported_grant_type"}, {}
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}, {}
            token = "li_" + secrets.token_hex(12)
            with self.lock:
                self.tokens[token] = time.time() + self.token_ttl_s
            return 200, {"access_token": token, "expires_in": int(self.token_ttl_s)}, {}
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self.tokens.get(token, 0) < time.time():
            return 401, {"status": 401, "serviceErrorCode": 65600, "message": "Invalid access token"}, {}
        if method != "GET" or path not in FINDERS:
            return 404, {"status": 404, "message": f"No resource {path}"}, {}
        try:
            query = parse(raw_query, protocol_of(protocol), FINDERS[path])
            start, count = int(query.get("start", 0)), min(int(query.get("count", 10)), contract.PAGE_SIZE_MAX)
            if path == contract.ASSETS_PATH and query.get("q") == contract.ASSETS_FINDER:
                items = [self.asset(n) for n in range(self.spec.courses)]
            elif path == contract.REPORTS_PATH and query.get("q") == contract.REPORTS_FINDER:
                started, offset = int(query["startedAt"]), query["timeOffset"]
                if offset.get("unit") != contract.REPORT_TIME_UNIT:
                    raise QueryRefused(f"timeOffset.unit {offset.get('unit')!r} is not served by the sandbox")
                items = self.rows_between(started, started + int(offset["duration"]) * DAY_MS)
            else:
                raise QueryRefused(f"unknown finder q={query.get('q')!r}")
        except (QueryRefused, KeyError, ValueError, TypeError) as exc:
            return 400, {"status": 400, "code": "ILLEGAL_ARGUMENT", "message": f"Invalid query: {exc}"}, {}
        page = items[start:start + count]
        return 200, {"elements": page, "paging": {"start": start, "count": count, "total": len(items)}}, {}


def _handler(sb: LinkedInSandbox) -> type[SandboxRequestHandler]:
    class Handler(SandboxRequestHandler):
        server_version = "LinkedInLearningSandbox/1"

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if split.path.startswith("/_sandbox/"):
                return self._control(method, split.path, raw)
            rule = sb.faults.pick(method, split.path)
            if rule is not None and rule.action == "status_429":
                status, body = 429, {"status": 429, "message": "Throttled"}
                headers = retry_after_header(rule.params.get("retry_after"))
            elif rule is not None and rule.action == "status_5xx":
                status, body, headers = int(rule.params.get("status", 503)), {"message": "unavailable"}, {}
            elif rule is not None and rule.action == "expire_token":
                with sb.lock:
                    sb.tokens.pop((self.headers.get("Authorization") or "")[7:], None)
                status, body, headers = 401, {"status": 401, "message": "Expired access token"}, {}
            else:
                form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
                status, body, headers = sb.answer(method, split.path, split.query, form,
                                                  self.headers.get("Authorization") or "",
                                                  self.headers.get(contract.RESTLI_HEADER))
            sb.requests.append({"method": method, "path": split.path, "status": status, "query": split.query,
                                "protocol": self.headers.get(contract.RESTLI_HEADER),
                                "fault": rule.action if rule else None})
            self._send(status, body, headers)

        def _control(self, method: str, path: str, raw: bytes) -> None:
            if path == "/_sandbox/faults" and method == "POST":
                try:
                    sb.faults.add_json(json.loads(raw or b"null"))
                except (ValueError, TypeError) as exc:
                    return self._send(400, {"error": str(exc)})
                return self._send(201, sb.faults.rules())
            if path == "/_sandbox/health":
                return self._send(200, {"ok": True})
            return self._send(404, {"error": f"no control endpoint {method} {path}"})

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            self.reply(status, json.dumps(body).encode(), "application/json", headers)

    return Handler
