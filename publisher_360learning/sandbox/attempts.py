"""The 360Learning sandbox's attempts: started in 360Learning (START, maybe in a path session) and
recorded by statistics imports, with the import rules the API documents.

Mixed into :class:`publisher_360learning.sandbox.store.Company`."""
from __future__ import annotations

from typing import Any

from .errors import Problem
from .operations import iso


class Attempts:
    """A learner's attempts at a course (``attempts``, ``attempts_of``)."""

    def start_attempt(self, course_id: str, user_id: str, *, path_session_id: str | None = None,
                      at: float | None = None) -> dict[str, Any]:
        """What happens when a learner presses START in 360Learning (maybe inside a path session).

        [sandbox, INFERRED] START continues the learner's open (not completed) attempt when there
        is one, taking the session's context if it had none; otherwise it creates an attempt at
        the integration's ``defaultProgress`` / ``defaultCompletion``."""
        if course_id not in self.courses or user_id not in self.users:
            raise Problem(404, "resourceNotFound", "no such course or user")
        owner = next((iid for (iid, _ext), cid in self.by_external.items() if cid == course_id), None)
        integration = self.integrations.get(owner, {}) if owner else {}
        when = iso(self.clock() if at is None else at)
        open_ = [self.attempts[a] for a in self.attempts_of.get((course_id, user_id), [])
                 if self.attempts[a]["completedAt"] is None]
        if open_:
            attempt = open_[-1]
            attempt["lastActivityAt"] = max(attempt["lastActivityAt"], when)
            if path_session_id and not attempt.get("pathSessionId"):
                attempt["pathSessionId"] = path_session_id
            return attempt
        completed = bool(integration.get("defaultCompletion"))
        attempt = {"_id": self.new_id("e"), "courseId": course_id, "userId": user_id, "lang": "en",
                   "progress": 100 if completed else int(integration.get("defaultProgress", 0)),
                   "timeSpent": 0, "firstActivityAt": when, "lastActivityAt": when,
                   "completedAt": when if completed else None, "pathSessionId": path_session_id}
        self._keep_attempt(attempt)
        return attempt

    def _keep_attempt(self, attempt: dict[str, Any]) -> None:
        self.attempts[attempt["_id"]] = attempt
        self.attempts_of.setdefault((attempt["courseId"], attempt["userId"]), []).append(attempt["_id"])

    def record_attempt(self, course_id: str, user_id: str, item: dict[str, Any]) -> str:
        """The import rules, strict as documented: a new attempt when ``forceNew``, when none
        exists, or when the activity began *later* than every attempt ended; an update of the open
        attempt whose end it began *earlier* than.
        [sandbox] when neither applies — an import overlapping only completed attempts, or one
        beginning at the very instant an attempt ended — nothing changes."""
        attempts = [self.attempts[a] for a in self.attempts_of.get((course_id, user_id), [])]
        first = item["firstActivityAt"]         # YYYY-MM-DDThh:mm:ss.sssZ: compared as text, in time order
        ends = [a["completedAt"] or a["lastActivityAt"] for a in attempts]
        if item.get("forceNew") or not attempts or all(first > end for end in ends):
            attempt = {"_id": self.new_id("e"), "courseId": course_id, "userId": user_id, "lang": "en",
                       "pathSessionId": None}
            self._apply_stat(attempt, item)
            self._keep_attempt(attempt)
            return attempt["_id"]
        open_ = [a for a, end in zip(attempts, ends) if a["completedAt"] is None and first < end]
        if not open_:
            return next(a for a, end in zip(reversed(attempts), reversed(ends)) if first <= end)["_id"]
        attempt = open_[-1]
        self._apply_stat(attempt, item)
        return attempt["_id"]

    @staticmethod
    def _apply_stat(attempt: dict[str, Any], item: dict[str, Any]) -> None:
        progress = int(item["progress"])
        attempt.update(progress=progress, timeSpent=int(item["timeSpent"]),
                       firstActivityAt=min(item["firstActivityAt"], attempt.get("firstActivityAt") or item["firstActivityAt"]),
                       lastActivityAt=item["lastActivityAt"],
                       completedAt=item["lastActivityAt"] if progress == 100 else None)
        if "score" in item:
            attempt["score"] = int(round(item["score"]))
        if "result" in item:
            attempt["result"] = item["result"]
