"""The 360Learning sandbox's course routes: courses (list, one, archive), course statistics, a
course's tags and the company's tags.

Mixed into :class:`publisher_360learning.sandbox.api.Api` (``sb``: the sandbox, ``c()``: its company)."""
from __future__ import annotations

from .errors import Problem


class CourseRoutes:
    """``/api/v2/courses…`` and ``/api/v2/tags``."""

    def course_stats(self, path, q, body):
        return self._list("course_stats", path, q, lambda: self.c().attempts.values())

    def courses(self, path, q, body):
        return self._list("courses", path, q, lambda: self.c().courses.values())

    def _course(self, cid):
        if cid not in self.c().courses:
            raise Problem(404, "courseNotFound", f"No course {cid}")
        return self.c().courses[cid]

    def course(self, path, q, body, cid):
        return 200, self._course(cid), {}

    def archive_course(self, path, q, body, cid):
        course = self._course(cid)
        if not isinstance(body, dict) or not isinstance(body.get("archived"), bool):
            raise Problem(400, "invalidInput", "archived must be a boolean")
        course["status"] = "archived" if body["archived"] else "published"
        return 200, course, {}

    def get_course_tags(self, path, q, body, cid):
        self._course(cid)
        page, headers = self.sb.page("course_tags", path, q, lambda f: list(self.c().course_tags[cid]))
        return 200, page, headers

    def put_course_tags(self, path, q, body, cid):
        return 200, self.c().set_course_tags(cid, body), {}

    def tags(self, path, q, body):
        return self._list("tags", path, q, lambda: self.c().tags.values())

    def create_tag(self, path, q, body):
        return 201, self.c().create_tag(body), {}
