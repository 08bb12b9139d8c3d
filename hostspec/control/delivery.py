"""Delivery health per connection: what became of the records a connection's runs emitted.

A run ends ``completed`` once its records are on Kafka; whether a publisher then delivered them
is another story, told by three topics this module follows and sums up per connection
(``GET /connections/{name}/delivery`` and the ``delivery`` object of ``/status``):

* the publisher's ledger journal (``<group>.ledger``, :mod:`hostspec.ledger_records`): each
  item's latest outcome, delivered or failed, and when. *Delivered* counts the items whose latest
  outcome is delivered (an item delivered again counts once), *last delivered at* the newest
  delivery read;
* the dead-letter topic: *dead-lettered* counts the connection's ``delivery`` stage dead letters
  (each event once, as ``GET /connections/{name}/deadletters?stage=delivery`` lists them: those
  the topic's retention keeps, 30 days by default), with their reasons and the newest one's time;
* the parked topic (``learning.learner_stat.parked.v1``): *parked* counts the items whose latest
  parking is newer than their latest outcome (journal or dead letter): still parked now, not
  released and delivered nor expired into a dead letter since. (An item whose earlier content
  was delivered and whose newer one is parked counts in both.)

:class:`DeliveryBoard` is the pure aggregation (facts in, answers out); :class:`DeliveryFollower`
feeds it from the topics in a thread, read once from their start and followed afterwards, so a
call costs a look-up, not a topic read. The board keeps one entry per item (a 64-bit hash of its
record id and a time), two for a stat (its latest end, for the parked join), and one per delivery
dead letter: about 150 bytes a stat (500,000 stats: 74 MB, measured).

:func:`verdict` joins the health with the connection's runs: ``failing`` when dead letters came
after the last delivery (the case of a run ``completed`` while every record was refused).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from kafka import KafkaConsumer, TopicPartition
from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.ledger_records import DELIVERED, DeliveryFact, read_fact
from hostspec.topics import Topics
from hostspec.transport.cloudevents import structured_value
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import kafka_client

log = logging.getLogger(__name__)

Owner = tuple[str | None, str]       # (tenant, connection)
PARKABLE = "stat/"                   # the record ids of learner stats, the only items parked


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else ev.isoformat(datetime.fromtimestamp(epoch, timezone.utc))


@dataclass
class _Connection:
    """One connection's facts (of one tenant): items by the hash of their record id."""

    outcomes: dict[int, float] = field(default_factory=dict)   # latest journal outcome: +at delivered, -at failed
    ended: dict[int, float] = field(default_factory=dict)      # latest end (outcome or dead letter): the parked join
    parked: dict[int, float] = field(default_factory=dict)     # parked, with no end since: parked_at
    dead: set[int] = field(default_factory=set)                # delivery dead letters: their event ids
    reasons: Counter = field(default_factory=Counter)
    delivered: int = 0                       # outcomes > 0, kept as they change (a call costs no loop)
    last_delivered: float | None = None      # the newest delivery ever read (a later refusal does not undo it)
    last_dead: float | None = None

    def outcome(self, item: int, at: float | None) -> None:
        """The item's latest journal outcome (+at delivered, -at failed), or None: withdrawn."""
        before = self.outcomes.pop(item, None)
        if before is not None and before > 0:
            self.delivered -= 1
        if at is None:
            return
        self.outcomes[item] = at
        if at > 0:
            self.delivered += 1
            self.last_delivered = at if self.last_delivered is None else max(self.last_delivered, at)

    def end(self, record_id: str, item: int, at: float) -> None:
        if not record_id.startswith(PARKABLE):      # only stats are ever parked: nothing to join
            return
        if at >= self.ended.get(item, float("-inf")):
            self.ended[item] = at
        parked_at = self.parked.get(item)
        if parked_at is not None and parked_at <= at:
            del self.parked[item]


