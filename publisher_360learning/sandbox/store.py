"""The 360Learning sandbox's data: one company's groups, users, integrations, courses, tags,
attempts and bulk operations, with the rules the API documents (and marked sandbox choices).

Everything here is plain Python under one lock held by the caller (the server); no HTTP.
"""
from __future__ import annotations

import copy
import itertools
import random
import time
from typing import Any, Callable, Iterable

from .. import contract
from .attempts import Attempts
from .errors import Problem
from .operations import BulkOperations, Operation
from .tags import Tags

ROOT_GROUP = "65a000000000000000000000"
SYNC_GROUP = "65a000000000000000000001"
SUB_GROUP = "65a000000000000000000002"
AUTHOR_ID = "65a0000000000000000000a1"
AUTHOR_MAIL = "author@acme.test"
COMPANY_ID = "65a0000000000000000c0001"


class Company(BulkOperations, Attempts, Tags):
    """One 360Learning company as the sandbox holds it."""

    def __init__(self, *, users: Iterable[str] = (), reserved_names: Iterable[str] = (),
                 stage_s: float = 0.05, clock: Callable[[], float] = time.time, results_seed: int | None = None):
        self.clock = clock
        # [sandbox] 360Learning documents no order for an operation's results, only that each
        # echoes its ``input``: they come shuffled (seeded, so runs repeat); None keeps input order
        self._results_order = random.Random(results_seed) if results_seed is not None else None
        self.stage_s = stage_s              # [sandbox] time spent in pending, queued and running
        self.reserved_names = {n.casefold() for n in reserved_names}
        self._ids = {kind: itertools.count(1) for kind in "bcdefgu"}
        self.groups: dict[str, dict[str, Any]] = {
            ROOT_GROUP: {"_id": ROOT_GROUP, "name": "Acme", "public": True},
            SYNC_GROUP: {"_id": SYNC_GROUP, "name": "Learning catalog", "public": True, "parentId": ROOT_GROUP},
            SUB_GROUP: {"_id": SUB_GROUP, "name": "Sales team", "public": True, "parentId": SYNC_GROUP},
        }
        self.users: dict[str, dict[str, Any]] = {}
        self.add_user(AUTHOR_MAIL, user_id=AUTHOR_ID, first_name="Ada", last_name="Author")
        for mail in users:
            self.add_user(mail)
        self.integrations: dict[str, dict[str, Any]] = {}
        self.courses: dict[str, dict[str, Any]] = {}           # by 360 course id
        self.by_external: dict[tuple[str, str], str] = {}       # (integration id, externalId) -> course id
        self.external_fields: dict[str, dict[str, Any]] = {}    # course id -> last upserted item
        self.catalog: dict[str, list[str]] = {}                 # group id -> course ids
        self.library: dict[str, list[str]] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.course_tags: dict[str, list[dict[str, str]]] = {}
        self.attempts: dict[str, dict[str, Any]] = {}           # by attempt id
        self.attempts_of: dict[tuple[str, str], list[str]] = {}  # (course id, user id) -> attempt ids
        self.operations: dict[str, Operation] = {}

    def new_id(self, kind: str) -> str:
        prefix = {"b": "65b", "c": "65c", "d": "65d", "e": "65e", "f": "65f", "g": "65a00000000000000000",
                  "u": "65a0000000000000000b"}[kind]
        n = next(self._ids[kind])
        return f"{prefix}{n:0{24 - len(prefix)}x}"

    # -- users and groups -------------------------------------------------------------------------
    def add_user(self, mail: str, *, user_id: str | None = None, first_name: str = "", last_name: str = "",
                 status: str = "active") -> dict[str, Any]:
        existing = self.user_by_mail(mail)
        if existing is not None and existing["status"] != "deleted":
            return existing     # a deleted user's e-mail may be given to a new user (with a new id)
        uid = user_id or self.new_id("u")
        user = {"_id": uid, "mail": mail, "status": status, "lang": "en", "firstName": first_name,
                "lastName": last_name, "primaryGroupId": SYNC_GROUP}
        self.users[uid] = user
        return user

    def user_by_mail(self, mail: str) -> dict[str, Any] | None:
        wanted = mail.casefold()  # [sandbox] case-insensitive: the real behaviour is not documented
        found = [u for u in self.users.values() if u["mail"].casefold() == wanted]
        return next((u for u in reversed(found) if u["status"] != "deleted"), found[-1] if found else None)

    # -- integrations -------------------------------------------------------------------------------
    def create_integration(self, body: Any) -> dict[str, Any]:
        allowed = {"externalPlatform", "groupId", "authorId", "defaultCompletion", "defaultProgress",
                   "noGroupPropagation", "externalPlatformLogoUrl", "externalPlatformUnicolorLogoUrl"}
        if not isinstance(body, dict) or set(body) - allowed or not all(
                isinstance(body.get(k), str) and body.get(k) for k in ("externalPlatform", "groupId", "authorId")):
            raise Problem(400, "invalidInput", "externalPlatform, groupId and authorId are required strings")
        if body["externalPlatform"].casefold() in self.reserved_names:
            raise Problem(400, contract.RESERVED_NAME, f"{body['externalPlatform']} is a reserved platform name")
        if body["groupId"] not in self.groups:
            raise Problem(404, "groupNotFound", f"No group {body['groupId']}")
        if body["authorId"] not in self.users:
            raise Problem(404, "userNotFound", f"No user {body['authorId']}")
        if any(i["groupId"] == body["groupId"] and i["externalPlatform"] == body["externalPlatform"]
               for i in self.integrations.values()):
            raise Problem(400, contract.DUPLICATE_PLATFORM, "An integration with this externalPlatform exists in the group")
        progress = body.get("defaultProgress", 0)
        if not isinstance(progress, int) or not 0 <= progress <= 100:
            raise Problem(400, "invalidInput", "defaultProgress must be an integer within 0..100")
        integration = {"_id": self.new_id("b"), "defaultCompletion": False, "defaultProgress": 0,
                       "noGroupPropagation": False, **body}
        self.integrations[integration["_id"]] = integration
        return integration

    def integration(self, integration_id: str) -> dict[str, Any]:
        if integration_id not in self.integrations:
            raise Problem(404, contract.INTEGRATION_NOT_FOUND, f"No integration {integration_id}")
        return self.integrations[integration_id]

    # -- what tests and demos look at ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything a sync can change, for before/after comparisons."""
        return copy.deepcopy({"integrations": self.integrations, "courses": self.courses,
                              "catalog": self.catalog, "library": self.library, "tags": self.tags,
                              "course_tags": self.course_tags, "attempts": self.attempts})
