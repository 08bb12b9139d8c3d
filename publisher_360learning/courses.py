"""Courses delivered to 360Learning: upserted and archived in bulk calls, and the tags step
merging the provider's skills into course tags (:meth:`CourseDelivery.merge_pending`)."""
from __future__ import annotations

import logging
import weakref

from . import contract
from .bulk import bulk
from .client import Learning360Client
from .errors import PermanentError, TargetConfigError, TransientError
from .items import ExternalCourseSchema, merge_tags, tag_names, to_external_course
from .languages import language_360
from .ledger import DELIVERED, Ledger
from .outcomes import Inbound, Outcome, Verdicts
from .settings import Target

log = logging.getLogger(__package__ + ".delivery")     # the deliverer's log, as before its split
_COURSE_ITEM = ExternalCourseSchema()


class CourseDelivery:
    """Courses and their tags, for the :class:`~.delivery.Deliverer`."""

    def __init__(self, ledger: Ledger, verdicts: Verdicts):
        self.ledger, self.verdicts = ledger, verdicts
        # tag name -> id, per client (so per credential), forgotten with the client
        self._tag_ids: weakref.WeakKeyDictionary[Learning360Client, dict[str, str]] = weakref.WeakKeyDictionary()

    def deliver(self, client: Learning360Client, target: Target, integration_id: str, items: list[Inbound],
                 out: Outcome, done: set[int]) -> None:
        latest: dict[str, Inbound] = {}
        for item in items:  # one course's events share a partition: the last one read is the newest
            if item.data["external_id"] in latest:
                self.verdicts.done(latest[item.data["external_id"]], "superseded", out, done)
            latest[item.data["external_id"]] = item
        upserts, archives = [], []
        for item in latest.values():
            record = item.record()
            if self.ledger.already_delivered(record):
                self.verdicts.done(item, "unchanged", out, done)
            elif record.kind == "course":
                body = to_external_course(item.data, default_lang=target.default_language)
                if language_360(item.data.get("language")) is None:
                    log.warning("connection %s: course %s: 360Learning offers no language for %r; delivered in "
                                "the target's default_language %s", record.connection, record.course,
                                item.data.get("language"), target.default_language)
                    out.counts["course_language_defaulted"] += 1
                errors = _COURSE_ITEM.validate(body)
                if errors:
                    self.verdicts.reject(item, "invalid_for_360learning", errors, out, done)
                else:
                    upserts.append((item, record, body))
            elif self.course_id(client, integration_id, record.course) is None:
                self.ledger.mark([(record, DELIVERED, None, None, "never reached 360Learning: nothing to archive", None)])
                self.verdicts.done(item, "delivered", out, done)
            else:
                archives.append((item, record, {"externalId": record.course}))
        path = contract.BULK_COURSES.format(integration_id=integration_id)
        created = bulk(self.ledger, self.verdicts, client, "PUT", path, upserts, contract.MAX_UPSERT_ITEMS, out, done,
                             then=lambda item, record, course_id: self.ledger.tags_to_merge(
                                 course_id, record.connection, tag_names(item.data), tenant=record.tenant))
        self.ledger.remember_courses(integration_id, [(rec.course, rid) for _i, rec, rid in created])
        bulk(self.ledger, self.verdicts, client, "DELETE", path, archives, contract.MAX_ARCHIVE_ITEMS, out, done)

    def course_id(self, client: Learning360Client, integration_id: str, external_id: str) -> str | None:
        course_id = self.ledger.course_id(integration_id, external_id)
        if course_id is None:
            found = client.external_course(integration_id, external_id)
            if found and found.get("courseId"):
                course_id = found["courseId"]
                self.ledger.remember_courses(integration_id, [(external_id, course_id)])
        return course_id

    def merge_pending(self, client: Learning360Client, connection: str, pending: dict[str, list[str]],
                      out: Outcome) -> None:
        """The tags step: merge the provider tags of every course of ``connection`` still pending.

        A transient failure leaves the rest pending (``out.tags_pending``: the caller runs the
        step again later); a refusal (a course gone, a tag deleted twice over) is logged and
        clears that course: its next change tries again."""
        for course_id, names in pending.items():
            try:
                self.merge_tags(client, course_id, names)
            except TargetConfigError as exc:   # e.g. a credential without tags:write: the courses are in
                log.error("connection %s: tags cannot be merged (%s); they stay pending and are tried again "
                          "later", connection, exc)
                out.tags_pending = True
                return
            except PermanentError as exc:
                log.warning("tags of course %s not merged: %s", course_id, exc)
                self.ledger.tags_merged(course_id, self.ledger.provider_tags(course_id))
            except TransientError as exc:
                log.warning("connection %s: tags of %d courses not merged yet (%s); trying again later",
                            connection, len(pending), exc)
                out.tags_pending = True
                return
            else:
                out.counts["tags_merged"] += 1

    def merge_tags(self, client: Learning360Client, course_id: str, names: list[str]) -> None:
        for attempt in (1, 2):
            try:
                return self._merge_tags_once(client, course_id, names)
            except PermanentError as exc:
                if exc.code == "tagNotFound" and attempt == 1 and not isinstance(exc, TargetConfigError):
                    self._tag_ids.pop(client, None)  # our cache is stale
                    continue
                raise

    def _merge_tags_once(self, client: Learning360Client, course_id: str, names: list[str]) -> None:
        """Add the provider's tags, drop the ones it added before and no longer lists, keep the rest.

        ``PUT …/tags`` replaces every tag and 360Learning offers no conditional write: the tags
        are read again just before the write, and the merge redone if an admin changed them
        meanwhile (the window left is one request long)."""
        added_before = self.ledger.provider_tags(course_id)
        if not names and not added_before:
            self.ledger.tags_merged(course_id, ())
            return
        wanted = {self._tag_id(client, name) for name in names}
        current = client.course_tags(course_id)
        for _ in range(3):
            merged = merge_tags(current, added_before, wanted)[:contract.MAX_TAGS_PER_COURSE]
            if merged == current:
                break
            again = client.course_tags(course_id)
            if again == current:
                client.set_course_tags(course_id, merged)
                break
            current = again
        # a tag someone put on the course before the provider listed it stays theirs
        self.ledger.tags_merged(course_id, (added_before & wanted) | (wanted - set(current)))

    def _tag_id(self, client: Learning360Client, name: str) -> str:
        ids = self._tag_ids.setdefault(client, {})
        if name.casefold() not in ids:
            ids.update({t["name"].casefold(): t["_id"] for t in client.tags()})
        if name.casefold() not in ids:
            try:
                ids[name.casefold()] = client.create_tag(name)["_id"]
            except PermanentError as exc:
                if exc.code != contract.TAG_NAME_TAKEN:
                    raise
                ids.update({t["name"].casefold(): t["_id"] for t in client.tags()})
        return ids[name.casefold()]