class DeliveryBoard:
    """The delivery health of every connection, from the facts applied to it (thread-safe)."""

    def __init__(self) -> None:
        self.ready = True        # False while a follower has not yet read its topics to their ends
        self._lock = threading.Lock()
        self._connections: dict[Owner, _Connection] = {}
        self._tenants: dict[str, set[str | None]] = {}     # connection name -> the tenants it has facts of

    def _of(self, owner: Owner) -> _Connection:
        found = self._connections.get(owner)
        if found is None:
            found = self._connections[owner] = _Connection()
            self._tenants.setdefault(owner[1], set()).add(owner[0])
        return found

    # -- facts ---------------------------------------------------------------------------------
    def journal(self, fact: DeliveryFact) -> None:
        """A ledger journal record: the item's latest outcome, or its withdrawal (a tombstone)."""
        item = _hash(fact.record_id)
        parts = fact.record_id.split("/")
        connection = fact.connection or (parts[1] if len(parts) > 1 else None)   # a tombstone names no connection
        with self._lock:
            for tenant in self._tenants.get(connection or "", ()):   # the previous fact is replaced, whoever's
                self._connections[(tenant, connection or "")].outcome(item, None)
            if fact.status is None or fact.connection is None or fact.at is None:
                return
            entry = self._of((fact.tenant, fact.connection))
            entry.outcome(item, fact.at if fact.status == DELIVERED else -fact.at)
            entry.end(fact.record_id, item, fact.at)

    def dead_letter(self, event: ev.Event) -> None:
        """A ``learning.record.rejected.v1`` event (only stage ``delivery`` counts here)."""
        d = event.data
        if d.get("stage") != "delivery" or not d.get("connection"):
            return
        at = _epoch(event.body.get("time")) or 0.0
        with self._lock:
            entry = self._of((d.get("tenant"), d["connection"]))
            key = _hash(event.id)
            if key not in entry.dead:
                entry.reasons[d.get("reason") or "?"] += 1
            entry.dead.add(key)
            entry.last_dead = at if entry.last_dead is None else max(entry.last_dead, at)
            if d.get("record_id"):
                entry.end(d["record_id"], _hash(d["record_id"]), at)

    def parked(self, event: ev.Event) -> None:
        """A ``learning.learner_stat.parked.v1`` event."""
        d = event.data
        subject = event.body.get("subject")
        at = _epoch(d.get("parked_at"))
        if not subject or not d.get("connection") or at is None:
            return
        item = _hash(subject)
        with self._lock:
            entry = self._of((d.get("tenant"), d["connection"]))
            if at > entry.ended.get(item, float("-inf")):
                entry.parked[item] = max(at, entry.parked.get(item, at))

    # -- answers -------------------------------------------------------------------------------
    def health(self, connection: str, tenant: str | None) -> dict[str, Any]:
        """``connection``'s delivery health: its tenant's facts, and those naming no tenant."""
        delivered = dead = parked = 0
        last_delivered = last_dead = None
        reasons: Counter = Counter()
        with self._lock:
            for owner in {(tenant, connection), (None, connection)}:
                entry = self._connections.get(owner)
                if entry is None:
                    continue
                delivered += entry.delivered
                if entry.last_delivered is not None:
                    last_delivered = max(last_delivered or entry.last_delivered, entry.last_delivered)
                dead += len(entry.dead)
                if entry.last_dead is not None:
                    last_dead = max(last_dead or entry.last_dead, entry.last_dead)
                parked += len(entry.parked)
                reasons.update(entry.reasons)
        return {"connection": connection, "delivered": delivered, "dead_lettered": dead, "parked": parked,
                "last_delivered_at": _iso(last_delivered), "last_dead_lettered_at": _iso(last_dead),
                "dead_letter_reasons": dict(sorted(reasons.items()))}


def verdict(health: Mapping[str, Any], runs: Iterable[Mapping[str, Any]] = ()) -> str:
    """One word for an operator, from the delivery ``health`` and the connection's ``runs``:

    * ``failing``: dead letters came after the last delivery (or nothing was ever delivered);
    * ``parked``: items wait to be delivered (their learner or course is not in the target yet);
    * ``delivering``: the last delivery is newer than every dead letter, nothing parked;
    * ``pending``: no outcome yet, though a run emitted records;
    * ``idle``: no outcome and no run that emitted anything.
    """
    last_ok, last_dead = health.get("last_delivered_at"), health.get("last_dead_lettered_at")
    if last_dead is not None and (last_ok is None or last_dead > last_ok):
        return "failing"
    if health.get("parked"):
        return "parked"
    if last_ok is not None:
        return "delivering"
    emitted = any((r.get("counts") or {}).get("courses_emitted", 0) or (r.get("counts") or {}).get("stats_emitted", 0)
                  or (r.get("counts") or {}).get("courses_removed", 0) for r in runs if not r.get("dry_run"))
    return "pending" if emitted else "idle"


