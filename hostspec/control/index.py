"""The fleet index: runs, requests and dead letters of every connection, kept in memory and read
by the admin API's lists instead of a whole topic per call.

:class:`FleetIndex` is the pure part: events go in (``learning.sync.status.v1``,
``learning.record.rejected.v1``, ``learning.sync.requested.v1``), lists come out, newest first,
in pages (:class:`Page`). It joins what the topics say apart:

* a **run** is the latest status of a run id (of the request id while no run has it yet: a
  re-drive's ``queued`` status); a status ranks by its phase (queued < started < progress <
  an end), so a status read late (the topics are read in no order across partitions) never
  hides a later one, and one inserted by this process before the topic showed it (read-your-
  writes) is harmless when the topic shows it again;
* a **request** is its ``sync.requested`` event (who asked, when, its tenant as known then), its
  latest status, the run it was merged into (a status with ``merged_into``, :mod:`hostspec.runtime.
  coalescing`) and the dead letters naming it;
* a dead letter is **re-driven** once a ``queued`` status names it in ``redrive_of``
  (:mod:`hostspec.control.redrive`): by the actor of the request that status queues, at the
  status' time, into that request.

Memory is bounded: each connection keeps its latest :data:`RUNS_PER_CONNECTION` runs,
:data:`REQUESTS_PER_CONNECTION` requests and :data:`LETTERS_PER_CONNECTION` dead letters (the
oldest read dropped first), a request names its latest :data:`LETTERS_PER_REQUEST` dead letters,
a dead letter keeps no record (its summary, its field errors and, for a refused request, the
request it re-publishes), and at most :data:`MARKS` re-drive marks are kept. A process restores the index by reading the topics from their start
(:class:`IndexFeeder`), so the lists show what the topics still hold within those bounds.

:class:`IndexFeeder` follows the three topics in a background thread with one consumer (no
group); :meth:`IndexFeeder.catch_up` waits until it has read what the topics held when called
(one offsets request, not a read of the topic).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.control import redrive
from hostspec.errors import TransportError
from hostspec.topics import Topics
from hostspec.transport.admin import await_topics
from hostspec.transport.cloudevents import structured_value
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import kafka_client

log = logging.getLogger(__name__)

RUNS_PER_CONNECTION = 2000
REQUESTS_PER_CONNECTION = 2000
LETTERS_PER_CONNECTION = 10_000
LETTERS_PER_REQUEST = 1000    # a request's dead letters it names (its latest)
MARKS = 200_000
RAW_KEPT = 64_000            # a refused request's value kept to re-drive it (they are small)
RANK = {"queued": 0, "started": 1, "progress": 2}      # every other phase is an end: 3
END = 3


def _rank(phase: str | None) -> int:
    return RANK.get(phase or "", END)


class BadCursor(ValueError):
    """A cursor this index did not hand out (HTTP 400)."""


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    next_cursor: str | None


@dataclass
class _Run:
    key: str
    data: dict[str, Any]
    rank: int
    seq: int                  # when first seen: ties of the sort
    at: str                   # started_at, else ended_at, else the first status' time
    time: str                 # the latest status' time
    superseded: bool = False  # a request's queued entry, once its run has statuses of its own


@dataclass
class _Request:
    request_id: str
    connection: str | None = None
    provider: str | None = None
    tenant: str | None = None
    requested_by: str | None = None
    time: str | None = None
    status: dict[str, Any] | None = None
    rank: int = -1
    merged_into: str | None = None            # the run id
    merged_into_request: str | None = None    # the request whose run it was
    run_id: str | None = None
    redrive_of: list[str] | None = None       # the dead letters its queued status re-drives
    letters: deque[str] = field(default_factory=lambda: deque(maxlen=LETTERS_PER_REQUEST))


def encode_cursor(key: tuple[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[str, int]:
    try:
        at, seq = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(at, str) or not isinstance(seq, int):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise BadCursor("cursor is not one this server handed out") from None
    return at, seq


def page(rows: Iterable[tuple[tuple[str, int], Any]], *, limit: int, cursor: str | None) -> Page:
    """``rows`` (sort key, item) newest first from ``cursor`` on, ``limit`` of them."""
    ordered = sorted(rows, key=lambda r: r[0], reverse=True)
    after = decode_cursor(cursor) if cursor else None
    start = 0
    if after is not None:
        start = next((i for i, (k, _item) in enumerate(ordered) if k < after), len(ordered))
    chosen = ordered[start:start + limit]
    more = start + limit < len(ordered)
    return Page([item for _k, item in chosen], len(ordered), encode_cursor(chosen[-1][0]) if more and chosen else None)


class _Capped:
    """Keys per connection in the order first seen; the oldest beyond ``cap`` are dropped."""

    def __init__(self, cap: int):
        self.cap = cap
        self.by: dict[str | None, OrderedDict[str, None]] = {}

    def add(self, connection: str | None, key: str) -> list[str]:
        keys = self.by.setdefault(connection, OrderedDict())
        keys[key] = None
        dropped = []
        while len(keys) > self.cap:
            dropped.append(keys.popitem(last=False)[0])
        return dropped

    def remove(self, connection: str | None, key: str) -> None:
        self.by.get(connection, {}).pop(key, None)


class FleetIndex:
    """Runs, requests and dead letters of every connection (the module's docstring). Thread-safe."""

    def __init__(self, *, runs_per_connection: int = RUNS_PER_CONNECTION,
                 requests_per_connection: int = REQUESTS_PER_CONNECTION,
                 letters_per_connection: int = LETTERS_PER_CONNECTION, marks: int = MARKS):
        self._lock = threading.RLock()
        self._seq = 0
        self._runs: dict[str, _Run] = {}
        self._run_keys = _Capped(runs_per_connection)
        self._requests: dict[str, _Request] = {}
        self._request_keys = _Capped(requests_per_connection)
        self._letters: dict[str, redrive.DeadLetter] = {}
        self._letter_seq: dict[str, int] = {}
        self._letter_keys = _Capped(letters_per_connection)
        self._marks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._marks_cap = marks

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # -- in ----------------------------------------------------------------------------------
    def add(self, event: ev.Event, *, partition: int = -1, offset: int = -1, tenant: str | None = None) -> None:
        """One event of the three topics (others are ignored). ``tenant``: a request's tenant as
        known when it was made (a request event names none)."""
        with self._lock:
            if event.type == ev.SYNC_STATUS:
                self._status(event)
            elif event.type == ev.RECORD_REJECTED:
                self._letter(redrive.dead_letter(event, partition, offset))
            elif event.type == ev.SYNC_REQUESTED:
                self._request(event, tenant)

    def _request_entry(self, request_id: str, connection: str | None) -> _Request:
        entry = self._requests.get(request_id)
        if entry is None:
            entry = self._requests[request_id] = _Request(request_id, connection)
            for gone in self._request_keys.add(connection, request_id):
                self._requests.pop(gone, None)
        return entry

    def _request(self, event: ev.Event, tenant: str | None) -> None:
        d = event.data
        entry = self._request_entry(event.id, d.get("connection"))
        entry.connection, entry.provider, entry.requested_by = d.get("connection"), d.get("provider"), d.get("requested_by")
        entry.time = event.body.get("time")
        entry.tenant = entry.tenant or tenant

    def _status(self, event: ev.Event) -> None:
        d = dict(event.data)
        when, rank = event.body.get("time") or "", _rank(d.get("phase"))
        request_id, run_id = d.get("request_id"), d.get("run_id")
        connection = d.get("connection")
        if d.get("phase") == "queued" and d.get("redrive_of"):
            # request_id None: a refused request re-published as it was (its id is not known)
            for dl_id in d["redrive_of"]:
                self._marks[dl_id] = {"at": when, "request_id": request_id}
                self._marks.move_to_end(dl_id)
            while len(self._marks) > self._marks_cap:
                self._marks.popitem(last=False)
        if request_id:
            req = self._request_entry(request_id, connection)
            req.connection = req.connection or connection
            req.provider = req.provider or d.get("provider")
            req.tenant = d.get("tenant") or req.tenant
            if rank >= req.rank:
                req.status, req.rank = d, rank
            if d.get("merged_into"):
                req.merged_into, req.merged_into_request = run_id, d["merged_into"]
            if d.get("phase") == "queued" and d.get("redrive_of"):
                req.redrive_of = list(d["redrive_of"])
            req.run_id = req.run_id or run_id
        if d.get("merged_into"):
            return                            # the run is its own request's: this is a merged request's view
        key = run_id or request_id
        if not key:
            return
        if run_id and request_id and request_id in self._runs and request_id != run_id:
            self._runs[request_id].superseded = True      # the queued entry of a request that now runs
        run = self._runs.get(key)
        if run is None:
            run = self._runs[key] = _Run(key, d, rank, self._next(), "", when)
            for gone in self._run_keys.add(connection, key):
                self._runs.pop(gone, None)
        elif rank < run.rank:
            return
        if run_id is None and request_id and self._requests[request_id].run_id is not None:
            run.superseded = True                          # a queued status read after its request's run
        run.data, run.rank, run.time = d, rank, when
        run.at = d.get("started_at") or d.get("ended_at") or run.at or when

    def _letter(self, dl: redrive.DeadLetter) -> None:
        d = dl.data
        kept = {k: d.get(k) for k in ("stage", "reason", "errors", "record_id", "request_id", "run_id", "tenant",
                                      "connection", "provider")}
        if d.get("stage") == "request" and len(d.get("raw_value") or "") <= RAW_KEPT:
            kept.update(raw_value=d.get("raw_value"), raw_encoding=d.get("raw_encoding"))
        if dl.id in self._letters:
            return
        self._letters[dl.id] = redrive.DeadLetter(dl.id, dl.time, kept, dl.partition, dl.offset)
        self._letter_seq[dl.id] = self._next()
        for gone in self._letter_keys.add(dl.connection, dl.id):
            self._letters.pop(gone, None)
            self._letter_seq.pop(gone, None)
        if d.get("request_id"):
            self._request_entry(d["request_id"], dl.connection).letters.append(dl.id)

    # -- out ---------------------------------------------------------------------------------
    def redriven(self, dl_id: str) -> dict[str, Any] | None:
        """``{"by", "at", "request_id"}`` when a re-drive named this dead letter, else None."""
        with self._lock:
            mark = self._marks.get(dl_id)
            if mark is None:
                return None
            request = self._requests.get(mark["request_id"] or "")
            by = redrive.actor_of(request.requested_by) if request and request.requested_by else None
            return {"by": by, "at": mark["at"], "request_id": mark["request_id"]}

    def letter(self, dl: redrive.DeadLetter) -> dict[str, Any]:
        """A dead letter as the API lists it: its summary, field errors and re-drive mark."""
        return {**dl.summary(), "tenant": dl.data.get("tenant"), "errors": dl.data.get("errors"),
                "redriven": self.redriven(dl.id)}

    def dead_letters(self, which: Callable[[redrive.DeadLetter], bool], *,
                     redriven: bool | None = None) -> list[redrive.DeadLetter]:
        """The dead letters ``which`` selects (``redriven``: only those re-driven, or not), oldest first."""
        with self._lock:
            out = [dl for dl in self._letters.values()
                   if which(dl) and (redriven is None or (dl.id in self._marks) == redriven)]
            return sorted(out, key=lambda dl: (dl.time, self._letter_seq[dl.id]))

    def dead_letter_page(self, which: Callable[[redrive.DeadLetter], bool], *, redriven: bool | None = None,
                         limit: int = 100, cursor: str | None = None) -> Page:
        with self._lock:
            rows = [((dl.time, self._letter_seq[dl.id]), dl) for dl in self.dead_letters(which, redriven=redriven)]
            found = page(rows, limit=limit, cursor=cursor)
            return Page([self.letter(dl) for dl in found.items], found.total, found.next_cursor)

    def runs(self, which: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
        """The runs (their latest status) ``which`` selects, oldest first, a re-drive's ``queued``
        status beside its run (as ``GET /connections/{name}/status`` always listed them)."""
        with self._lock:
            chosen = [r for r in self._runs.values() if which(r.data)]
            return [r.data for r in sorted(chosen, key=lambda r: (r.at, r.seq))]

    def run_page(self, which: Callable[[Mapping[str, Any]], bool], *, limit: int = 100,
                 cursor: str | None = None) -> Page:
        """Runs ``which`` selects, newest first, one item a run: a request's ``queued`` status
        only while it has not run, its ``redrive_of`` carried over to its run."""
        with self._lock:
            return page([((r.at, r.seq), self._carried(r.data)) for r in self._runs.values()
                         if not r.superseded and which(r.data)], limit=limit, cursor=cursor)

    def _carried(self, data: dict[str, Any]) -> dict[str, Any]:
        request = self._requests.get(data.get("request_id") or "")
        if data.get("redrive_of") or request is None or not request.redrive_of:
            return data
        return {**data, "redrive_of": request.redrive_of}

    def request(self, request_id: str) -> dict[str, Any] | None:
        """What is known of a request: ``{"request_id", "connection", "tenant", "requested_by",
        "status", "merged_into", "dead_letters"}``, or None."""
        with self._lock:
            entry = self._requests.get(request_id)
            if entry is None:
                return None
            letters = [self.letter(self._letters[i]) for i in entry.letters if i in self._letters]
            tenant = entry.tenant or next((dl["tenant"] for dl in letters if dl["tenant"]), None)
            return {"request_id": request_id, "connection": entry.connection, "tenant": tenant,
                    "provider": entry.provider, "requested_by": entry.requested_by, "requested_at": entry.time,
                    "status": entry.status, "merged_into": entry.merged_into,
                    "merged_into_request": entry.merged_into_request, "dead_letters": letters}


def time_filter(since: Any, until: Any) -> Callable[[str | None], bool]:
    """Whether an RFC 3339 time is within [since, until) (``since``, ``until``: aware datetimes or None)."""
    def within(text: str | None) -> bool:
        if since is None and until is None:
            return True
        moment = redrive._moment(text or "")
        if moment is None:
            return False
        return (since is None or moment >= since) and (until is None or moment < until)
    return within


class IndexFeeder:
    """Follows the status, dead-letter and requests topics into a :class:`FleetIndex`, from
    their start, in a background thread (one consumer, no group). ``tenant_of``: a live
    connection's tenant, given to a request read from the topic (a request event names none)."""

    def __init__(self, config: KafkaConfig, topics: Topics, index: FleetIndex,
                 tenant_of: Callable[[str], str | None] = lambda _n: None):
        self.index, self.tenant_of = index, tenant_of
        self._names = {topics.status: ev.SYNC_STATUS, topics.dead_letter: ev.RECORD_REJECTED,
                       topics.requests: ev.SYNC_REQUESTED}

        def consumer() -> Any:
            return kafka_client(config, KafkaConsumer, enable_auto_commit=False, isolation_level="read_committed",
                                group_id=None)

        self._consumer = consumer()
        self._probe = consumer()
        try:
            counts = await_topics(self._consumer, list(self._names), timeout_s=5, config=config)
            missing = [t for t, n in counts.items() if not n]
            if missing:
                raise TransportError(f"topics {', '.join(missing)} do not exist (start a worker once to create them)")
            self._tps = [TopicPartition(t, p) for t in self._names
                         for p in sorted(self._consumer.partitions_for_topic(t) or ())]
        except TransportError:
            self._consumer.close()
            self._probe.close()
            raise
        self._consumer.assign(self._tps)
        self._consumer.seek_to_beginning(*self._tps)
        self._positions: dict[Any, int] = {tp: 0 for tp in self._tps}
        self._moved = threading.Condition()
        self._probe_lock = threading.Lock()
        self._stop = threading.Event()
        self.failed: BaseException | None = None
        self._unknown_ends: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, name="fleet-index", daemon=True)

    def start(self, timeout_s: float = 60) -> "IndexFeeder":
        """Start following; return once the topics are read to the ends they had now (restored).
        :raise TransportError: they were not (e.g. the principal may not read one of them)."""
        self._thread.start()
        if not self.catch_up(timeout_s):
            time.sleep(0.5)                  # a refusal by the broker ends the thread: say that one
            reason = self.failed or self._unknown_ends or f"not read to their end within {timeout_s:g} s"
            self.close()
            raise TransportError(f"the fleet index could not read the status, dead-letter and requests topics: "
                                 f"{type(reason).__name__ + ': ' if isinstance(reason, BaseException) else ''}"
                                 f"{reason}")
        return self

    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                for records in self._consumer.poll(timeout_ms=200).values():
                    for r in records:
                        self._add(r)
                positions = {tp: self._consumer.position(tp) for tp in self._tps}
                with self._moved:
                    self._positions = positions
                    self._moved.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported by catch_up; the API answers from what it has
            if not self._stop.is_set():
                log.warning("the fleet index stopped following its topics: %s", exc)
                self.failed = exc

    def _add(self, r: Any) -> None:
        type_ = self._names.get(r.topic)
        try:
            event = ev.parse_event(structured_value(r.headers, r.value) or b"", expected_type=type_)
        except (ValidationError, RecursionError, ValueError):     # not ours to read: skipped
            return
        tenant = None
        if event.type == ev.SYNC_REQUESTED:
            tenant = self.tenant_of(event.data.get("connection") or "")
        self.index.add(event, partition=r.partition, offset=r.offset, tenant=tenant)

    def catch_up(self, timeout_s: float = 10) -> bool:
        """Wait until the index holds what the topics held when called; False: not within ``timeout_s``
        (the caller answers from what the index has)."""
        if self.failed is not None:
            return False
        try:
            with self._probe_lock:
                ends = self._probe.end_offsets(self._tps, timeout_ms=int(timeout_s * 1000))
        except Exception as exc:  # noqa: BLE001 - the broker is away: what the index holds is the answer
            log.debug("fleet index: end offsets not known: %s", exc)
            self._unknown_ends = exc
            return False
        self._unknown_ends = None
        deadline = time.monotonic() + timeout_s
        with self._moved:
            while any(self._positions.get(tp, 0) < end for tp, end in ends.items()):
                left = deadline - time.monotonic()
                if left <= 0 or self.failed is not None:
                    return False
                self._moved.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for c in (self._consumer, self._probe):
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing
                pass


__all__ = ["BadCursor", "FleetIndex", "IndexFeeder", "Page", "decode_cursor", "encode_cursor", "page", "time_filter"]
