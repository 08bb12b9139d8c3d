"""The control plane: what the admin API and the ``connections`` / ``deadletters`` commands do.

Kafka Connect's herder in small: every change is a document written to the control topic
(:mod:`hostspec.config.control_topic`), checked first against the event schema, the provider's
settings schema, the deployment's :class:`~hostspec.config.policy.SettingsPolicy` and the publisher's
target check, and acknowledged only once the broker stored it. Sync requests, runs and dead
letters go through the same Kafka topics the CLI uses.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

from marshmallow import ValidationError

from hostspec.config import documents as docs
from hostspec import events as ev
from hostspec.control import checks, redrive
from hostspec.control.delivery import DeliveryBoard, verdict
from hostspec.control.index import FleetIndex, IndexFeeder, Page
from hostspec.requests import SyncRequest
from hostspec.errors import ConfigError, DeliveryError, HostError, InvalidRequestError, RevisionConflict, SettingsRefused
from hostspec.engine.plugins import HostPluginManager
from hostspec.config.policy import SettingsPolicy
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import ConnectionLog, ConnectionWriter
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.follower import Follower
from hostspec.transport.producers import KafkaSink, make_producer

MAX_LISTED = 1000


class NotFound(ConfigError):
    """No such connection (a command line's mistake: exit 2; HTTP 404)."""

    kind = "not_found"


Conflict = RevisionConflict
"""The connection exists, or is not at the revision the change expects (HTTP 409)."""


class NotReadBack(HostError):
    """Kafka stored the change but this process has not read it back in time (HTTP 503): the
    next read shows it; a client should GET before writing again."""

    kind = "transport"


@dataclass(frozen=True)
class Change:
    doc: dict[str, Any]
    created: bool
    warnings: tuple[str, ...] = ()     # advice on the stored document (:func:`checks.creation_warnings`)


class ControlPlane:
    def __init__(self, plugins: HostPluginManager, kafka: KafkaConfig, topics: Topics, policy: SettingsPolicy,
                 *, log: ConnectionLog, writer: ConnectionWriter,
                 target_check: docs.TargetCheck | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.plugins, self.kafka, self.topics, self.policy = plugins, kafka, topics, policy
        self.log, self.writer, self.target_check, self.clock = log, writer, target_check, clock
        self._lock = threading.Lock()      # one write at a time here: revisions follow each other
        self._sink: KafkaSink | None = None
        self._sink_lock = threading.Lock()
        self.index = FleetIndex()          # runs, requests, dead letters: what the read paths answer from
        self._feeder: IndexFeeder | None = None
        self._feeder_lock = threading.Lock()
        self._redrive_lock = threading.Lock()
        self.delivery: DeliveryBoard | None = None    # fed by a DeliveryFollower where the API runs

    PUBLISH_TIMEOUT_S = 10.0     # a sync request or a re-drive acknowledged within this, or HTTP 503

    def _publish(self, events: list[ev.Event], raw: list[tuple[str, bytes]] = ()) -> None:
        """Requests and statuses, through one long-lived producer (not one per call), all
        acknowledged within :attr:`PUBLISH_TIMEOUT_S` or a :class:`DeliveryError` (HTTP 503).

        Whatever the Kafka client raises becomes a :class:`DeliveryError` (a bug of the client
        too: the caller cannot know whether the broker stored anything) and the producer is
        dropped: the next call starts a fresh one."""
        deadline = time.monotonic() + self.PUBLISH_TIMEOUT_S
        with self._sink_lock:
            try:
                if self._sink is None:
                    self._sink = KafkaSink(make_producer(self.kafka, linger_ms=0,
                                                         max_block_ms=int(self.PUBLISH_TIMEOUT_S * 1000)),
                                           self.topics.for_type)
                for key, value in raw:
                    self._sink.send_raw(self.topics.requests, key, value)
                for event in events:
                    self._sink.emit(event)
                self._sink.flush(max(deadline - time.monotonic(), 0.1))
            except Exception as exc:  # noqa: BLE001 - the broker away or refusing, or the client's own failure
                self._drop_sink()
                if isinstance(exc, DeliveryError):
                    raise
                raise DeliveryError(f"not acknowledged within {self.PUBLISH_TIMEOUT_S:.0f}s: "
                                    f"{type(exc).__name__}: {exc}") from None

    def _drop_sink(self) -> None:
        """Call holding ``_sink_lock``."""
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                sink.close(timeout_s=2)
            except Exception:  # noqa: BLE001 - a producer that failed may fail to close too
                pass

    def close(self) -> None:
        with self._feeder_lock:
            if self._feeder is not None:
                self._feeder.close()
                self._feeder = None
        self.log.close()
        self.writer.close()
        with self._sink_lock:
            if self._sink is not None:
                self._sink.close()
                self._sink = None

    # -- connections ---------------------------------------------------------------------------
    def connections(self) -> list[dict[str, Any]]:
        return [self.listed(d) for _n, d in sorted(self.log.documents().items())]

    def connection(self, name: str) -> dict[str, Any]:
        doc = self.log.document(name)
        if doc is None or doc.get("deleted"):
            raise NotFound(f"no connection {name!r}")
        return doc

    def tenant_of(self, name: str) -> str | None:
        """The tenant of the live connection ``name`` (None: there is none)."""
        doc = self.log.document(name)
        return None if doc is None or doc.get("deleted") else doc.get("tenant")

    def history(self, name: str) -> dict[str, Any]:
        """The latest document of ``name``, live or deleted (a tombstone names its tenant): whose
        history the name's runs and dead letters are. :raise NotFound: never a connection."""
        doc = self.log.document(name)
        if doc is None:
            raise NotFound(f"no connection {name!r}")
        return doc

    def connection_deleted(self, name: str | None, tenant: str | None) -> bool:
        """Whether what ``name`` of ``tenant`` did belongs to a connection no longer live (deleted,
        or its name now another tenant's)."""
        doc = self.log.document(name) if name else None
        return doc is None or bool(doc.get("deleted")) or (tenant is not None and doc.get("tenant") != tenant)

    def validate(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The document ``body`` would store, checked but not stored. :raise SettingsRefused:"""
        doc = self._document(name, body, revision=1, actor="validate")
        docs.check(doc, self.plugins, self.policy, self.target_check)
        return doc

    def put(self, name: str, body: Mapping[str, Any], *, actor: str, create_only: bool = False,
            expected_revision: int | None = None) -> Change:
        """Create or replace connection ``name`` with ``body`` (a connection's fields, without
        ``connection``, ``revision``, ``changed_by``, ``changed_at``).

        :raise SettingsRefused: the document would not work or breaks the policy (nothing stored).
        :raise Conflict: ``create_only`` and it exists, or its revision is not ``expected_revision``.
        :raise DeliveryError: the broker did not store it.
        """
        for attempt in range(3):
            with self._lock:
                current = self._latest(name, expected_revision)
                live = current is not None and not current.get("deleted")
                if create_only and live:
                    raise Conflict(f"connection {name!r} exists (revision {current['revision']}); replace it with PUT")
                self._expect(name, current if live else None, expected_revision)
                based_on = current["revision"] if current else 0
                doc = self._document(name, body, revision=based_on + 1, actor=actor)
                # a new life (created, or created again after a deletion) gets a state of its own;
                # a change keeps the life's creation (absent on a document older than the field)
                doc["created_revision"] = current.get("created_revision") if live else doc["revision"]
                docs.check(doc, self.plugins, self.policy, self.target_check)
                try:
                    self._write(doc, based_on)
                except RevisionConflict:
                    if expected_revision is not None or create_only or attempt == 2:
                        raise    # the caller asked for that revision: another writer's change stands
                    continue     # last writer wins: computed again on the revision that is now latest
                return Change(doc, created=not live, warnings=tuple(
                    checks.creation_warnings(doc, target_checked=self.target_check is not None)))
        raise AssertionError("unreachable")

    def set_paused(self, name: str, paused: bool, *, actor: str) -> dict[str, Any]:
        with self._lock:
            doc = dict(self.connection(name))
            if doc.get("paused") == paused:
                return doc
            based_on = doc["revision"]
            doc.update(revision=based_on + 1, paused=paused, changed_by=actor, changed_at=ev.isoformat(self.clock()))
            self._write(doc, based_on)
            return doc

    def delete(self, name: str, *, actor: str, expected_revision: int | None = None) -> dict[str, Any]:
        with self._lock:
            self._latest(name, expected_revision)
            current = self.connection(name)
            self._expect(name, current, expected_revision)
            doc = docs.tombstone(name, revision=current["revision"] + 1, changed_by=actor, now=self.clock(),
                                 tenant=current.get("tenant"))
            self._write(doc, current["revision"])
            return doc

    def _write(self, doc: dict[str, Any], based_on: int) -> None:
        """Store ``doc`` if the connection is still at revision ``based_on`` (0: absent) as the
        writer sees it, with every other writer fenced off (:class:`ConnectionWriter`)."""
        partition, offset = self.writer.write(doc, self.clock(), based_on=based_on)
        if not self.log.wait_for(partition, offset, timeout_s=30):   # read-your-writes for the next call
            raise NotReadBack(f"connection {doc['connection']!r} revision {doc['revision']} was stored by Kafka "
                              f"but not read back within 30 s: GET it before changing it again")

    def _latest(self, name: str, expected: int | None) -> dict[str, Any] | None:
        """The latest document of ``name`` this process has read; read up to the topic's end
        first when it is not at the ``expected`` revision: the client may have it from another
        API process that wrote it a moment ago (not a conflict)."""
        current = self.log.document(name)
        have = current["revision"] if current is not None and not current.get("deleted") else 0
        if expected is not None and have != expected and self.log.catch_up(timeout_s=5):
            current = self.log.document(name)
        return current

    @staticmethod
    def _expect(name: str, current: Mapping[str, Any] | None, expected: int | None) -> None:
        if expected is None:
            return
        have = current["revision"] if current else 0
        if have != expected:
            raise Conflict(f"connection {name!r} is at revision {have}, not {expected}")

    def _document(self, name: str, body: Mapping[str, Any], *, revision: int, actor: str) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ConfigError("the body must be a JSON object")
        extra = set(body) & {"revision", "created_revision", "changed_by", "changed_at", "deleted"}
        if body.get("connection", name) != name:
            extra.add("connection")
        if extra:
            raise SettingsRefused(f"set by the server, not the request: {', '.join(sorted(extra))}",
                                  {k: ["set by the server"] for k in sorted(extra)})
        doc = {"paused": False, "settings": None, "options": None, "schedule": None, "target": None,
               "tenant": None, "provider": None, "group_id": None, **body}
        doc.update(connection=name, revision=revision, deleted=False, changed_by=actor,
                   changed_at=ev.isoformat(self.clock()))
        return doc

    @staticmethod
    def listed(doc: Mapping[str, Any]) -> dict[str, Any]:
        """What ``GET /connections`` shows of a connection (no settings)."""
        return {k: doc[k] for k in ("connection", "provider", "tenant", "group_id", "paused", "revision",
                                    "changed_by", "changed_at")}

    # -- runs ----------------------------------------------------------------------------------
    def request_sync(self, name: str, params: Mapping[str, Any], *, actor: str) -> SyncRequest:
        """Publish a sync request for ``name`` (``params``: scope, mode, dry_run, since, until,
        learners, courses, allow_mass_removal). :raise InvalidRequestError:"""
        doc = self.connection(name)
        data = {**dict(params), "connection": name, "provider": doc["provider"], "requested_by": actor}
        try:
            loaded = ev.DATA_SCHEMAS[ev.SYNC_REQUESTED]().load(data)
        except ValidationError as exc:
            raise InvalidRequestError("invalid sync request", exc.messages) from None
        request = SyncRequest(str(uuid.uuid4()), name, doc["provider"], loaded["scope"], actor, mode=loaded["mode"],
                              dry_run=loaded["dry_run"], allow_mass_removal=loaded["allow_mass_removal"],
                              since=loaded["since"], until=loaded["until"],
                              learners=tuple(loaded["learners"]) if loaded["learners"] else None,
                              courses=tuple(loaded["courses"]) if loaded["courses"] else None)
        event = request.to_event(self.clock())
        self._publish([event])
        self.index.add(event, tenant=doc.get("tenant"))       # read-your-writes: GET /requests/{id} knows it
        return request

    # -- the fleet index -----------------------------------------------------------------------
    def start_index(self, timeout_s: float = 60) -> None:
        """Restore the index from the topics' start and follow them (the API does it at start-up;
        otherwise the first read does). :raise TransportError: a topic does not exist yet."""
        with self._feeder_lock:
            if self._feeder is None:
                self._feeder = IndexFeeder(self.kafka, self.topics, self.index, self.tenant_of).start(timeout_s)

    def _catch_up(self, timeout_s: float = 10) -> None:
        """Before a read: the index holds what the topics held when the call came (within
        ``timeout_s``; past it, or with the broker away, the answer is what the index has)."""
        feeder = self._feeder
        if feeder is not None and feeder.failed is not None:      # its thread ended: restored anew
            with self._feeder_lock:
                if self._feeder is feeder:
                    feeder.close()
                    self._feeder = None
                    self.index = FleetIndex()
            feeder = None
        if feeder is None:
            self.start_index()
        else:
            feeder.catch_up(timeout_s)

    def runs(self, name: str, *, limit: int = 20) -> dict[str, Any]:
        """The connection's latest runs (newest last) and its current phase: those of its tenant
        (or of none: a request refused before its tenant was known), never another tenant's that
        once had the same name. A deleted connection's runs stay readable (``deleted``: true)."""
        doc = self.history(name)
        self._catch_up()
        tenant = doc.get("tenant")
        recent = self.index.runs(lambda r: r.get("connection") == name and r.get("tenant") in (tenant, None))[-limit:]
        return {"connection": name, "revision": doc["revision"], "paused": bool(doc.get("paused")),
                "deleted": bool(doc.get("deleted")), "phase": recent[-1]["phase"] if recent else None, "runs": recent}

    def run_page(self, which: Callable[[Mapping[str, Any]], bool], *, limit: int = 100,
                 cursor: str | None = None) -> Page:
        """Runs of every connection ``which`` selects, newest first. :raise BadCursor:"""
        self._catch_up()
        return self.index.run_page(which, limit=limit, cursor=cursor)

    def dead_letter_page(self, which: redrive.Filter, *, redriven: bool | None = None, limit: int = 100,
                         cursor: str | None = None) -> Page:
        """Dead letters of every connection ``which`` selects, newest first. :raise BadCursor:"""
        self._catch_up()
        return self.index.dead_letter_page(which, redriven=redriven, limit=limit, cursor=cursor)

    def request(self, request_id: str) -> dict[str, Any] | None:
        """A request, its latest status, the run it merged into and its dead letters (None: unknown)."""
        self._catch_up()
        return self.index.request(request_id)

    # -- delivery and checks -------------------------------------------------------------------
    def delivery_health(self, name: str, runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What became of ``name``'s records after its runs (:mod:`hostspec.control.delivery`),
        with a ``verdict`` joining it with ``runs`` when given. :raise NotReadBack: not known yet."""
        doc = self.connection(name)
        if self.delivery is None or not self.delivery.ready:
            raise NotReadBack("the delivery outcomes are not read yet (the dead-letter, parked and ledger topics): "
                              "ask again in a moment")
        health = self.delivery.health(name, doc["tenant"])
        if runs is not None:
            health["verdict"] = verdict(health, runs)
        return health

    def check(self, name: str) -> dict[str, Any]:
        """Run ``name``'s credentials check (:func:`checks.run_check`), with its warnings."""
        doc = self.connection(name)
        result = checks.run_check(name, lambda: self.log.store().get(name, self.plugins), self.plugins,
                                  clock=self.clock)
        result["warnings"] = checks.creation_warnings(doc, target_checked=self.target_check is not None)
        return result

    # -- dead letters --------------------------------------------------------------------------
    def dead_letters(self, which: redrive.Filter, *, limit: int = 100) -> list[redrive.DeadLetter]:
        """The latest ``limit`` dead letters ``which`` selects, oldest first."""
        self._catch_up()
        return self.index.dead_letters(which)[-min(limit, MAX_LISTED):]

    def read_dead_letters(self, which: redrive.Filter, *, limit: int = 100,
                          timeout_s: float = 30) -> list[redrive.DeadLetter]:
        """Like :meth:`dead_letters`, but each whole (its record too), read from the topic's start:
        what a one-shot command (``connector-host deadletters list|show``) does, not the API."""
        out: list[redrive.DeadLetter] = []
        for msg, event in self._read(self.topics.dead_letter, ev.RECORD_REJECTED, timeout_s):
            dl = redrive.dead_letter(event, msg.partition, msg.offset)
            if which(dl):
                out.append(dl)
        return sorted(out, key=lambda d: d.time)[-min(limit, MAX_LISTED):]

    def redrive(self, which: redrive.Filter, *, actor: str, limit: int = MAX_LISTED,
                force: bool = False) -> redrive.Redrive:
        """Re-drive the dead letters ``which`` selects; one already re-driven publishes nothing
        again (``already_redriven``) unless ``force``. One re-drive at a time in this process, and
        the index shows it before this returns."""
        with self._redrive_lock:
            self._catch_up()
            letters, already = [], {}
            for dl in self.index.dead_letters(which):
                mark = None if force else self.index.redriven(dl.id)
                if mark is None:
                    letters.append(dl)
                else:
                    already[dl.id] = mark
            providers = {n: d["provider"] for n, d in self.log.documents().items()}
            plan = redrive.plan(letters[-min(limit, MAX_LISTED):], actor=actor, now=self.clock(), providers=providers)
            if plan.requests or plan.raw_requests:
                self._publish(plan.requests + plan.statuses, plan.raw_requests)   # one flush: all acknowledged, or an error
                tenants = {dl.connection: dl.data.get("tenant") for dl in letters}
                for event in plan.requests + plan.statuses:     # read-your-writes: marked before the answer
                    self.index.add(event, tenant=tenants.get(event.data.get("connection")))
            return replace(plan, already_redriven=already)

    def _read(self, topic: str, type_: str, timeout_s: float) -> Iterator[tuple[InboundMessage, ev.Event]]:
        """Every valid event of ``type_`` on ``topic``, from its start to its current end."""
        follower = Follower(self.kafka, topic, from_start=True)
        try:
            for msg in follower.to_end(timeout_s=timeout_s):
                try:
                    event = ev.parse_event(msg.value or b"", expected_type=type_)
                except (ValidationError, RecursionError, ValueError):   # not ours to read: skipped
                    continue
                yield msg, event
        finally:
            follower.close()


__all__ = ["Change", "Conflict", "ControlPlane", "NotFound", "NotReadBack"]