class DeliveryFollower:
    """Follows the dead-letter and parked topics and the publishers' ledger journals into a
    :class:`DeliveryBoard`, in a thread (no consumer group: every API process reads everything).

    ``ledgers``: the journal topics (:func:`hostspec.topics.ledger_topic` of each publisher
    group); one that does not exist yet (its publisher never ran) is looked for again every
    ``retry_s`` seconds. *Ready* once each topic found at start was read to the end it had then.
    """

    def __init__(self, kafka: KafkaConfig, topics: Topics, ledgers: Iterable[str], *, board: DeliveryBoard | None = None,
                 retry_s: float = 10.0):
        self.kafka, self.board, self.retry_s = kafka, board or DeliveryBoard(), retry_s
        self.board.ready = False
        self.dead_letter_topic, self.parked_topic = topics.dead_letter, topics.parked
        self.topics = [topics.dead_letter, topics.parked, *dict.fromkeys(ledgers)]
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._stop.is_set()

    def start(self) -> "DeliveryFollower":
        self._thread = threading.Thread(target=self._run, name="delivery-follower", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """One record of ``topic`` onto the board (what does not parse is counted and skipped)."""
        if topic in (self.dead_letter_topic, self.parked_topic):
            type_ = ev.RECORD_REJECTED if topic == self.dead_letter_topic else ev.STAT_PARKED
            try:
                event = ev.parse_event(value or b"", expected_type=type_)
            except (ValidationError, RecursionError, ValueError, TypeError):
                self.skipped += 1
                return
            (self.board.dead_letter if type_ == ev.RECORD_REJECTED else self.board.parked)(event)
            return
        fact = read_fact(key, value)
        if fact is not None:
            self.board.journal(fact)

    def _run(self) -> None:
        consumer = None
        positions: dict[TopicPartition, int] = {}
        ends: dict[TopicPartition, int] | None = None    # the ends at start: read to them, the board is ready
        missing = list(self.topics)
        next_look = quiet_until = 0.0
        clock = time.monotonic
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = kafka_client(self.kafka, KafkaConsumer, group_id=None, enable_auto_commit=False,
                                            isolation_level="read_committed")
                if missing and clock() >= next_look:
                    next_look = clock() + self.retry_s
                    found = [t for t in missing if consumer.partitions_for_topic(t)]
                    if found:
                        added = [TopicPartition(t, p) for t in found for p in sorted(consumer.partitions_for_topic(t))]
                        consumer.assign([*positions, *added])
                        for tp, offset in positions.items():     # assign() forgets where the others were
                            consumer.seek(tp, offset)
                        consumer.seek_to_beginning(*added)
                        first_ends = consumer.end_offsets(added) if ends is None else None
                        for tp in added:
                            positions[tp] = consumer.position(tp)
                        missing = [t for t in missing if t not in found]
                        if first_ends is not None:
                            ends = first_ends
                    elif ends is None and not positions:
                        ends = {}
                batches = consumer.poll(timeout_ms=200) if positions else {}
                if not positions:
                    self._stop.wait(0.2)
                for tp, records in batches.items():
                    for r in records:
                        try:
                            self.apply(tp.topic, r.key, structured_value(r.headers, r.value))
                        except Exception:  # noqa: BLE001 - one record's bug must not stop the follower
                            log.exception("delivery follower: %s[%d] offset %d not applied", tp.topic, tp.partition,
                                          r.offset)
                for tp in positions:
                    positions[tp] = consumer.position(tp)
                if ends is not None and not self._ready.is_set() and all(
                        positions.get(tp, 0) >= end for tp, end in ends.items()):
                    self._ready.set()
                    self.board.ready = True
            except Exception as exc:  # noqa: BLE001 - the broker away: keep what was read, try again
                if self._stop.is_set():
                    break
                if clock() >= quiet_until:       # once a minute while it lasts, not once a second
                    quiet_until = clock() + 60
                    log.warning("delivery follower: topics not readable (%s: %s); the delivery health read stays "
                                "in use", type(exc).__name__, exc)
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()


__all__ = ["DeliveryBoard", "DeliveryFollower", "verdict"]
