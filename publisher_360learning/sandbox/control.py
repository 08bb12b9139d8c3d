"""The 360Learning sandbox's control plane under ``/_sandbox`` for tests and demos: faults, reset,
the request log, tokens, the next links' form, snapshots, users, attempts started in 360Learning
and admin tags.

Mixed into :class:`publisher_360learning.sandbox.server.Learning360Sandbox`."""
from __future__ import annotations

from typing import Any

from .paging import checked_link_style


class ControlPlane:
    """``/_sandbox/…``: what a test or a demo changes in a running sandbox."""

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[1:]
        c = self.company
        if parts == ["health"]:
            return 200, {"ok": True, "url": self.url}
        if parts == ["reset"]:
            self.reset()
            return 200, {"reset": True}
        if parts == ["faults"]:
            if method == "DELETE":
                self.faults.clear()
                return 200, {"cleared": True}
            if method == "GET":
                return 200, self.faults.rules()
            try:
                self.faults.add_json(body)
            except (ValueError, TypeError) as exc:
                return 400, {"error": str(exc)}
            return 201, self.faults.rules()
        if parts == ["requests"]:
            if method == "DELETE":
                self.requests.clear()
            return 200, list(self.requests)
        if parts == ["tokens", "revoke"]:
            for info in self.tokens.values():
                info["expires_at"] = 0
            return 200, {"revoked": len(self.tokens)}
        if parts == ["links"] and method == "POST":
            try:
                self.link_style = checked_link_style((body or {}).get("style"))
            except ValueError as exc:
                return 400, {"error": str(exc)}
            return 200, {"style": self.link_style}
        if parts == ["snapshot"]:
            return 200, c.snapshot()
        if parts == ["users"] and method == "POST":
            mails = (body or {}).get("mails") or [(body or {}).get("mail")]
            return 201, [c.add_user(m) for m in mails if isinstance(m, str) and m]
        if parts == ["attempts"] and method == "POST":
            b = body or {}
            user = c.user_by_mail(str(b.get("mail")))
            course_id = b.get("courseId") or next(
                (cid for (_i, ext), cid in c.by_external.items() if ext == b.get("externalId")), None)
            if user is None or course_id is None:
                return 404, {"error": "no such user or course"}
            return 201, c.start_attempt(course_id, user["_id"], path_session_id=b.get("pathSessionId"),
                                        at=b.get("at"))
        if len(parts) == 3 and parts[0] == "courses" and parts[2] == "tags" and method == "POST":
            return 201, c.admin_tag(parts[1], str((body or {}).get("name")))
        return 404, {"error": f"no control endpoint {method} {path}"}
