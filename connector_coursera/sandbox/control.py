"""The Coursera sandbox's control API under ``/_sandbox`` for tests and demos: faults, reset, the
request log, the clock, tokens, and data changes (contents added, removed, modified; progress;
enrollments).

Mixed into :class:`connector_coursera.sandbox.server.CourseraSandbox`."""
from __future__ import annotations

from datetime import datetime
from typing import Any


class ControlRoutes:
    """``/_sandbox/…``: what a test or a demo changes in a running sandbox."""

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """``/_sandbox/``: ``health``, ``faults`` (GET, POST a rule, DELETE), ``reset``, ``requests``
        (GET the log, DELETE), ``clock`` (``advance_s``), ``tokens/revoke``, ``stats``,
        ``contents/add``, ``contents/{id}/remove``, ``contents/{id}/modify`` (``changes``),
        ``learners/{externalId}/progress`` (``contentId``, ``delta`` or ``complete``, ``grade`` 0–1) and
        ``learners/{externalId}/enroll`` (``contentId``: a new enrollment, not started)."""
        parts = path.strip("/").split("/")[1:]
        with self._lock:
            if parts == ["health"]:
                return 200, {"ok": True, "url": self.url}
            if parts == ["faults"]:
                if method == "GET":
                    return 200, self.faults.rules()
                if method == "DELETE":
                    self.faults.clear()
                    return 200, {"cleared": True}
                try:
                    self.faults.add_json(body)
                except (ValueError, TypeError) as exc:
                    return 400, {"error": str(exc)}
                return 201, self.faults.rules()
            if parts == ["reset"]:
                self._reset_state()
                return 200, {"reset": True}
            if parts == ["requests"]:
                if method == "DELETE":
                    self.requests.clear()
                    return 200, {"cleared": True}
                return 200, list(self.requests)
            if parts == ["clock"]:
                self.clock_offset += float((body or {}).get("advance_s", 0))
                return 200, {"now": self.now()}
            if parts == ["tokens", "revoke"]:
                for info in self.tokens.values():
                    info.revoked = True
                return 200, {"revoked": len(self.tokens)}
            if parts == ["stats"]:
                return 200, {"catalog_items": self.catalog_size(), "enrollments": self.org.row_count()}
            if len(parts) == 2 and parts[0] == "contents" and parts[1] == "add":
                return 201, self.org.add_content(int(self.now()))
            if len(parts) == 3 and parts[0] == "contents" and parts[2] in ("remove", "modify"):
                ok = (self.org.remove_content(parts[1], int(self.now())) if parts[2] == "remove"
                      else self.org.modify_content(parts[1], (body or {}).get("changes", {}), int(self.now())))
                return (200, {"ok": True}) if ok else (404, {"error": "no such content"})
            if len(parts) == 3 and parts[0] == "learners" and parts[2] == "progress":
                return self._set_progress(parts[1], body or {})
            if len(parts) == 3 and parts[0] == "learners" and parts[2] == "enroll":
                row = self.org.enroll(parts[1], str((body or {}).get("contentId")), int(self.now() * 1000))
                return (201, row) if row else (409, {"error": "no such learner or content, or enrolled already"})
        return 404, {"error": f"no control endpoint {method} {path}"}

    def change_progress(self, at: datetime) -> dict[str, Any] | None:
        """One learner studies a little more at ``at`` (the conformance suite's incremental check):
        the first member's course in progress below 90 % gains 5 points."""
        at_ms = int(at.timestamp() * 1000)
        with self._lock:
            for i in range(self.org.row_count()):
                row = self.org.row(i)
                if (row.get("membershipState") == "MEMBER" and row.get("contentType") == "Course"
                        and not row.get("isCompleted") and row.get("lastActivityAt") and "enrolledAt" in row
                        and 0 < (row.get("overallProgress") or 0) < 90):
                    change = {"overallProgress": row["overallProgress"] + 5, "lastActivityAt": at_ms, "updatedAt": at_ms}
                    self.org.progress_overrides[i] = {**self.org.progress_overrides.get(i, {}), **change}
                    return {"externalId": row["externalId"], "contentId": row["contentId"]}
        return None

    def _set_progress(self, external_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        i = self.org.row_index(external_id, str(body.get("contentId")))
        if i is None:
            return 404, {"error": "no enrollment of that learner in that content"}
        row = self.org.row(i)
        now_ms = int(self.now() * 1000)
        if body.get("complete"):
            change = {"isCompleted": True, "completedAt": now_ms, "overallProgress": 100,
                      "lastActivityAt": now_ms, "grade": body.get("grade", 0.9)}
        else:
            progress = min(99, int(row.get("overallProgress") or 0) + int(body.get("delta", 10)))
            change = {"overallProgress": progress, "lastActivityAt": now_ms}
        change["updatedAt"] = now_ms
        self.org.progress_overrides[i] = {**self.org.progress_overrides.get(i, {}), **change}
        return 200, self.org.row(i)
