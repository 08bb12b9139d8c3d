"""The 360Learning sandbox's data: one company's groups, users, integrations, courses, tags,
attempts and bulk operations, with the rules the API documents (and marked sandbox choices).

Everything here is plain Python under one lock held by the caller (the server); no HTTP.
"""
from __future__ import annotations

import copy
import itertools
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from .. import contract
from ..items import ArchiveItemSchema, BulkStatItemSchema, ExternalCourseSchema

ROOT_GROUP = "65a000000000000000000000"
SYNC_GROUP = "65a000000000000000000001"
SUB_GROUP = "65a000000000000000000002"
AUTHOR_ID = "65a0000000000000000000a1"
AUTHOR_MAIL = "author@acme.test"
COMPANY_ID = "65a0000000000000000c0001"


class Problem(Exception):
    """An API error answer: status and body (flat ``{"error": code}`` or nested)."""

    def __init__(self, status: int, code: str, message: str | None = None, *, flat: bool = False):
        super().__init__(code)
        self.status = status
        self.body: Any = {"error": code} if flat else {"error": {"code": code, "message": message or code}}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _schema_message(errors: Any, prefix: str = "input") -> str:
    """Readable per-item errors (wording is the sandbox's: the real one is not documented)."""
    if isinstance(errors, dict):
        return "; ".join(_schema_message(v, f"{prefix}.{k}") for k, v in errors.items())
    if isinstance(errors, list):
        return f"{prefix} " + ", ".join(str(e).lower().rstrip(".") for e in errors)
    return f"{prefix} {errors}"


def _item_key(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    ref = item.get("courseIdentifier")
    return item.get("externalId") or (ref.get("value") if isinstance(ref, dict) else None)


@dataclass
class Operation:
    id: str
    type: str
    integration_id: str
    items: list[Any]
    created_at: float
    status: str = "pending"
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    index: int = -1
    updated_at: float | None = None
    error_message: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    # fault switches, set when the operation is accepted
    hold_queued_s: float = 0.0
    run_s: float = 0.0
    fail_with: str | None = None
    fail_items: frozenset[str] = frozenset()

    @property
    def terminal(self) -> bool:
        return self.status in contract.OP_TERMINAL

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"_id": self.id, "type": self.type, "status": self.status,
                               "createdAt": iso(self.created_at)}
        if self.queued_at is not None:
            doc["queuedAt"] = iso(self.queued_at)
        if self.started_at is not None:
            doc["startedAt"] = iso(self.started_at)
            doc["progress"] = {"index": max(self.index, 0), "updatedAt": iso(self.updated_at or self.started_at)}
        if self.ended_at is not None:
            doc["endedAt"] = iso(self.ended_at)
        if self.status == "error":
            doc["errorMessage"] = self.error_message
        return doc


