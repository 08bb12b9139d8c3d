"""The Coursera sandbox's API: the organisation, programs and contents, with Coursera's paging
(``start``, ``limit``, ``paging.next``); :meth:`CatalogRoutes.api` routes every API request,
enrollment reports to :class:`connector_coursera.sandbox.reports.ReportRoutes`.

Mixed into :class:`connector_coursera.sandbox.server.CourseraSandbox`."""
from __future__ import annotations

from typing import Any

from .. import contract
from .data import program_ids
from .errors import ApiError, naptime

PREFIX = "/ent/api/businesses.v1/"


class CatalogRoutes:
    """The API's routes and paging; the catalog's resources."""

    def api(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        rest = path[len(PREFIX):].split("/")
        org_id = rest[0]
        if org_id != self.spec.org_id:
            raise ApiError(404, {"message": "Not Found", "statusCode": 404}) if len(org_id) != 22 else \
                ApiError(403, {"errorCode": "Not Authorized", "message": "Access is denied", "details": None})
        q = {k: v[-1] for k, v in query.items()}
        with self._lock:
            if len(rest) == 1:
                return {"elements": [{"id": org_id, "name": self.spec.org_name,
                                      "slug": self.spec.org_name.lower().replace(" ", "-")}],
                        "paging": {"total": 1}, "linked": {}}
            resource = rest[1]
            if resource == "programs" and len(rest) == 2:
                return self._programs(q)
            if resource == "contents" and len(rest) == 2:
                return self._contents(q)
            if resource == "contents" and len(rest) == 3:
                return self._content(rest[2])
            if resource == "enrollmentReports" and len(rest) == 2:
                return self._reports(q)
        raise ApiError(404, {"message": "Not Found", "statusCode": 404})

    def _page(self, q: dict[str, str], total: int) -> tuple[int, int]:
        start_s, limit_s = q.get("start", "0"), q.get("limit", str(contract.PAGE_SIZE_DEFAULT))
        if not start_s.lstrip("-").isdigit():
            raise ApiError(400, naptime(f"Paging start should be an integer, was Some({start_s})"))
        if not limit_s.lstrip("-").isdigit() or int(limit_s) <= 0:
            raise ApiError(400, naptime(f"Paging limit should be a positive integer, was Some({limit_s})"))
        start = int(start_s)
        if start < 0:
            raise ApiError(400, naptime("Paging start should be non-negative"))
        return start, min(int(limit_s), self.page_limit_max)

    def _paged(self, items: Any, q: dict[str, str], render: Any = None) -> dict[str, Any]:
        total = len(items)
        start, limit = self._page(q, total)
        chunk = items[start:start + limit]
        elements = [render(x) for x in chunk] if render else list(chunk)
        paging: dict[str, Any] = {"total": total}
        if start + limit < total:
            nxt = start + limit
            paging["next"] = nxt if self.next_format == "int" else str(nxt)
        return {"elements": elements, "paging": paging, "linked": {}}

    def _programs(self, q: dict[str, str]) -> dict[str, Any]:
        exclude = q.get("excludeContent", "false") == "true"
        ids = set(q["ids"].split(",")) if q.get("ids") else None
        out = []
        for p in self.org.programs:
            if ids is not None and p["id"] not in ids:
                continue
            content_ids = [] if exclude else [
                {"contentId": c["contentId"], "contentType": c["contentType"]}
                for c in self.org.visible_contents(clips=self.spec.clips_enabled)
                if (program_ids(c) or [None])[0] == p["id"]]
            out.append({k: v for k, v in p.items() if not k.startswith("_")} | {"contentIds": content_ids})
        return self._paged(out, q)

    def _contents(self, q: dict[str, str]) -> dict[str, Any]:
        types = q["contentTypes"].split(",") if q.get("contentTypes") else None
        wanted_programs = None
        if q.get("q") == "byProgramIds":
            if not q.get("programIds"):
                raise ApiError(400, {"msg": "Routing error: Improperly formatted value for parameter 'programIds'"})
            wanted_programs = q["programIds"].split(",")
        items = self.org.visible_contents(clips=self.spec.clips_enabled, types=types, program_ids=wanted_programs)
        since = q.get(contract.CONTENTS_MODIFIED_SINCE)
        if since is not None:
            if not since.isdigit() or int(since) <= 0:
                raise ApiError(400, naptime("modifiedSinceTimestamp must be a positive epoch in seconds"))
            ts = int(since)
            changed = [{**c, "changes": [{"changeType": "MODIFIED",
                                          "programIds": program_ids(c)}]}
                       for c in items if c["lastUpdatedAt"] > ts]
            removed = [{**c, "changes": [{"changeType": "REMOVED",
                                          "programIds": program_ids(c)}]}
                       for c in self.org.contents
                       if c["contentId"] in self.org.removed and self.org.removed_at[c["contentId"]] > ts]
            items = changed + removed
        return self._paged(items, q)

    def _content(self, key: str) -> dict[str, Any]:
        kind, sep, cid = key.partition("~")
        if not sep or kind not in contract.CONTENT_TYPES:
            raise ApiError(400, {"message": f"Invalid id {key}", "statusCode": 400})
        item = self.org.content_by_id(cid)
        if item is None or cid in self.org.removed or item["contentType"] != kind:
            raise ApiError(404, naptime("The requested content ID is not in any programs of this organization.",
                                         "CONTENT_ID_NOT_IN_ORG"))
        return {"elements": [item], "paging": {}, "linked": {}}
