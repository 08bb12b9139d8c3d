"""The kit provider's API stand-in, shaped like the LMS APIs authors meet (Udemy Business-like):
integer ids, ``completion_ratio`` 0–100, time in minutes, a learner SSO id missing for
non-SSO users, first and last activity, some rows at 100 % without a completion date.

``GET /courses`` and ``GET /progress`` answer ``{"results": [...], "count": N}`` for ``offset``
and ``limit`` (``/progress`` filters ``since``/``until`` on ``last_activity``).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hostspec.kit import FaultBook, SandboxRequestHandler, SandboxServer, retry_after_header

API_KEY = "kit-sandbox-key"
START = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)


class KitSandbox(SandboxServer):
    DATA_ROUTE = "/*"

    def __init__(self, courses: int = 8, learners: int = 6, enrollments: int = 30, page_size: int = 7):
        self.bind("127.0.0.1", 0, _handler(self))
        self.page_size = page_size
        self.faults = FaultBook({"status_429", "status_5xx"})
        self.courses = [{"id": 100 + n, "title": f"Kit course {n}", "url": f"https://kit.example.com/c/{100 + n}",
                         "video_minutes": 40 + 5 * n} for n in range(courses)]
        self.progress = []
        for k in range(enrollments):
            learner, course = k % learners, (k // learners + k) % courses
            ratio = 100 if k % 5 == 0 else 20 + (k * 13) % 75       # 0–100, some at 100
            minutes = round((40 + 5 * course) * ratio / 100 * (1 + (k % 3) / 4))
            first = START + timedelta(days=k % 10)
            last = first + timedelta(days=1 + k % 6, hours=k % 5)
            self.progress.append({
                "enrollment_id": 5000 + k, "course_id": 100 + course, "user_id": 9000 + learner,
                "sso_id": f"sso-{learner}" if learner % 2 else None, "email": f"kit{learner}@acme.test",
                "completion_ratio": ratio, "minutes_spent": minutes,
                "first_activity": first.isoformat(), "last_activity": last.isoformat(),
                "completed_on": last.isoformat() if ratio == 100 and k % 10 else None})

    @property
    def settings(self) -> dict[str, Any]:
        return {"base_url": self.url, "api_key": API_KEY}

    @property
    def expected(self) -> dict[str, int]:
        return {"catalog": len(self.courses), "progress": len(self.progress)}

    def change_progress(self, at: datetime) -> dict[str, Any] | None:
        row = next((p for p in self.progress if p["completion_ratio"] < 90), None)
        if row is None:
            return None
        row.update(completion_ratio=row["completion_ratio"] + 5, minutes_spent=row["minutes_spent"] + 10,
                   last_activity=at.astimezone(timezone.utc).isoformat())
        return {"enrollment_id": row["enrollment_id"]}

    def describe(self) -> str:
        return f"kit sandbox at {self.url}"

    def page(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        items = {"/courses": self.courses, "/progress": self.progress}.get(path)
        if items is None:
            return 404, {"error": "not found"}
        if path == "/progress":
            since, until = query.get("since"), query.get("until")
            items = [p for p in items if (since is None or p["last_activity"] >= _iso(since))
                     and (until is None or p["last_activity"] < _iso(until))]
        offset = int(query.get("offset", 0))
        limit = min(int(query.get("limit", self.page_size)), self.page_size)
        return 200, {"results": items[offset:offset + limit], "count": len(items)}


def _iso(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).isoformat()


def _handler(sb: KitSandbox) -> type[SandboxRequestHandler]:
    class Handler(SandboxRequestHandler):
        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            headers: dict[str, str] = {}
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                status, body = 401, {"error": "bad key"}
            elif (rule := sb.faults.pick(method, split.path)) is not None:
                if rule.action == "status_429":
                    status, body = 429, {"error": "slow down"}
                    headers = retry_after_header(rule.params.get("retry_after"))
                else:
                    status, body = int(rule.params.get("status", 503)), {"error": "unavailable"}
            else:
                try:
                    status, body = sb.page(split.path, query)
                except ValueError:
                    status, body = 400, {"error": "bad query"}
            self.reply(status, json.dumps(body).encode(), "application/json", headers=headers)

    return Handler