class Company:
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

    # -- bulk operations ---------------------------------------------------------------------------
    def running_operations(self) -> int:
        return sum(not op.terminal for op in self.operations.values())

    def submit(self, kind: str, integration_id: str, body: Any, *, hold_queued_s: float = 0.0,
               run_s: float | None = None, fail_with: str | None = None,
               fail_items: Iterable[str] = ()) -> Operation:
        self.integration(integration_id)
        if not isinstance(body, dict) or not isinstance(body.get("input"), list):
            raise Problem(400, "invalidInput", "input must be an array")
        limit = contract.MAX_ARCHIVE_ITEMS if kind == "archive" else contract.MAX_UPSERT_ITEMS
        if len(body["input"]) > limit:
            raise Problem(400, "inputTooLong", f"input must contain no more than {limit} elements")
        if self.running_operations() >= contract.BULK_CONCURRENCY:
            raise Problem(429, contract.BULK_BUSY, "Too many bulk operations are running for this company")
        op = Operation(self.new_id("c"), contract.OP_TYPES[kind], integration_id, list(body["input"]),
                       self.clock(), hold_queued_s=hold_queued_s,
                       run_s=self.stage_s if run_s is None else run_s, fail_with=fail_with,
                       fail_items=frozenset(fail_items))
        self.operations[op.id] = op
        return op

    def advance(self) -> None:
        """Move every operation along its life cycle; operations run in submission order."""
        now = self.clock()
        for op in self.operations.values():
            if op.terminal:
                continue
            if op.status == "pending" and now - op.created_at >= self.stage_s:
                op.status, op.queued_at = "queued", now
            if op.status == "queued" and now - (op.queued_at or now) >= self.stage_s + op.hold_queued_s:
                op.status, op.started_at, op.updated_at = "running", now, now
            if op.status == "running" and now - (op.started_at or now) >= op.run_s:
                self._run(op, now)

    def _run(self, op: Operation, now: float) -> None:
        if op.fail_with:
            op.status, op.ended_at, op.error_message = "error", now, op.fail_with
            return
        apply = {"importExternalCourses": self._upsert, "archiveExternalCourses": self._archive,
                 "importExternalStatistics": self._stat}[op.type]
        integration = self.integrations.get(op.integration_id)
        for i, item in enumerate(op.items):
            try:
                if integration is None:
                    raise Problem(404, contract.INTEGRATION_NOT_FOUND, "the integration was deleted")
                if _item_key(item) in op.fail_items:
                    raise Problem(400, "itemRefused", f"{_item_key(item)} refused (sandbox fault item_error)")
                resource = apply(integration, item, now)
                op.results.append({"input": item, "status": "success", "resourceId": resource})
            except Problem as problem:
                message = problem.body["error"]["message"] if isinstance(problem.body["error"], dict) else str(problem)
                op.results.append({"input": item, "status": "error", "errorMessage": message})
            op.index = i
        if self._results_order is not None:
            self._results_order.shuffle(op.results)
        op.status, op.ended_at, op.updated_at = "completed", now, now

    @staticmethod
    def _validate(schema: Any, item: Any) -> None:
        if not isinstance(item, dict):
            raise Problem(400, "invalidInput", "input item must be an object")
        errors = schema.validate(item)
        if errors:
            raise Problem(400, "invalidInput", _schema_message(errors))

    def _upsert(self, integration: dict[str, Any], item: Any, now: float) -> str:
        self._validate(ExternalCourseSchema(), item)
        key = (integration["_id"], item["externalId"])
        course_id = self.by_external.get(key)
        fields = {"name": item["name"], "description": item.get("description"), "duration": item.get("duration"),
                  "sourceLang": item["defaultLang"], "defaultLang": item["defaultLang"],
                  "authorId": item.get("authorId") or integration["authorId"]}
        if course_id is None:
            course_id = self.new_id("d")
            self.by_external[key] = course_id
            self.courses[course_id] = {"_id": course_id, "type": "external", "status": "published",
                                       "externalPlatform": integration["externalPlatform"],
                                       "groupId": integration["groupId"], "coAuthorIds": [], "translations": [],
                                       "createdAt": iso(now), "modifiedAt": iso(now), **fields}
            self.course_tags[course_id] = []
            for shelf in (self.catalog, self.library):
                shelf.setdefault(integration["groupId"], []).append(course_id)
        elif self.external_fields.get(course_id) != item or self.courses[course_id]["status"] != "published":
            # [sandbox] an identical upsert of a published course changes nothing, not even modifiedAt
            self.courses[course_id].update(fields, status="published", modifiedAt=iso(now))
        self.external_fields[course_id] = dict(item)
        return course_id

    def _archive(self, integration: dict[str, Any], item: Any, now: float) -> str:
        self._validate(ArchiveItemSchema(), item)
        course_id = self.by_external.get((integration["_id"], item["externalId"]))
        if course_id is None:
            raise Problem(404, "courseNotFound", f"No course found for externalId {item['externalId']}")
        if self.courses[course_id]["status"] != "archived":
            self.courses[course_id].update(status="archived", modifiedAt=iso(now))
        return course_id

    def _stat(self, integration: dict[str, Any], item: Any, now: float) -> str:
        self._validate(BulkStatItemSchema(), item)
        course_ref, user_ref = item["courseIdentifier"], item["userIdentifier"]
        course_id = (self.by_external.get((integration["_id"], course_ref["value"]))
                     if course_ref["type"] == "externalId" else course_ref["value"])
        if course_id not in self.courses:
            raise Problem(404, "courseNotFound", f"No course found for {course_ref['type']} {course_ref['value']}")
        user = (self.user_by_mail(user_ref["value"]) if user_ref["type"] == "mail"
                else self.users.get(user_ref["value"]))
        if user is None or user["status"] == "deleted":
            raise Problem(404, "userNotFound", f"No user found for {user_ref['type']} {user_ref['value']}")
        if item["lastActivityAt"] < item["firstActivityAt"]:
            raise Problem(400, "invalidInput", "input.lastActivityAt must not be before input.firstActivityAt")
        return self.record_attempt(course_id, user["_id"], item)

    # -- attempts ----------------------------------------------------------------------------------
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

    # -- tags ----------------------------------------------------------------------------------------
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

    # -- what tests and demos look at ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything a sync can change, for before/after comparisons."""
        return copy.deepcopy({"integrations": self.integrations, "courses": self.courses,
                              "catalog": self.catalog, "library": self.library, "tags": self.tags,
                              "course_tags": self.course_tags, "attempts": self.attempts})
