"""The Coursera sandbox's enrollment reports: rows filtered by finder and time bounds (cached per
filter set and data version), paged, with grades served in the configured scale and format.

Mixed into :class:`connector_coursera.sandbox.server.CourseraSandbox`."""
from __future__ import annotations

from typing import Any

from .errors import ApiError, naptime


class ReportRoutes:
    """``enrollmentReports``: the rows a query selects, and one page of them."""

    def _rows(self, q: dict[str, str]) -> Any:
        """Row indices matching the report filters, cached per filter set and data version."""
        finder = q.get("q")
        if finder in ("byProgramId", "byUserProgramId") and not q.get("programId"):
            raise ApiError(400, naptime("Missing required parameter programId"))
        if finder == "byUserProgramId" and not q.get("externalId"):
            raise ApiError(400, naptime("Missing required parameter externalId"))
        bounds = {}
        for name in ("lastActivityAfter", "lastActivityBefore", "enrollAtAfter", "enrollAtBefore",
                     "completedAtAfter", "completedAtBefore"):
            if name in q:
                if not q[name].isdigit():
                    raise ApiError(400, naptime(f"{name} must be an epoch in milliseconds"))
                bounds[name] = int(q[name])
        include_s12n = q.get("includeS12n", "false") == "true"
        include_deleted = q.get("includeDeletedMembers", "false") == "true"
        key = (finder, q.get("programId"), q.get("externalId"), include_s12n, include_deleted,
               tuple(sorted(bounds.items())), self.org.version, len(self.org.progress_overrides))
        cached = self._row_cache.get(key)
        if cached is not None:
            return cached

        def keep(row: dict[str, Any]) -> bool:
            if row["contentType"] == "Specialization" and not include_s12n:
                return False
            if row["membershipState"] == "DELETED_MEMBER" and not include_deleted:
                return False
            if finder and row["programId"] != q["programId"]:
                return False
            if finder == "byUserProgramId" and row["externalId"] != q["externalId"]:
                return False
            return _within(row, bounds)

        rows = None
        if not finder and not bounds:
            rows = self.org.select_plain(include_s12n=include_s12n, include_deleted=include_deleted)
        if rows is None:
            rows = self.org.select_rows(keep)
        self._row_cache = {key: rows}  # keep one filter set: the one being paged
        return rows

    def _reports(self, q: dict[str, str]) -> dict[str, Any]:
        rows = self._rows(q)
        page = self._paged(rows, q, self.org.row)
        for el in page["elements"]:
            grade = el.get("grade")
            if grade is None:
                continue
            if self.grade_scale != 1.0 and isinstance(grade, (int, float)):
                grade = round(grade * self.grade_scale, 2)
            el["grade"] = str(grade) if self.grade_format == "string" else grade
        return page


def _within(row: dict[str, Any], b: dict[str, int]) -> bool:
    last, enrolled, completed = row.get("lastActivityAt"), row.get("enrolledAt"), row.get("completedAt")
    # lastActivity bounds are exclusive; enrollAt and completedAt bounds inclusive (per the spec).
    if "lastActivityAfter" in b and (last is None or last <= b["lastActivityAfter"]):
        return False
    if "lastActivityBefore" in b and (last is None or last >= b["lastActivityBefore"]):
        return False
    if "enrollAtAfter" in b and (enrolled is None or enrolled < b["enrollAtAfter"]):
        return False
    if "enrollAtBefore" in b and (enrolled is None or enrolled > b["enrollAtBefore"]):
        return False
    if "completedAtAfter" in b and (completed is None or completed < b["completedAtAfter"]):
        return False
    if "completedAtBefore" in b and (completed is None or completed > b["completedAtBefore"]):
        return False
    return True
