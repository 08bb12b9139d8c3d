"""Group consumers on kafka-python: manual commits, cooperative rebalancing, pause/resume by
partition, and the workarounds kafka-python 3.0 needs for them.

Start-up order: every process may start before the topics it reads exist, or right after
another process created them. Consumers therefore wait (bounded) for the metadata of their
topics before joining their group, and refresh metadata every ``METADATA_MAX_AGE_MS`` so a
topic created later is consumed within seconds rather than after kafka-python's default five
minutes.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, NamedTuple

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import CommitFailedError, KafkaError
from kafka.net.selector import KernelEvent
from kafka.structs import OffsetAndMetadata, TopicPartition

from hostspec.errors import TransportError
from hostspec.transport.admin import await_topics
from hostspec.transport.cloudevents import structured_value
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import REFUSALS, Partition, kafka_client, refusal

log = logging.getLogger("hostspec.transport.kafka")   # the name its log lines always had
METADATA_MAX_AGE_MS = 5_000   # how soon a consumer sees a topic or partitions created after it started


class _QuietUnstableOffsets(logging.Filter):
    """kafka-python logs an ERROR each time it retries an offset fetch that waits for another
    member's open transaction (``UNSTABLE_OFFSET_COMMIT``, KIP-447). Waiting is the point: the
    worker logs the wait itself, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "UnstableOffsetCommitError" not in record.getMessage()


logging.getLogger("kafka.coordinator.consumer").addFilter(_QuietUnstableOffsets())


class InboundMessage(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)


