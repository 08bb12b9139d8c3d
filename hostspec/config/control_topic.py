"""The control topic: every connection's latest document, read live by each process.

Kafka Connect keeps connector configurations the same way: a compacted topic keyed by name,
read whole at start and followed afterwards by every worker, so a change written once reaches
the fleet without a restart or a file on any host.

* :class:`ConnectionLog` follows the topic in a thread (no consumer group: every process reads
  everything) and hands out :class:`~hostspec.config.connections.ConnectionStore` snapshots, rebuilt
  when a document changes. It is *ready* once it has read to the end the topic had at start.
  A record that is not a valid connection event is logged and skipped: the version before it
  stays in use, exactly as a broken edit of the connections file does.
* :class:`ConnectionWriter` writes documents with ``acks=all`` and waits for the broker's
  acknowledgement: a change it returns from is stored, whatever happens to the writer next.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime
from typing import Any, Callable, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from marshmallow import ValidationError

from hostspec.config import documents as docs
from hostspec import events as ev
from hostspec.config.connections import ConnectionStore
from hostspec.errors import DeliveryError, HostError, RevisionConflict, TransportError
from hostspec.config.policy import SettingsPolicy
from hostspec.ops import metrics
from hostspec.topics import Topics
from hostspec.transport.admin import await_topics, ensure_topics
from hostspec.transport.cloudevents import STRUCTURED, structured_value
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.kafka import kafka_client
from hostspec.transport.liveness import broker_answering
from hostspec.transport.producers import make_producer

log = logging.getLogger(__name__)


class Documents:
    """The latest document of every connection (deleted ones too: a revision continues after a
    delete), and the :class:`ConnectionStore` of the live ones, rebuilt when one changes."""

    def __init__(self, source: str, policy: SettingsPolicy | None):
        self.source, self.policy = source, policy
        self._docs: dict[str, dict[str, Any]] = {}
        self._where: dict[str, tuple[int, int]] = {}      # name -> partition and offset of its document
        # event id -> where it lies and what it holds, for the latest RECENT_IDS records read: a writer
        # whose commit timed out finds its own record there however many changes followed it
        # (ConnectionWriter). The id alone is not enough: it names the connection and revision, which
        # another writer's record for the same revision shares.
        self._ids: collections.OrderedDict[str, tuple[tuple[int, int], dict[str, Any]]] = collections.OrderedDict()
        self._store: ConnectionStore | None = None
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self.version = 0        # moves on every change of a document

    def _changed(self) -> None:
        """Call holding ``_cond``."""
        self._store = None
        self.version += 1
        self._cond.notify_all()

    def store(self) -> ConnectionStore:
        """The live connections (the snapshot stays the same object until a document changes)."""
        if not self._ready.is_set():
            raise HostError(f"{self.source} not read yet")
        with self._cond:
            if self._store is None:
                self._store = docs.store(self._docs, source=self.source, policy=self.policy)
            return self._store

    RECENT_IDS = 1_000

    def _remember(self, event_id: str, where: tuple[int, int], doc: dict[str, Any]) -> None:
        """Note where record ``event_id`` lies and what it holds (called with ``_cond`` held)."""
        self._ids[event_id] = (where, doc)
        while len(self._ids) > self.RECENT_IDS:
            self._ids.popitem(last=False)

    def where_stored(self, event_id: str, doc: Mapping[str, Any]) -> tuple[int, int] | None:
        """Where the record with event id ``event_id`` holding exactly ``doc`` lies, if it is among
        the latest ones read (None: not read, or that revision holds another writer's document)."""
        with self._cond:
            found = self._ids.get(event_id)
        return found[0] if found is not None and found[1] == doc else None

    def documents(self, *, deleted: bool = False) -> dict[str, dict[str, Any]]:
        with self._cond:
            return {n: dict(d) for n, d in self._docs.items() if deleted or not d.get("deleted")}

    def where(self, name: str) -> tuple[int, int] | None:
        """The partition and offset of the latest document of ``name`` read, or None."""
        with self._cond:
            return self._where.get(name)

    def document(self, name: str) -> dict[str, Any] | None:
        """The latest document of ``name`` (a deleted one too), or None."""
        with self._cond:
            doc = self._docs.get(name)
            return dict(doc) if doc is not None else None


class MemoryControl(Documents):
    """The control topic in memory, log and writer in one: for the embedded default and tests."""

    def __init__(self, policy: SettingsPolicy | None = None):
        super().__init__("control (in memory)", policy)
        self._ready.set()
        self.written: list[dict[str, Any]] = []

    @property
    def ready(self) -> bool:
        return True

    def write(self, doc: Mapping[str, Any], now: datetime, *, based_on: int | None = None,
              timeout_s: float = 30) -> tuple[int, int]:
        docs.event(doc, now)        # the same validation as on the way to Kafka
        with self._cond:
            _check_revision(doc["connection"], self._docs.get(doc["connection"]), based_on)
            self._docs[doc["connection"]] = dict(doc)
            self._where[doc["connection"]] = (0, len(self.written))
            self.written.append(dict(doc))
            self._changed()
            return 0, len(self.written) - 1

    def wait_for(self, partition: int, offset: int, timeout_s: float = 30) -> bool:
        return True

    def catch_up(self, timeout_s: float = 5) -> bool:
        return False

    def close(self) -> None:
        pass


class ConnectionLog(Documents):
    """The latest document of every connection on ``topic``, followed live."""

    def __init__(self, config: KafkaConfig, topic: str, *, policy: SettingsPolicy | None = None,
                 on_change: Callable[[set[str]], None] | None = None):
        super().__init__(f"control topic {topic}", policy)
        self.topic, self._config, self._on_change = topic, config, on_change
        self._positions: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._probe: KafkaConsumer | None = None
        self._probe_lock = threading.Lock()
        self._readable = False          # the last poll of the follower worked
        self.skipped = 0

    # -- life ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, config: KafkaConfig, topics: Topics, *, policy: SettingsPolicy | None = None) -> "ConnectionLog":
        """The host's topics created where missing, then the connections topic read to its end and
        followed (what a worker, the admin commands and a publisher each start with)."""
        ensure_topics(config, topic_specs(topics))
        return cls(config, topics.connections, policy=policy).start()

    ABSENT_WAIT_S = 3.0      # how long a reader that may find no topic waits for one to appear

    def start(self, *, timeout_s: float = 60, absent_ok: bool = False) -> "ConnectionLog":
        """Read the topic to its current end (then follow it in the background).

        ``absent_ok``: a topic that does not exist holds no connection yet (a command that only
        reads, which creates no topic: ``connections list`` on a new cluster lists none, at once)."""
        self.export_gauge()
        consumer = kafka_client(self._config, KafkaConsumer, group_id=None, enable_auto_commit=False,
                           isolation_level="read_committed")
        wait_s = self.ABSENT_WAIT_S if absent_ok else min(timeout_s, 30)
        try:
            if not await_topics(consumer, [self.topic], timeout_s=wait_s, config=self._config)[self.topic]:
                if absent_ok:
                    consumer.close()
                    self._ready.set()
                    return self
                raise TransportError(f"control topic {self.topic} does not exist (any worker or `connector-host api` "
                                     f"creates it)")
        except TransportError:
            consumer.close()
            raise
        tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        self._consumer = consumer
        self._thread = threading.Thread(target=self._follow, args=({tp.partition: ends[tp] for tp in tps},),
                                        name=f"control:{self.topic}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise TransportError(f"control topic {self.topic} not read to its end within {timeout_s:.0f}s")
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._stop.is_set()

    def export_gauge(self) -> None:
        """``connector_control_topic_ok`` from now on, read from :attr:`healthy` when scraped (only
        a process following the control topic has it)."""
        metrics.export(metrics.CONTROL_TOPIC_OK).set_function(lambda: float(self.healthy))  # type: ignore[attr-defined]

    @property
    def healthy(self) -> bool:
        """Read to its end and followed: the last poll worked and, where this process runs a
        broker probe (:mod:`hostspec.transport.liveness`), the broker answers (kafka-python
        reports most outages as empty polls, not as errors)."""
        return self.ready and self._readable and broker_answering() is not False

    def _follow(self, ends: dict[int, int]) -> None:
        assert self._consumer is not None
        while not self._stop.is_set():
            try:
                batches = self._consumer.poll(timeout_ms=200)
                positions = {tp.partition: self._consumer.position(tp) for tp in self._consumer.assignment()}
            except Exception as exc:  # noqa: BLE001 - the broker away: keep the documents read, try again
                if self._stop.is_set():
                    return
                self._readable = False
                log.warning("control topic %s not readable (%s: %s); the connections read stay in use",
                            self.topic, type(exc).__name__, exc)
                self._stop.wait(1.0)
                continue
            changed: set[str] = set()
            for records in batches.values():
                for r in records:
                    try:
                        name = self._apply(r)
                    except Exception:  # noqa: BLE001 - a bug here must not freeze every connection
                        log.exception("control topic %s offset %d not applied", self.topic, r.offset)
                        name = None
                    if name:
                        changed.add(name)
            with self._cond:
                if changed:
                    self._changed()
                self._positions.update(positions)
                if not self._ready.is_set() and all(self._positions.get(p, 0) >= end for p, end in ends.items()):
                    self._ready.set()
                self._readable = True
                self._cond.notify_all()
            if changed and self._on_change is not None and self._ready.is_set():
                try:
                    self._on_change(changed)
                except Exception:  # noqa: BLE001 - a listener's bug must not stop the follower
                    log.exception("connection change listener failed")

    def _apply(self, record: Any) -> str | None:
        name = record.key.decode("utf-8", "replace") if record.key else None
        if record.value is None:          # a tombstone written by an operator purging the topic
            with self._cond:
                return name if name is not None and self._docs.pop(name, None) is not None else None
        try:
            event = ev.parse_event(structured_value(record.headers, record.value) or b"", expected_type=ev.CONNECTION)
            doc = event.data
            if doc["connection"] != name:
                raise ValidationError({"connection": [f"differs from the record's key {name!r}"]})
        except (ValidationError, RecursionError, ValueError, TypeError, UnicodeError) as exc:
            # whatever a record holds, it costs itself only: the reader goes on (a record nested
            # too deeply for the JSON parser raises RecursionError, not a validation error)
            self.skipped += 1
            why = str(exc.messages) if isinstance(exc, ValidationError) else type(exc).__name__
            log.error("control topic %s[%d] offset %d: not a valid connection event, skipped (%s)",
                      self.topic, record.partition, record.offset, why[:300])
            return None
        with self._cond:
            self._docs[name] = doc
            self._where[name] = (record.partition, record.offset)
            self._remember(event.id, (record.partition, record.offset), doc)
        return name

    # -- reading -------------------------------------------------------------------------------
    def catch_up(self, timeout_s: float = 5) -> bool:
        """Read up to the topic's end as of now: a request naming a connection this process has
        not seen yet may follow its creation closely. False when that took longer than ``timeout_s``.

        The end is the high-water mark, not the last stable offset: a writer's commit returns
        before the broker has written its markers, and the stable offset lags behind it until
        then (a clean-clone CI run caught that); reading to the high-water mark waits for them."""
        deadline = time.monotonic() + timeout_s
        try:
            with self._probe_lock:
                if self._probe is None:
                    self._probe = KafkaConsumer(**self._config.client_kwargs(), group_id=None,
                                                enable_auto_commit=False, isolation_level="read_uncommitted")
                tps = [TopicPartition(self.topic, p) for p in self._positions]
                ends = self._probe.end_offsets(tps, timeout_ms=max(int(timeout_s * 1000), 100))
        except (KafkaError, ValueError) as exc:
            log.warning("end of control topic %s not known (%s)", self.topic, type(exc).__name__)
            return False
        return all(end == 0 or self.wait_for(tp.partition, end - 1, max(deadline - time.monotonic(), 0))
                   for tp, end in ends.items())

    def wait_for(self, partition: int, offset: int, timeout_s: float = 30) -> bool:
        """Wait until the record at ``offset`` has been read (read-your-writes after a write)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._positions.get(partition, 0) <= offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True


def _check_revision(name: str, current: Mapping[str, Any] | None, based_on: int | None) -> None:
    have = current["revision"] if current else 0
    if based_on is not None and have != based_on:
        raise RevisionConflict(f"connection {name!r} changed meanwhile (revision {have}, this change was made "
                               f"on {based_on}): nothing stored; read it again")


class ConnectionWriter:
    """Writes connection documents as a compare-and-set on the topic, one writer per process.

    The writer connects on its first write, not before: a process that only reads (``connections
    list``, a GET) writes nothing to Kafka and fences nobody.

    Every writer (each API process, ``connections import``) uses the same transactional id, so the
    broker accepts the writes of one producer epoch only: a writer connecting
    (``init_transactions``) fences every other off (KIP-98 zombie fencing) and first completes
    what the previous epoch left (an open transaction aborted, a begun commit finished).

    Why compare-and-set holds: a write is one transaction of the writer's current epoch *e*. In
    it the writer reads the topic to its end and checks the connection is still at the revision
    the change was made on, then sends and commits. The broker commits it only while *e* is the
    latest epoch, that is when no other writer connected since this one did; every record of the
    earlier epochs was decided when *e* began, and no other writer can add one while *e* lasts.
    So a committed write was checked against everything stored before it, and nothing was stored
    between its check and its commit: two writers both starting from revision 5 cannot both
    commit revision 6. A per-process id would lose that (both could check 5 and both commit).

    A write that finds itself fenced (another process wrote since: ``ProducerFencedError``,
    ``InvalidProducerEpoch``) or that times out connects again, which fences the other writer in
    turn, reads the topic to its end again, checks the revision again and retries once; the
    argument above holds for the retry as it did for the first attempt. The retry also settles
    a commit that timed out: connecting again waits for it to be decided, and when the reread
    shows this very document stored the write is done. Two failed attempts are a
    :class:`DeliveryError` (HTTP 503): the caller may try again.

    A write is bounded in time even when the broker is away: both attempts share
    :attr:`WRITE_TIMEOUT_S`, each step waiting on the broker at most :attr:`STEP_TIMEOUT_S` (a
    connection started just before the deadline may overrun it by that much).
    """

    TRANSACTION_TIMEOUT_MS = 10_000   # a writer killed mid-write holds readers back this long at most
    WRITE_TIMEOUT_S = 20.0            # both attempts of a write together
    STEP_TIMEOUT_S = 8.0              # each broker step of an attempt: connect, read to the end, send, commit

    def __init__(self, config: KafkaConfig, topic: str, log_: Documents | None = None):
        self.topic, self._config, self._log = topic, config, log_
        self._lock = threading.Lock()
        self._producer: Any = None
        self.connects = 0        # how often this writer (re)connected, i.e. took its turn from the others

    def _connect(self) -> None:
        producer = None
        try:
            producer = make_producer(self._config, linger_ms=0, transactional_id=f"connector-host-control.{self.topic}",
                                     transaction_timeout_ms=self.TRANSACTION_TIMEOUT_MS,
                                     max_block_ms=int(self.STEP_TIMEOUT_S * 1000))
            producer.init_transactions()      # fences every other writer; ends what a killed one left open
        except BaseException:
            if producer is not None:
                _close_quietly(producer)
            raise
        self._producer = producer
        self.connects += 1

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def attach(self, log_: Documents) -> None:
        """The reader whose view the revision checks use (the API's own)."""
        self._log = log_

    def write(self, doc: Mapping[str, Any], now: datetime, *, based_on: int | None = None,
              timeout_s: float | None = None) -> tuple[int, int]:
        """Store ``doc`` if the connection is at revision ``based_on`` (0: absent; None: any);
        returns the record's partition and offset.

        :raise RevisionConflict: another writer changed the connection first (nothing stored).
        :raise DeliveryError: the broker did not commit it, twice (nothing may be assumed stored).
        """
        event = docs.event(doc, now)
        name = doc["connection"]
        with self._lock:
            deadline = time.monotonic() + (timeout_s or self.WRITE_TIMEOUT_S)
            try:
                where = self._attempt(event, name, based_on, deadline, retry=False)
            except _Lost as first:
                log.info("connection %s not stored at the first attempt (%s); connecting again and retrying once",
                         name, first)
                try:
                    if time.monotonic() >= deadline:
                        raise _Lost(f"{first}; no time left to retry") from None
                    where = self._attempt(event, name, based_on, deadline, retry=True)
                except _Lost as second:
                    raise DeliveryError(f"connection {name!r} not stored: the control topic could not be written "
                                        f"({second}); try again") from None
        log.info("connection %s revision %d %s by %s", name, doc["revision"],
                 "deleted" if doc.get("deleted") else "stored", doc["changed_by"])
        return where

    def _attempt(self, event: ev.Event, name: str, based_on: int | None, deadline: float, *,
                 retry: bool) -> tuple[int, int]:
        """One transaction; raises :class:`_Lost` for whatever a new connection may cure."""
        def step_s() -> float:
            return max(min(self.STEP_TIMEOUT_S, deadline - time.monotonic()), 0.1)

        try:
            if self._producer is None:
                self._connect()
            self._producer.begin_transaction()
            if based_on is not None and self._log is not None:
                if not self._log.catch_up(timeout_s=step_s()):
                    raise _Lost("the control topic could not be read to its end")
                mine = self._log.where_stored(event.id, _data(event)) if retry else None
                if mine is not None:
                    # the first attempt's commit went through after all (other changes may have followed
                    # it: the record is known by its id and content, not by being the latest document)
                    self._abort(step_s())
                    return mine
                _check_revision(name, self._log.document(name), based_on)
            meta = self._producer.send(self.topic, key=event.key.encode("utf-8"),
                                       value=event.to_json().encode("utf-8"), headers=STRUCTURED).get(step_s())
            _within(step_s(), "commit", self._producer.commit_transaction)
            return meta.partition, meta.offset
        except RevisionConflict:
            self._abort(step_s())
            raise
        except _Lost:
            self._reset()
            raise
        except Exception as exc:  # noqa: BLE001 - fenced, timed out, the broker away, or a client's own bug
            self._reset()
            raise _Lost(f"{type(exc).__name__}: {exc}") from None

    def _abort(self, step_s: float) -> None:
        try:
            _within(step_s, "abort", self._producer.abort_transaction)
        except Exception:  # noqa: BLE001 - the next write connects again, which aborts it
            self._reset()

    def _reset(self) -> None:
        if self._producer is not None:
            _close_quietly(self._producer)
        self._producer = None

    def close(self) -> None:
        with self._lock:
            self._reset()


class _Lost(Exception):
    """An attempt failed in a way a new connection may cure (fenced, timed out, the broker away)."""


def _data(event: ev.Event) -> dict[str, Any]:
    """The document as a reader of the topic sees it."""
    return ev.parse_event(event.to_json().encode("utf-8"), expected_type=ev.CONNECTION).data


def _within(timeout_s: float, what: str, call: Callable[[], Any]) -> Any:
    """``call()`` bounded in time (kafka-python waits for a commit or an abort without limit)."""
    done, box = threading.Event(), {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"control-{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise KafkaTimeoutError(f"the {what} took longer than {timeout_s:.0f}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _close_quietly(producer: Any) -> None:
    try:
        producer.close(timeout=2)
    except Exception:  # noqa: BLE001 - a fenced producer may refuse even to close cleanly
        pass


__all__ = ["ConnectionLog", "ConnectionWriter", "Documents", "MemoryControl"]
