"""The 360Learning sandbox's tags: created through the API, set on a course, or added by an admin.

Mixed into :class:`publisher_360learning.sandbox.store.Company`."""
from __future__ import annotations

from typing import Any

from .. import contract
from .errors import Problem


class Tags:
    """The company's tags (``tags``) and each course's (``course_tags``)."""

    def create_tag(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"].strip() \
                or not isinstance(body.get("isMain", False), bool) or set(body) - {"name", "isMain", "externalId"}:
            raise Problem(400, "invalidInput", "name (string) and isMain (boolean) are expected")
        if any(t["name"].casefold() == body["name"].casefold() for t in self.tags.values()):
            raise Problem(400, contract.TAG_NAME_TAKEN, f"A tag named {body['name']} exists")
        tag = {"_id": self.new_id("f"), "name": body["name"], "isMain": bool(body.get("isMain", False)),
               "source": "native", **({"externalId": body["externalId"]} if body.get("externalId") else {})}
        self.tags[tag["_id"]] = tag
        return tag

    def set_course_tags(self, course_id: str, body: Any) -> list[str]:
        if course_id not in self.courses:
            raise Problem(404, "courseNotFound", f"No course {course_id}")
        ids = body.get("tagIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or len(ids) > contract.MAX_TAGS_PER_COURSE or set(body) != {"tagIds"}:
            raise Problem(400, "invalidInput", "tagIds must be an array of at most 100 ids")
        missing = [t for t in ids if t not in self.tags]
        if missing:
            raise Problem(404, "tagNotFound", f"No tag {missing[0]}")
        before = {t["tagId"]: t["source"] for t in self.course_tags[course_id]}
        # tags set through the API are "native", like those an admin adds
        self.course_tags[course_id] = [{"tagId": t, "source": before.get(t, "native")} for t in dict.fromkeys(ids)]
        return [t["tagId"] for t in self.course_tags[course_id]]

    def admin_tag(self, course_id: str, name: str) -> dict[str, Any]:
        """An admin adds a tag to a course in the 360Learning UI."""
        tag = next((t for t in self.tags.values() if t["name"].casefold() == name.casefold()), None) \
            or self.create_tag({"name": name, "isMain": False})
        if course_id not in self.courses:
            raise Problem(404, "courseNotFound", f"No course {course_id}")
        if all(t["tagId"] != tag["_id"] for t in self.course_tags[course_id]):
            self.course_tags[course_id].append({"tagId": tag["_id"], "source": "native"})
        return tag