def _unpark(consumer: KafkaConsumer, tp: TopicPartition) -> None:
    """Work around a kafka-python 3.0 fetcher bug that stalls a resumed partition for good.

    While a partition is paused, the fetcher parks the records it had already fetched for it
    (KAFKA-7548). It restores them only when its in-line slot is ``None``; an exhausted slot is
    falsy but not ``None``, so the parked records stay parked, and a partition with parked
    records is never fetched again: ``poll()`` returns nothing more for it, silently. The
    reliability suite's load test found it (requests left unprocessed); the regression test is
    ``tests/integration/test_transport.py``. Dropping the parked data is safe: the consumer's
    position still points at its first record, which is fetched again.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    parked = getattr(fetcher, "_paused_partition_records", None)
    if isinstance(parked, dict) and tp in parked:
        records = parked.pop(tp)
        if records is not None and hasattr(records, "drain"):
            records.drain()
    completions = getattr(fetcher, "_paused_completed_fetches", None)
    if isinstance(completions, dict):
        completions.pop(tp, None)


def _adopt_orphaned_join(consumer: KafkaConsumer) -> None:
    """Work around a kafka-python 3.0 bug that leaves a member in "rebalancing" for good.

    A rejoin triggered by a metadata change (the group leader's first minutes, partitions added)
    runs as a task that only a later ``poll()`` picks up, and only while the coordinator says a
    rejoin is needed. When the join completes between two polls, the leader's assignment has
    already caught up with the metadata, so no rejoin is "needed" any more: the result is never
    picked up, heartbeats stay off, and the broker evicts the member after its session timeout
    while the member believes it still owns its partitions. The adversarial review found it on
    one start in five; ``tests/integration/test_transport.py`` reproduces it deterministically.
    A completed, unclaimed join is answered with a fresh rejoin, which the next poll completes.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if task is not None and getattr(task, "is_done", False) and not coordinator.need_rejoin():
        log.info("group join completed between polls; joining again (kafka-python 3.0 workaround)")
        coordinator.request_rejoin()


# -- consuming requests ---------------------------------------------------------------------------
Barrier = Callable[[], bool]   # a revocation's "nothing of these partitions is being committed now"


class _Listener(AsyncConsumerRebalanceListener):
    """Rebalance callbacks, run by kafka-python 3 on its IO thread.

    A revocation callback may return a barrier: a predicate that becomes true once nothing of the
    revoked partitions is being committed. The listener awaits it *asynchronously* before handing
    the partitions back, so the IO thread keeps sending heartbeats meanwhile (a revocation that
    waited on the thread itself for a commit in flight got the whole member evicted after its
    session timeout: the adversarial review measured it).
    """

    def __init__(self, on_assigned: Callable[[set[Partition]], None],
                 on_revoked: Callable[[set[Partition]], Barrier | None],
                 on_lost: Callable[[set[Partition]], Barrier | None] | None):
        self._assigned, self._revoked, self._lost = on_assigned, on_revoked, on_lost or on_revoked

    @staticmethod
    async def _wait(barrier: Barrier | None) -> None:
        while barrier is not None and not barrier():
            await KernelEvent("_sleep", 0.02)     # kafka-python's own loop: heartbeats go on

    async def on_partitions_revoked(self, revoked):
        await self._wait(self._revoked({(tp.topic, tp.partition) for tp in revoked}))

    async def on_partitions_assigned(self, assigned):
        self._assigned({(tp.topic, tp.partition) for tp in assigned})

    async def on_partitions_lost(self, lost):
        await self._wait(self._lost({(tp.topic, tp.partition) for tp in lost}))


class RequestConsumer:
    """A group member on the requests topic (or any topics): manual commits, pause/resume per
    partition, cooperative rebalancing (KIP-429: a join or a leave moves only the partitions that
    change owner; the others keep being served without interruption).

    Not thread-safe: use it from one thread (the worker's poll loop), except
    :meth:`group_metadata`, which any thread may call. The callbacks run on kafka-python's IO
    thread, while the polling thread may be busy elsewhere.
    """

    def __init__(self, config: KafkaConfig, topic: str | list[str], group_id: str, *,
                 on_assigned: Callable[[set[Partition]], None],
                 on_revoked: Callable[[set[Partition]], Barrier | None],
                 on_lost: Callable[[set[Partition]], Barrier | None] | None = None,
                 session_timeout_ms: int = 45_000, max_poll_records: int = 50,
                 group_instance_id: str | None = None, max_poll_interval_ms: int = 300_000,
                 cooperative: bool = True, topic_wait_s: float = 30, also_known: list[str] | None = None,
                 assignors: list[type] | None = None, fetch_bytes: tuple[int, int] | None = None):
        """:param group_instance_id: join as a static member: a restart under the same id gets its
        partitions back at once, without a rebalance.
        :param on_revoked: partitions given up; may return a barrier (see :class:`_Listener`).
        :param on_lost: partitions taken away without a chance to commit (the member was evicted);
            default: ``on_revoked``.
        :param cooperative: the cooperative-sticky assignor (every member of a group must agree).
        :param also_known: topics not consumed whose partition counts the caller needs
            (:attr:`partition_counts` has them too).
        :param assignors: partition assignors to use instead (e.g. :mod:`.assignor`'s).
        :param fetch_bytes: (per fetch, per partition) bytes the consumer buffers ahead at most
            (default kafka-python's, 50 MB and 1 MB): a caller bounding its memory bounds these too.
        """
        static = {"group_instance_id": group_instance_id} if group_instance_id else {}
        strategy = {"partition_assignment_strategy": [CooperativeStickyAssignor]} if cooperative else {}
        if assignors:
            strategy = {"partition_assignment_strategy": list(assignors)}
        topics = [topic] if isinstance(topic, str) else list(topic)
        self._config = config
        self._consumer = kafka_client(
            config, KafkaConsumer, group_id=group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", isolation_level="read_committed",
            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(500, session_timeout_ms // 10),
            max_poll_records=max_poll_records, max_poll_interval_ms=max_poll_interval_ms,
            metadata_max_age_ms=METADATA_MAX_AGE_MS, **strategy, **static,
            **({"fetch_max_bytes": fetch_bytes[0], "max_partition_fetch_bytes": fetch_bytes[1]} if fetch_bytes else {}))
        try:
            self.partition_counts = await_topics(self._consumer, topics + list(also_known or ()),
                                                 timeout_s=topic_wait_s, config=config)
        except TransportError:
            self._consumer.close()
            raise
        self._consumer.subscribe(topics, listener=_Listener(on_assigned, on_revoked, on_lost))
        self._unreachable_since: float | None = None

    def poll(self, timeout_ms: int = 200) -> list[InboundMessage]:
        """Records fetched (maybe none). The broker being away is not an error here: kafka-python 3
        raises its connection errors out of ``poll`` (it did, mid-sync, during a broker restart, and
        the worker stopped); they are logged and the next poll tries again. Kafka refusing this
        principal the group or a topic is: :class:`TransportError` (retrying cannot help)."""
        if self.group_metadata().state == "<rebalancing>":
            timeout_ms = max(timeout_ms, 2_000)     # let a join in flight complete inside this poll
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms)
        except REFUSALS as exc:
            raise refusal(self._config, exc) from None
        except KafkaError as exc:
            now = time.monotonic()
            if self._unreachable_since is None:
                self._unreachable_since = now
                log.warning("Kafka unreachable (%s: %s); trying again", type(exc).__name__, exc)
            elif now - self._unreachable_since > 30:
                log.warning("Kafka unreachable for %.0fs (%s); still trying", now - self._unreachable_since,
                            type(exc).__name__)
                self._unreachable_since = now - 0.001
            time.sleep(min(1.0, timeout_ms / 1000))
            return []
        if self._unreachable_since is not None:
            log.info("Kafka reachable again")
            self._unreachable_since = None
        _adopt_orphaned_join(self._consumer)
        out = []
        for records in batches.values():
            out.extend(InboundMessage(r.topic, r.partition, r.offset, r.key, structured_value(r.headers, r.value)) for r in records)
        return out

    def pause(self, tp: Partition) -> None:
        self._consumer.pause(TopicPartition(*tp))

    def resume(self, tp: Partition) -> None:
        topic_partition = TopicPartition(*tp)
        self._consumer.resume(topic_partition)
        _unpark(self._consumer, topic_partition)

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def group_metadata(self) -> Any:
        """The current group generation, for fencing transactional offset commits (KIP-447)."""
        return self._consumer.group_metadata()

    def heartbeat_silence(self) -> float:
        """Seconds since the group coordinator last answered a heartbeat of this stable member (0
        while it joins or rebalances: its partitions are not given away then). Any thread."""
        heartbeat = getattr(getattr(self._consumer, "_coordinator", None), "heartbeat", None)
        if heartbeat is None or self.group_metadata().state != "<stable>":
            return 0.0
        return max(0.0, time.monotonic() - max(heartbeat.last_receive, heartbeat.last_reset))

    def in_group(self, silence_limit_s: float) -> bool:
        """Whether this consumer is a member of its group now: it has a generation (kafka-python
        drops it when the coordinator says the member is unknown: evicted, or its session expired)
        and the coordinator answered a heartbeat within ``silence_limit_s`` (beyond the session
        timeout the group has given its partitions away, whatever this member still believes).
        Any thread."""
        try:
            metadata = self.group_metadata()
        except Exception:  # noqa: BLE001 - not joined yet
            return False
        return metadata.generation_id >= 0 and self.heartbeat_silence() <= silence_limit_s

    def seek(self, tp: Partition, offset: int | None) -> None:
        """Read ``tp`` from ``offset`` next (None: from the beginning)."""
        if offset is None:
            self._consumer.seek_to_beginning(TopicPartition(*tp))
        else:
            self._consumer.seek(TopicPartition(*tp), offset)

    def lag(self) -> dict[Partition, int]:
        """Records after this member's position, per assigned partition (asks the broker)."""
        tps = list(self._consumer.assignment())
        if not tps:
            return {}
        try:
            ends = self._consumer.end_offsets(tps, timeout_ms=2_000)
            lags = {}
            for tp in tps:
                # a partition without a position yet may be waiting for another member's open
                # transaction (require_stable): never wait for it here
                position = self._consumer.position(tp, timeout_ms=100)
                if position is not None:
                    lags[(tp.topic, tp.partition)] = max(0, ends[tp] - position)
            return lags
        except KafkaError as exc:
            log.debug("lag not measured: %s", exc)
            return {}

    def committed(self, tp: Partition) -> int | None:
        """The group's committed offset of ``tp`` (None: nothing committed yet)."""
        return self._consumer.committed(TopicPartition(*tp), timeout_ms=30_000)

    def commit(self, tp: Partition, next_offset: int) -> bool:
        """Commit ``next_offset`` for ``tp``; False when the group moved on (the new owner redoes it)."""
        return self.commit_many({tp: next_offset})

    def commit_many(self, offsets: dict[Partition, int]) -> bool:
        """Commit the next offset of several partitions at once; False when the group moved on."""
        if not offsets:
            return True
        try:
            self._consumer.commit({TopicPartition(*tp): OffsetAndMetadata(n, "", -1) for tp, n in offsets.items()})
            return True
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of %s failed: %s", offsets, exc)
            return False

    def close(self) -> None:
        self._consumer.close(autocommit=False)
