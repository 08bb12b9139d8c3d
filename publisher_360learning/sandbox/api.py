"""The 360Learning sandbox's v2 API: the route table (method, path, scope, handler), routing, and
the groups' and users' routes; integrations and bulk operations are
:class:`~publisher_360learning.sandbox.integration_routes.IntegrationRoutes`, courses, their
statistics and tags :class:`~publisher_360learning.sandbox.course_routes.CourseRoutes`."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hostspec.kit.sandboxes import FaultRule

from .course_routes import CourseRoutes
from .integration_routes import IntegrationRoutes
from .paging import matches
from .errors import Problem

if TYPE_CHECKING:
    from .server import Learning360Sandbox

ID = r"([a-fA-F0-9]{24})"


class Api(IntegrationRoutes, CourseRoutes):
    """The v2 routes: ``(method, regex, scope, handler)``; handlers return (status, body, headers)."""

    def __init__(self, sandbox: Learning360Sandbox):
        self.sb = sandbox
        c = lambda: sandbox.company  # noqa: E731 - the company is replaced on reset
        self.c = c
        self.routes: list[tuple[str, re.Pattern[str], str, Callable[..., Any]]] = [
            (m, re.compile(p + "$"), s, h) for m, p, s, h in [
                ("GET", r"/api/v2/groups", "groups:read", self.groups),
                ("GET", rf"/api/v2/groups/{ID}", "groups:read", self.group),
                ("GET", rf"/api/v2/groups/{ID}/(catalog|library)/course-ids", "groups:read", self.shelf),
                ("GET", r"/api/v2/users", "users:read", self.users),
                ("GET", rf"/api/v2/users/{ID}", "users:read", self.user),
                ("GET", r"/api/v2/integrations", "integrations:read", self.integrations),
                ("POST", r"/api/v2/integrations", "integrations:write", self.create_integration),
                ("PATCH", rf"/api/v2/integrations/{ID}", "integrations:write", self.patch_integration),
                ("DELETE", rf"/api/v2/integrations/{ID}", "integrations:write", self.delete_integration),
                ("GET", rf"/api/v2/integrations/{ID}/courses/([^/]+)", "integrations:read", self.external_course),
                ("PUT", rf"/api/v2/bulk/integrations/{ID}/courses", "integrations:bulk", self.bulk("upsert")),
                ("DELETE", rf"/api/v2/bulk/integrations/{ID}/courses", "integrations:bulk", self.bulk("archive")),
                ("POST", rf"/api/v2/bulk/integrations/{ID}/stats", "integrations:bulk", self.bulk("stats")),
                ("GET", r"/api/v2/bulk/operations", "bulkOperations:read", self.operations),
                ("GET", rf"/api/v2/bulk/operations/{ID}", "bulkOperations:read", self.operation),
                ("GET", rf"/api/v2/bulk/operations/{ID}/results", "bulkOperations:read", self.results),
                ("GET", r"/api/v2/courses/stats", "courseStats:read", self.course_stats),
                ("GET", r"/api/v2/courses", "courses:read", self.courses),
                ("GET", rf"/api/v2/courses/{ID}", "courses:read", self.course),
                ("PUT", rf"/api/v2/courses/{ID}/archive", "courses:write", self.archive_course),
                ("GET", rf"/api/v2/courses/{ID}/tags", "tags:read", self.get_course_tags),
                ("PUT", rf"/api/v2/courses/{ID}/tags", "courses:write", self.put_course_tags),
                ("GET", r"/api/v2/tags", "tags:read", self.tags),
                ("POST", r"/api/v2/tags", "tags:write", self.create_tag),
            ]]
        self.fault: FaultRule | None = None

    def route(self, method: str, path: str) -> tuple[str, Callable[..., Any], tuple[str, ...]]:
        allowed = False
        for m, pattern, scope, handler in self.routes:
            match = pattern.match(path)
            if match:
                if m == method:
                    return scope, handler, match.groups()
                allowed = True
        if allowed:
            raise Problem(405, "methodNotAllowed", f"{method} is not allowed on {path}")
        raise Problem(404, "routeNotFound", f"No route {method} {path}")

    def _list(self, route: str, path: str, q: dict[str, list[str]], items: Callable[[], Iterable[dict[str, Any]]]):
        body, headers = self.sb.page(route, path, q, lambda f: [i for i in items() if matches(i, f)])
        return 200, body, headers

    def groups(self, path, q, body):
        return self._list("groups", path, q, lambda: self.c().groups.values())

    def group(self, path, q, body, gid):
        if gid not in self.c().groups:
            raise Problem(404, "groupNotFound", f"No group {gid}")
        return 200, self.c().groups[gid], {}

    def shelf(self, path, q, body, gid, which):
        shelf = getattr(self.c(), which).get(gid, [])
        page, headers = self.sb.page("catalog", path, q, lambda f: list(shelf))
        return 200, page, headers

    def users(self, path, q, body):
        return self._list("users", path, q, lambda: self.c().users.values())

    def user(self, path, q, body, uid):
        if uid not in self.c().users:
            raise Problem(404, "userNotFound", f"No user {uid}")
        return 200, self.c().users[uid], {}
