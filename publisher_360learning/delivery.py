"""One batch of events delivered to 360Learning.

For each connection in the batch: find or create its integration in the synchronized group,
upsert changed courses and archive removed ones in bulk calls (at most 10,000 and 1,000 items),
merge the provider's skills into course tags, then import changed statistics (10,000 per call,
``forceNew: false``) for learners found by e-mail. Every item ends in exactly one place:

* delivered — 360Learning answered success (ledger: ``delivered``);
* unchanged — the ledger shows the same content delivered before: nothing sent;
* dead letter — invalid for 360Learning or refused by it (``learning.record.rejected.v1``,
  stage ``delivery``), with the API's message;
* parked — the learner (or the course) does not exist in 360Learning yet
  (``learning.learner_stat.parked.v1``), tried again on later runs, dead-lettered after
  ``max_park_days``.

Each connection (company) is delivered on its own: :meth:`Deliverer.deliver_connection` raises
:class:`TransientError` (429, 503, 5xx, network, an operation ending in error, the bulk API
disabled) after the client's retries, and the caller (the service's lane of that connection)
keeps those items and tries again with its own backoff; nothing is acknowledged before its
outcome is known. :meth:`Deliverer.deliver` does the same for a mixed batch: one connection's
trouble is returned in ``Outcome.retry`` and costs no other connection anything.

Newest content wins: of two stats of one attempt (``course/learner/attempt``), in one batch or
across batches, topics, parks and instances, the one with the larger :func:`.items.recency` is
kept, and one older than what 360Learning already holds (the ledger's delivered recency) is
dropped as superseded.

Tags are a step of their own: a delivered course leaves its provider tags *pending* in the
ledger; the step merges every pending course of the connection and clears it, so a failure or a
crash in between is made good by the next pass, not lost.

Path sessions: before the first import of an attempt, the learner's attempts in 360Learning are
read back (``GET /api/v2/courses/stats``, one call per course and 50 learners); when one is open,
the import's first activity moves back to its start so that 360Learning updates that attempt
(started inside a path session, maybe) instead of creating a new one.
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from hostspec import events as ev
from hostspec.ops import metrics
from hostspec.credentials import CredentialKey, credential_key
from hostspec.errors import SecretUnavailable
from hostspec.ops.logs import log_context

from . import contract
from .client import Learning360Client
from .errors import PermanentError, TargetConfigError, TransientError
from .items import (
    BulkStatItemSchema,
    ExternalCourseSchema,
    NotConvertible,
    learner_mail,
    merge_tags,
    open_attempt_of,
    recency,
    tag_names,
    to_bulk_stat,
    to_external_course,
)
from .languages import language_360
from .ledger import DELIVERED, FAILED, PARKED, SENT, Ledger, Record
from .ownership import Fence
from .results import UnpairedResults, pair_results
from .settings import Target

log = logging.getLogger(__name__)
SOURCE = "/publisher-360learning"
_COURSE_ITEM, _STAT_ITEM = ExternalCourseSchema(), BulkStatItemSchema()


@dataclass
class Inbound:
    """An event to deliver, where it came from, and its parking history if it comes back parked."""

    event: ev.Event
    origin: tuple[str, int, int] | None = None
    parked: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        return self.event.data

    def record(self) -> Record:
        d = self.data
        kind = {ev.COURSE_UPSERTED: "course", ev.COURSE_REMOVED: "removal"}.get(self.event.type, "stat")
        course = d["course_external_id"] if kind == "stat" else d["external_id"]
        learner = d["learner"]["provider_id"] if kind == "stat" else None
        fingerprint = d.get("fingerprint") or ("removed" if kind == "removal" else None)
        if kind != "stat":
            return Record(kind, d["connection"], course, learner, self.event.id, fingerprint, tenant=d.get("tenant"))
        return Record(kind, d["connection"], course, learner, self.event.id, fingerprint,
                      attempt=d.get("attempt_id"), recency=recency(d), tenant=d.get("tenant"))


@dataclass
class Outcome:
    dead: list[ev.Event] = field(default_factory=list)
    parked: list[ev.Event] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    # connection -> (its items, the error): not delivered yet, to try again later (``deliver``)
    retry: dict[str, tuple[list["Inbound"], Exception]] = field(default_factory=dict)
    tags_pending: bool = False      # some tags could not be merged yet: run the tags step again later

    def add(self, other: "Outcome") -> None:
        self.dead.extend(other.dead)
        self.parked.extend(other.parked)
        self.counts.update(other.counts)
        self.retry.update(other.retry)
        self.tags_pending = self.tags_pending or other.tags_pending


class Deliverer:
    def __init__(self, targets: dict[str, Target], ledger: Ledger, *, max_park_days: float = 30,
                 verify_integration_s: float = 600,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 client_factory: Callable[[Target], Learning360Client] | None = None):
        self.targets, self.ledger = targets, ledger
        self.max_park = timedelta(days=max_park_days)
        self.verify_integration_s = verify_integration_s
        self._verified: dict[tuple[str, str, str], float] = {}
        self._now = now
        self._factory = client_factory or client_for_target
        self._clients: dict[CredentialKey, Learning360Client] = {}
        self._used: dict[str, CredentialKey] = {}        # connection -> the credential its client has
        # tag name -> id, per client (so per credential), forgotten with the client
        self._tag_ids: weakref.WeakKeyDictionary[Learning360Client, dict[str, str]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()    # lanes deliver from several threads

    def credential(self, target: Target) -> CredentialKey:
        """The whole identity of the target's credential: host, client id and a keyed digest of
        its secret (:mod:`hostspec.credentials`). :raise TargetConfigError: the secret cannot be read."""
        try:
            secret = target.client_secret.reveal()
        except SecretUnavailable as exc:
            raise TargetConfigError(f"the 360Learning client secret cannot be read: {exc}") from None
        return credential_key(target.base_url, target.client_id, secret=secret)

    def client(self, target: Target) -> Learning360Client:
        """The company's client, one per whole credential (host, client id *and* secret): the
        connections and threads holding the same credential share its rate limits and bulk slots;
        a connection naming the same client id with another secret gets a client of its own, so
        a wrong secret meets its own 401 and never rides on a neighbour's token.
        :raise TargetConfigError: the secret cannot be read."""
        key = self.credential(target)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._factory(target)
            before = self._used.get(target.connection)
            self._used[target.connection] = key
            if before is not None and before != key:      # its secret was rotated: the old client may go
                self._drop_unused({before})
            return self._clients[key]

    def set_targets(self, targets: dict[str, Target]) -> None:
        """New targets (the file changed): a connection whose settings changed gets a new client
        at its next delivery; clients no connection uses any more are closed."""
        before = self.targets
        self.targets = targets
        changed = {name for name, t in before.items() if targets.get(name) != t}
        with self._lock:
            self._drop_unused({self._used.pop(name) for name in changed if name in self._used})

    def _drop_unused(self, keys: set[CredentialKey]) -> None:
        """Close the clients of ``keys`` that no connection uses any more (hold ``_lock``)."""
        for key in keys - set(self._used.values()):
            client = self._clients.pop(key, None)
            if client is not None:
                client.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    # -- a batch --------------------------------------------------------------------------------------
    def deliver(self, inbound: Iterable[Inbound]) -> Outcome:
        """Deliver a mixed batch, connection by connection; a connection's transient trouble is
        returned in ``Outcome.retry`` (its items untouched), never raised."""
        out = Outcome()
        groups: dict[str, list[Inbound]] = {}
        for item in inbound:
            groups.setdefault(item.data["connection"], []).append(item)
        for connection, items in groups.items():
            try:
                out.add(self.deliver_connection(connection, items))
            except TransientError as exc:
                out.retry[connection] = (items, exc)
        return out

    def deliver_connection(self, connection: str, items: list[Inbound], *, settle: bool = False,
                           fence: Fence | None = None) -> Outcome:
        """Deliver one connection's events (and its pending tags), or raise :class:`TransientError`
        with nothing acknowledged: the caller keeps ``items`` and tries again later.

        :param settle: first wait until the company has no bulk operation still unfinished in
            360Learning (the first delivery after a take-over: an operation the previous owner
            submitted may still run, and must not land after newer content).
        :param fence: every write to 360Learning passes it first (:mod:`.ownership`): raises
            :class:`.ownership.LaneRevoked` once the events' partitions are no longer ours."""
        out = Outcome()
        if settle and connection in self.targets:
            try:
                self.settle(self.client(self.targets[connection]), connection)
            except TargetConfigError as exc:    # refused credentials: the delivery below ends its items
                log.warning("connection %s: cannot look for unfinished bulk operations: %s", connection, exc)
        if not items:
            self._pending_tags(connection, out, fence)
            return out
        d = items[0].data
        with log_context(tenant=d["tenant"], connection=connection, provider=d["provider"]):
            by_group: dict[tuple[str, str], list[Inbound]] = {}
            for item in items:
                by_group.setdefault((item.data["group_id"], item.data["provider"]), []).append(item)
            for (group_id, provider), group_items in by_group.items():
                self._deliver_connection(connection, group_id, provider, d["tenant"], group_items, out, fence)
            self._pending_tags(connection, out, fence)
        return out

    def _deliver_connection(self, connection: str, group_id: str, provider: str, tenant: str, items: list[Inbound],
                            out: Outcome, fence: Fence | None) -> None:
        target = self.targets.get(connection)
        if target is None:
            done: set[int] = set()
            for item in items:
                self._reject(item, "no_target", f"no 360Learning target for connection {connection!r}", out, done)
            return
        for attempt in (1, 2):
            part, done = Outcome(), set()
            try:
                client = self.client(target).fenced(fence)
                integration_id = self._integration(client, target, connection, group_id, provider, tenant)
                self._courses(client, target, integration_id,
                              [i for i in items if i.event.type != ev.LEARNER_STAT_UPSERTED], part, done)
                self._stats(client, target, integration_id,
                            [i for i in items if i.event.type == ev.LEARNER_STAT_UPSERTED], part, done)
            except TargetConfigError as exc:
                if exc.code == contract.INTEGRATION_NOT_FOUND and attempt == 1:
                    # deleted in 360Learning since we remembered it: start this connection's part again
                    log.warning("connection %s: its integration is gone from 360Learning (deleted, with its "
                                "courses); creating it again. Courses not in this batch come back with the "
                                "next full sync: connector-host replay --connection %s", connection, connection)
                    self.ledger.forget_integration(connection, group_id, target.label(provider), tenant=tenant)
                    continue
                log.error("connection %s: cannot deliver to 360Learning: %s", connection, exc)
                for item in items:
                    if id(item) not in done:
                        self._reject(item, "target_config", str(exc), part, done)
            out.add(part)
            return

    def settle(self, client: Learning360Client, connection: str) -> None:
        """Wait (up to the client's operation timeout) for the company's unfinished operations."""
        deadline = time.monotonic() + client.operation_timeout_s
        waited = False
        while (ops := client.unfinished_operations()):
            if time.monotonic() > deadline:
                raise TransientError(f"{len(ops)} bulk operations of the company still unfinished after "
                                     f"{client.operation_timeout_s:.0f}s")
            if not waited:
                log.info("connection %s: waiting for %d bulk operations submitted before (by a previous owner?) "
                         "to end before delivering", connection, len(ops))
                waited = True
            time.sleep(client.poll_interval_s)

    def _integration(self, client: Learning360Client, target: Target, connection: str, group_id: str,
                     provider: str, tenant: str | None = None) -> str:
        """The integration's id: remembered, checked against 360Learning every ``verify_integration_s``
        (someone may delete it, and its courses with it), found by label, or created."""
        label = target.label(provider)
        key = (connection, group_id, label)
        known = self.ledger.integration(*key)
        if known and time.monotonic() - self._verified.get(key, -1e18) < self.verify_integration_s:
            return known
        found = client.find_integration(group_id, label)
        if known and (found is None or found["_id"] != known):
            log.warning("connection %s: integration %s is gone from 360Learning; what it held is sent again "
                        "as it comes by (a full sync restores everything: connector-host replay --connection %s)",
                        connection, known, connection)
            self.ledger.forget_integration(*key, tenant=tenant)
        if found is None:
            try:
                found = client.create_integration(target.integration_body(group_id, provider))
            except PermanentError as exc:  # a refused integration is the target's settings, whatever the code
                raise TargetConfigError(f"creating integration {label!r} in group {group_id}: {exc}",
                                        status=exc.status, code=exc.code) from None
            log.info("connection %s: created 360Learning integration %s (%r) in group %s",
                     connection, found.get("_id"), label, group_id)
        self.ledger.remember_integration(connection, group_id, label, found["_id"], tenant=tenant)
        self._verified[key] = time.monotonic()
        return found["_id"]

    # -- courses ------------------------------------------------------------------------------------------
    def _courses(self, client: Learning360Client, target: Target, integration_id: str, items: list[Inbound],
                 out: Outcome, done: set[int]) -> None:
        latest: dict[str, Inbound] = {}
        for item in items:  # one course's events share a partition: the last one read is the newest
            if item.data["external_id"] in latest:
                self._done(latest[item.data["external_id"]], "superseded", out, done)
            latest[item.data["external_id"]] = item
        upserts, archives = [], []
        for item in latest.values():
            record = item.record()
            if self.ledger.already_delivered(record):
                self._done(item, "unchanged", out, done)
            elif record.kind == "course":
                body = to_external_course(item.data, default_lang=target.default_language)
                if language_360(item.data.get("language")) is None:
                    log.warning("connection %s: course %s: 360Learning offers no language for %r; delivered in "
                                "the target's default_language %s", record.connection, record.course,
                                item.data.get("language"), target.default_language)
                    out.counts["course_language_defaulted"] += 1
                errors = _COURSE_ITEM.validate(body)
                if errors:
                    self._reject(item, "invalid_for_360learning", errors, out, done)
                else:
                    upserts.append((item, record, body))
            elif self._course_id(client, integration_id, record.course) is None:
                self.ledger.mark([(record, DELIVERED, None, None, "never reached 360Learning: nothing to archive", None)])
                self._done(item, "delivered", out, done)
            else:
                archives.append((item, record, {"externalId": record.course}))
        path = contract.BULK_COURSES.format(integration_id=integration_id)
        created = self._bulk(client, "PUT", path, upserts, contract.MAX_UPSERT_ITEMS, out, done,
                             then=lambda item, record, course_id: self.ledger.tags_to_merge(
                                 course_id, record.connection, tag_names(item.data), tenant=record.tenant))
        self.ledger.remember_courses(integration_id, [(rec.course, rid) for _i, rec, rid in created])
        self._bulk(client, "DELETE", path, archives, contract.MAX_ARCHIVE_ITEMS, out, done)

    def _course_id(self, client: Learning360Client, integration_id: str, external_id: str) -> str | None:
        course_id = self.ledger.course_id(integration_id, external_id)
        if course_id is None:
            found = client.external_course(integration_id, external_id)
            if found and found.get("courseId"):
                course_id = found["courseId"]
                self.ledger.remember_courses(integration_id, [(external_id, course_id)])
        return course_id

    def _pending_tags(self, connection: str, out: Outcome, fence: Fence | None = None) -> None:
        """The tags step: merge the provider tags of every course of ``connection`` still pending.

        A transient failure leaves the rest pending (``out.tags_pending``: the caller runs the
        step again later); a refusal (a course gone, a tag deleted twice over) is logged and
        clears that course: its next change tries again."""
        pending = self.ledger.pending_tags(connection)
        target = self.targets.get(connection)
        if not pending or target is None:
            return
        try:
            client = self.client(target).fenced(fence)
        except TargetConfigError as exc:
            log.error("connection %s: tags cannot be merged (%s); they stay pending", connection, exc)
            out.tags_pending = True
            return
        for course_id, names in pending.items():
            try:
                self._merge_tags(client, course_id, names)
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

    def _merge_tags(self, client: Learning360Client, course_id: str, names: list[str]) -> None:
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

    # -- statistics ----------------------------------------------------------------------------------------
    def _stats(self, client: Learning360Client, target: Target, integration_id: str, items: list[Inbound],
               out: Outcome, done: set[int]) -> None:
        latest: dict[str, tuple[Inbound, Record]] = {}
        for item in items:     # newest content wins, whatever the order items came in
            record = item.record()
            kept = latest.get(record.key)
            if kept is None or (record.recency or "") > (kept[1].recency or ""):
                if kept is not None:
                    self._done(kept[0], "superseded", out, done)
                latest[record.key] = (item, record)
            else:
                self._done(item, "superseded", out, done)
        fresh: list[tuple[Inbound, Record]] = []
        for item, record in latest.values():
            held = self.ledger.delivered_recency(record)
            if held is not None and held >= (record.recency or ""):
                self._done(item, "unchanged" if self.ledger.already_delivered(record) else "superseded", out, done)
            else:
                fresh.append((item, record))
        self._import(client, target, integration_id, fresh, out, done, retry_users=True)

    def _import(self, client: Learning360Client, target: Target, integration_id: str,
                entries: list[tuple[Inbound, Record]], out: Outcome, done: set[int], *, retry_users: bool) -> None:
        if not entries:
            return
        users = self._user_ids(client, target, [learner_mail(i.data) for i, _r in entries])
        courses: dict[str, str | None] = {}
        ready = []
        for item, record in entries:
            mail = learner_mail(item.data)
            if mail is None:
                self._reject(item, "learner_without_email", "the learner has no e-mail address 360Learning could match",
                             out, done)
                continue
            if record.course not in courses:
                courses[record.course] = self._course_id(client, integration_id, record.course)
            if courses[record.course] is None:
                self._park(item, "course_unknown", f"course {record.course} is not in 360Learning yet", out, done)
                continue
            user_id = users.get(mail.casefold())
            if user_id is None:
                self._park(item, "learner_unknown", f"no active 360Learning user with e-mail {mail}", out, done)
                continue
            ready.append((item, record, courses[record.course], user_id))
        attempts = self._open_attempts(client, [(c, u, record) for item, record, c, u in ready
                                                if self.ledger.delivered_recency(record) is None])
        bodies = []
        for item, record, course_id, user_id in ready:
            try:
                body = to_bulk_stat(item.data, open_attempt=attempts.get((course_id, user_id)))
            except NotConvertible as exc:
                self._reject(item, exc.reason, str(exc), out, done)
                continue
            body["userIdentifier"] = {"type": "internalId", "value": user_id}
            errors = _STAT_ITEM.validate(body)
            if errors:
                self._reject(item, "invalid_for_360learning", errors, out, done)
                continue
            bodies.append((item, record, body))
        path = contract.BULK_STATS.format(integration_id=integration_id)
        refused: list[tuple[Inbound, Record]] = []
        self._bulk(client, "POST", path, bodies, contract.MAX_STAT_ITEMS, out, done,
                   refused=refused if retry_users else None)
        if refused:
            # a learner deleted and created again in 360Learning has a new id: look it up afresh, once
            for item, _record in refused:
                self.ledger.forget_user(target.base_url, learner_mail(item.data) or "")
            self._import(client, target, integration_id, refused, out, done, retry_users=False)

    def _open_attempts(self, client: Learning360Client,
                       wanted: list[tuple[str, str, Record]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The open attempt of each (course id, user id) in 360Learning, read back in bulk; an
        attempt that another provider attempt of the learner was delivered to is not theirs to take.

        A refusal (a credential without ``courseStats:read``) costs the path-session continuity,
        not the delivery: it is logged and the imports go as they are."""
        users_of: dict[str, set[str]] = {}
        taken: dict[tuple[str, str], set[str]] = {}
        for course_id, user_id, record in wanted:
            users_of.setdefault(course_id, set()).add(user_id)
            taken.setdefault((course_id, user_id), set()).update(self.ledger.attempts_of_others(record))
        found: dict[tuple[str, str], list[dict[str, Any]]] = {}
        try:
            for course_id, users in users_of.items():
                for attempt in client.course_stats(course_id, sorted(users)):
                    found.setdefault((course_id, str(attempt.get("userId"))), []).append(attempt)
        except PermanentError as exc:
            log.warning("attempts not read back from 360Learning (%s): a course started in a path session "
                        "before the provider reported it may get a second attempt", exc)
            return {}
        return {pair: a for pair, attempts in found.items()
                if (a := open_attempt_of([x for x in attempts if x.get("_id") not in taken.get(pair, ())]))
                is not None}

    def _user_ids(self, client: Learning360Client, target: Target, mails: list[str | None]) -> dict[str, str]:
        """360Learning user ids by e-mail (casefolded): the ledger's, then one lookup for the rest."""
        ids: dict[str, str] = {}
        missing = []
        for mail in {m.casefold(): m for m in mails if m}.values():
            known = self.ledger.user_id(target.base_url, mail)
            if known:
                ids[mail.casefold()] = known
            else:
                missing.append(mail)
        for mail, user in client.users_by_mail(missing).items():
            ids[mail.casefold()] = user["_id"]
            self.ledger.remember_user(target.base_url, mail, user["_id"])
        return ids

    # -- bulk calls ---------------------------------------------------------------------------------------
    def _bulk(self, client: Learning360Client, method: str, path: str,
              entries: list[tuple[Inbound, Record, dict[str, Any]]], size: int, out: Outcome,
              done: set[int], *, then: Callable[[Inbound, Record, str], None] | None = None,
              refused: list[tuple[Inbound, Record]] | None = None) -> list[tuple[Inbound, Record, str]]:
        """Send ``entries`` in chunks of ``size`` (up to three operations at once); returns the
        successes with their resource ids (``then`` runs for each, before the ledger says
        delivered) and dead-letters the items 360Learning refused, or hands them to ``refused``
        when given (to try once more)."""
        if not entries:
            return []
        chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
        for chunk in chunks:
            self.ledger.mark([(rec, SENT, None, None, None, body) for _item, rec, body in chunk])
        with ThreadPoolExecutor(max_workers=min(len(chunks), contract.BULK_CONCURRENCY)) as pool:
            answers = list(pool.map(lambda chunk: client.run_bulk(method, path, [b for _i, _r, b in chunk]), chunks))
        successes = []
        for chunk, (op_id, results) in zip(chunks, answers):
            try:     # by the ``input`` each result echoes: 360Learning documents no order
                results = pair_results([b for _i, _r, b in chunk], results)
            except UnpairedResults as exc:
                raise TransientError(f"bulk operation {op_id}: {exc}") from None
            marks = []
            for (item, record, body), result in zip(chunk, results):
                if result.get("status") == "success":
                    if then is not None:
                        then(item, record, result.get("resourceId"))
                    marks.append((record, DELIVERED, op_id, result.get("resourceId"), None, None))
                    successes.append((item, record, result.get("resourceId")))
                    self._done(item, "delivered", out, done)
                elif refused is not None:
                    refused.append((item, record))
                else:
                    message = str(result.get("errorMessage") or "refused without a message")
                    marks.append((record, FAILED, op_id, None, message, None))
                    self._reject(item, "refused_by_360learning", {"operation": op_id, "message": message}, out, done,
                                 mark=False)
            self.ledger.mark(marks)
        return successes

    # -- outcomes --------------------------------------------------------------------------------------------
    def _done(self, item: Inbound, what: str, out: Outcome, done: set[int], *, unparked: str = "released") -> None:
        kind = item.record().kind
        out.counts[f"{kind}_{what}"] += 1
        metrics.PUBLISHER_RECORDS.labels(item.data.get("connection", "?"), kind, what).inc()
        if item.parked is not None:     # a parked stat leaves the parked topic: counted once, released or expired
            out.counts[f"stat_unparked_{unparked}"] += 1
            metrics.PUBLISHER_RECORDS.labels(item.data.get("connection", "?"), kind, f"unparked_{unparked}").inc()
        if what == "delivered":
            metrics.PUBLISHER_LAST.labels(item.data.get("connection", "?")).set(self._now().timestamp())
        done.add(id(item))

    def rejected(self, item: Inbound, reason: str, errors: Any) -> ev.Event:
        """A dead letter for ``item`` (stage ``delivery``), recorded in the ledger as failed."""
        self.ledger.mark([(item.record(), FAILED, None, None, f"{reason}: {errors}", None)])
        return self._dead_letter(item, reason, errors)

    def _reject(self, item: Inbound, reason: str, errors: Any, out: Outcome, done: set[int], *,
                mark: bool = True, unparked: str = "released") -> None:
        record = item.record()
        if mark:
            self.ledger.mark([(record, FAILED, None, None, f"{reason}: {errors}", None)])
        out.dead.append(self._dead_letter(item, reason, errors))
        log.warning("connection %s: %s %s not delivered: %s: %s", item.data.get("connection"), record.kind,
                    record.key.replace("\x1f", "/"), reason, errors)
        self._done(item, "rejected", out, done, unparked=unparked)

    def _dead_letter(self, item: Inbound, reason: str, errors: Any) -> ev.Event:
        record = item.record()
        d = item.data
        origin = {"topic": item.origin[0], "partition": item.origin[1], "offset": item.origin[2]} if item.origin else None
        data = {"stage": "delivery", "reason": reason, "errors": errors, "record_id": record.key.replace("\x1f", "/"),
                "record": item.event.body, "request_id": None, "run_id": None, "tenant": d.get("tenant"),
                "connection": d.get("connection"), "provider": d.get("provider"), "origin": origin,
                "raw_value": None, "raw_encoding": None}
        return ev.make_event(ev.RECORD_REJECTED, data, key=item.event.key, source=SOURCE,
                             subject=data["record_id"], time=self._now(), id_content=f"{item.event.id}/{reason}")

    def _park(self, item: Inbound, reason: str, detail: str, out: Outcome, done: set[int]) -> None:
        now = self._now()
        previous = item.parked or {}
        first = datetime.fromisoformat(previous["first_parked_at"]) if previous else now
        if now - first > self.max_park:
            self._reject(item, f"{reason}_expired", f"{detail} (parked since {ev.isoformat(first)})", out, done,
                         unparked="expired")
            return
        attempts = int(previous.get("attempts", 0)) + 1
        d = item.data
        data = {"reason": reason, "detail": detail, "attempts": attempts, "first_parked_at": ev.isoformat(first),
                "parked_at": ev.isoformat(now), "tenant": d["tenant"], "connection": d["connection"],
                "provider": d["provider"], "event": item.event.body}
        out.parked.append(ev.make_event(ev.STAT_PARKED, data, key=item.event.key, source=SOURCE,
                                        subject=item.record().key.replace("\x1f", "/"), time=now,
                                        id_content=f"{item.event.id}/{attempts}"))
        self.ledger.mark([(item.record(), PARKED, None, None, f"{reason}: {detail}", None)])
        if not previous:        # counted once when parked, not again at every retry round
            out.counts[f"stat_parked_{reason}"] += 1
            metrics.PUBLISHER_RECORDS.labels(d["connection"], "stat", f"parked_{reason}").inc()
        else:
            out.counts["stat_still_parked"] += 1
        done.add(id(item))


def client_for_target(target: Target) -> Learning360Client:
    """A company's client. Its retries are short (4 attempts, waits up to 10 s): a delivery holds
    one of the publisher's lane threads meanwhile, and the lane has its own longer backoff."""
    return Learning360Client(target.base_url, target.client_id, target.client_secret, max_attempts=4,
                             backoff_initial_s=target.retry_initial_s, backoff_max_s=10.0,
                             poll_interval_s=target.poll_interval_s, operation_timeout_s=900)
