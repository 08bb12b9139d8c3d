"""The 360Learning sandbox's bulk operations: submitted (with the API's limits), moved along their
life cycle (pending, queued, running, completed or error), and run item by item: external
courses upserted and archived, statistics imported.

:class:`BulkOperations` is mixed into :class:`publisher_360learning.sandbox.store.Company`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from .. import contract
from ..items import ArchiveItemSchema, BulkStatItemSchema, ExternalCourseSchema
from .errors import Problem


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


class BulkOperations:
    """The company's bulk operations (``operations``) and what running them changes."""

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
