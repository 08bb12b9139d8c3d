"""Reading compacted changelog partitions to their true end.

``end_offsets()`` of a ``read_committed`` consumer is the *last stable offset*: any transaction
left open on a partition (a worker that died mid-commit) pins it, and records other writers
committed after that transaction's first record lie beyond it. A restore that stops there
misses them. :meth:`ChangelogReader.read` instead reads until its position reaches the
*high-water mark* (a ``read_uncommitted`` ListOffsets): a ``read_committed`` position only gets
there once every transaction below it has ended, committed (its records are applied) or
aborted (skipped). The wait is bounded by the broker: ``transaction_timeout_ms`` of the dead
producer plus the broker's ``transaction.abort.timed.out.transaction.cleanup.interval.ms``.

:meth:`ChangelogReader.stable_offset` is the other half of a safe take-over: the committed
offset of an input partition, fetched with ``require_stable``, which the group coordinator
answers only when no transaction carrying an offset for that partition is open. Every
transaction the worker commits carries one, so once it returns, the previous owner's last
transaction has ended and a restore that follows sees all of it.

:meth:`ChangelogReader.topic_id` is the topic's identity (KIP-516's topic UUID): a topic deleted
and created again under the same name is another topic, whose offsets say nothing of the old one's.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from hostspec.errors import TransportError
from hostspec.transport.admin import await_topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import METADATA_MAX_AGE_MS
from hostspec.transport.kafka import REFUSALS, Partition, kafka_client, refusal

log = logging.getLogger(__name__)
Records = list[tuple[str, "bytes | None"]]


class ChangelogReader:
    """Reads partitions of one topic (``read_committed``), each to its high-water mark.

    Not thread-safe: one reader per thread. ``group_id`` is needed only for
    :meth:`stable_offset` (the reader never joins the group nor commits).
    """

    def __init__(self, config: KafkaConfig, topic: str, *, group_id: str | None = None):
        self.topic, self._config = topic, config
        self._admin: KafkaAdminClient | None = None
        self._reader = kafka_client(config, KafkaConsumer, group_id=group_id, enable_auto_commit=False,
                               isolation_level="read_committed", max_poll_records=10_000,
                               fetch_max_bytes=16 * 1024 * 1024, metadata_max_age_ms=METADATA_MAX_AGE_MS)
        try:
            self._probe = kafka_client(config, KafkaConsumer, group_id=None, enable_auto_commit=False,
                                  isolation_level="read_uncommitted", metadata_max_age_ms=METADATA_MAX_AGE_MS)
        except TransportError:
            self._reader.close()
            raise

    def partitions(self, timeout_s: float = 30) -> list[int]:
        """The topic's partitions (waiting for its metadata, e.g. just after it was created)."""
        if not await_topics(self._reader, [self.topic], timeout_s=timeout_s, config=self._config)[self.topic]:
            raise TransportError(f"topic {self.topic} has no partitions yet (not created?)")
        return sorted(self._reader.partitions_for_topic(self.topic) or ())

    def topic_id(self) -> str | None:
        """The topic's UUID (KIP-516), or None when the client or the broker cannot tell it
        (kafka-python before 3, brokers before 2.8)."""
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self._config.client_kwargs(), request_timeout_ms=10_000)
            described = self._admin.describe_topics([self.topic])
        except (KafkaError, ValueError) as exc:
            raise TransportError(f"topic {self.topic} not described: {type(exc).__name__}: {exc}") from None
        found = [t for t in described if t.get("name", t.get("topic")) == self.topic and not t.get("error_code")]
        topic_id = found[0].get("topic_id") if found else None
        return str(topic_id) if topic_id else None

    def high_water(self, partitions: list[int]) -> dict[int, int]:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            ends = self._probe.end_offsets(tps)
        except KafkaError as exc:
            raise TransportError(f"end of {self.topic} not known: {type(exc).__name__}: {exc}") from None
        return {tp.partition: ends[tp] for tp in tps}

    def stable_offset(self, tp: Partition, *, should_stop: Callable[[], bool] = lambda: False,
                      timeout_s: float = 900) -> int | None:
        """The group's committed offset of ``tp`` once no open transaction carries one for it."""
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        warned = False
        while True:
            try:
                return self._reader.committed(TopicPartition(*tp), timeout_ms=2_000)
            except REFUSALS as exc:       # the group's offsets are not this principal's to read
                raise refusal(self._config, exc) from None
            except KafkaError as exc:
                if should_stop():
                    return None
                if time.monotonic() >= deadline:
                    raise TransportError(f"committed offset of {tp[0]}[{tp[1]}] not stable within {timeout_s:.0f}s: "
                                         f"{type(exc).__name__}") from None
                if not warned and time.monotonic() - started > 5:
                    log.info("waiting for an open transaction on %s[%d] to end (a previous owner's)", tp[0], tp[1])
                    warned = True

    def read(self, start: dict[int, int | None], apply: Callable[[Records], object], *,
             should_stop: Callable[[], bool] = lambda: False, timeout_s: float = 900) -> dict[int, int] | None:
        """Apply every committed record of the partitions in ``start`` (from that offset, None: the
        beginning) up to their high-water marks; returns the positions reached, or None when
        ``should_stop`` became true first.
        """
        tps = {p: TopicPartition(self.topic, p) for p in start}
        self._reader.assign(list(tps.values()))
        for p, tp in tps.items():
            if start[p] is None:
                self._reader.seek_to_beginning(tp)
            else:
                self._reader.seek(tp, start[p])
        deadline = time.monotonic() + timeout_s
        waiting_since: float | None = None
        targets = self.high_water(list(start))
        while True:
            behind = [p for p in tps if self._reader.position(tps[p]) < targets[p]]
            if not behind:
                # the end may have moved while we read (a transaction that was open has ended):
                # done only when the high-water mark is where we are
                targets = self.high_water(list(start))
                if all(self._reader.position(tps[p]) >= targets[p] for p in tps):
                    return {p: self._reader.position(tps[p]) for p in tps}
                continue
            if should_stop():
                return None
            if time.monotonic() > deadline:
                raise TransportError(f"{self.topic} partitions {behind} not read to their end within {timeout_s:.0f}s")
            batch = [(r.key.decode("utf-8"), r.value)
                     for records in self._reader.poll(timeout_ms=200).values() for r in records if r.key is not None]
            if batch:
                apply(batch)
                waiting_since = None
            elif waiting_since is None:
                waiting_since = time.monotonic()
            elif time.monotonic() - waiting_since > 5:
                log.info("restoring %s partitions %s: waiting for an open transaction to end", self.topic, behind)
                waiting_since = time.monotonic() + 25   # say it again in 30 s

    def read_all(self, apply: Callable[[Records], object], *, timeout_s: float = 900) -> int:
        """Apply every committed record of every partition; returns how many."""
        count = 0

        def counting(records: Records) -> None:
            nonlocal count
            count += len(records)
            apply(records)

        self.read({p: None for p in self.partitions()}, counting, timeout_s=timeout_s)
        return count

    def close(self) -> None:
        for client in (self._reader, self._probe, self._admin):
            try:
                if client is not None:
                    client.close()
            except Exception:
                pass


__all__ = ["ChangelogReader"]
