"""The ledger's shared half: a compacted Kafka topic the publisher writes every lasting fact to,
and from which an instance rebuilds the ledger of the partitions it is assigned.

* Topic ``<prefix><group id>.ledger``, compacted, with as many partitions as the group has units
  (:mod:`hostspec.transport.assignor`). A record is written to the partition of its tenant's unit
  (``murmur2(tenant) % units``), the one whose events this instance delivers: after a take-over
  the new owner reads exactly the facts it needs.
* Keys are the ledger's (``d…`` deliveries, ``i…`` integrations, ``t…`` tags), values JSON, a
  deletion is a tombstone. The journal only *collects* records (per delivering thread, see
  :meth:`LedgerJournal.capturing`); the service sends them with the events they account for and
  commits the input offsets only once the broker acknowledged them all. A failed flush keeps them
  to be sent again, so a fact the local ledger holds is never missing from the journal.
* :meth:`LedgerJournal.restore` reads the partitions to their high-water marks (``read_committed``),
  on top of what the local file holds: the journal's latest fact for a key wins.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from hostspec.transport.changelog import ChangelogReader
from hostspec.transport.config import KafkaConfig, TopicSpec
from hostspec.transport.murmur2 import partition_for
from hostspec.transport.routing import tenant_partition

from .ledger import Ledger

log = logging.getLogger(__name__)


def journal_spec(topic: str, units: int) -> TopicSpec:
    return TopicSpec(topic, units, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                                    "delete.retention.ms": str(24 * 3600 * 1000)})


JournalRecord = tuple[str, int, str, "bytes | None"]    # (topic, partition, key, value)


class LedgerJournal:
    def __init__(self, topic: str, units: int):
        self.topic, self.units = topic, units
        self._local = threading.local()
        self._loose: list[JournalRecord] = []     # written outside a capture (the poll loop itself)
        self._lock = threading.Lock()

    def unit_of(self, tenant: str | None, key: str = "") -> int:
        return tenant_partition(tenant, self.units) if tenant else partition_for(key.encode("utf-8"), self.units)

    def __call__(self, tenant: str | None, key: str, value: dict[str, Any] | None) -> None:
        payload = None if value is None else json.dumps(value, separators=(",", ":")).encode("utf-8")
        record = (self.topic, self.unit_of(tenant, key), key, payload)
        captured = getattr(self._local, "records", None)
        if captured is not None:
            captured.append(record)
        else:
            with self._lock:
                self._loose.append(record)

    @contextmanager
    def capturing(self) -> Iterator[list[JournalRecord]]:
        """Collect what this thread journals meanwhile (a lane's delivery) into the yielded list."""
        self._local.records = records = []
        try:
            yield records
        finally:
            self._local.records = None

    def drain(self) -> list[JournalRecord]:
        """What was journaled outside any capture, since the last drain."""
        with self._lock:
            loose, self._loose = self._loose, []
        return loose

    def restore(self, kafka: KafkaConfig, ledger: Ledger, units: list[int]) -> int:
        """Apply every fact of ``units`` to ``ledger``; returns how many records were read."""
        if not units:
            return 0
        started = time.monotonic()
        reader = ChangelogReader(kafka, self.topic)
        count = 0

        def apply(records: list[tuple[str, bytes | None]]) -> None:
            nonlocal count
            count += ledger.apply_journal((k, json.loads(v) if v else None) for k, v in records)

        try:
            reader.read({u: None for u in units}, apply)
        finally:
            reader.close()
        log.info("ledger of units %s restored from %s: %d records in %.1fs", units, self.topic, count,
                 time.monotonic() - started)
        return count
