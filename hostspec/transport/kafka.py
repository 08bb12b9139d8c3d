"""Topics, plain producers and group consumers on kafka-python.

The :mod:`hostspec.transport` package is the only one that imports the Kafka client. This
module offers topic creation, a sink that produces events and reports failures as
:class:`DeliveryError`, a group consumer with manual commits, cooperative rebalancing and
pause/resume by partition, and helpers to publish a request and follow status events.
Exactly-once writes are in :mod:`.transactions`, changelog restoration in :mod:`.changelog`.
Client errors are wrapped once, in this package, into the host's errors.

Start-up order: every process may start before the topics it reads exist, or right after
another process created them. Consumers therefore wait (bounded) for the metadata of their
topics before joining their group, and refresh metadata every ``METADATA_MAX_AGE_MS`` so a
topic created later is consumed within seconds rather than after kafka-python's default five
minutes.
"""
from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from kafka import AsyncConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka import errors as kerr
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.net.selector import KernelEvent
from kafka.partitioner.default import DefaultPartitioner
from kafka.structs import OffsetAndMetadata, TopicPartition

from hostspec.errors import DeliveryError, PermanentDeliveryError, TransportError
from hostspec.events import Event
from hostspec.transport.cloudevents import STRUCTURED, structured_value
from hostspec.transport.config import KafkaConfig, TopicSpec, principal_of
from hostspec.transport.murmur2 import partition_for
from hostspec.transport.routing import Router

log = logging.getLogger(__name__)
Partition = tuple[str, int]
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


# -- refusals --------------------------------------------------------------------------------------
REFUSALS = (kerr.AuthorizationError, kerr.SaslAuthenticationFailedError)   # an ACL or a credential: never retried
ACLS_HINT = "the rights each component needs: python -m hostspec.transport.acls print"


class _HandshakeRefusals(logging.Filter):
    """Remembers the last TLS or SASL refusal kafka-python met while connecting.

    kafka-python 3.0 keeps trying a bootstrap server that refuses the SASL credentials or the TLS
    handshake (or a client key it cannot open) until its bootstrap timeout, then reports only
    ``Unable to bootstrap``, as if the broker were away; the cause itself is only logged (by
    ``kafka.net.manager`` and ``kafka.net.connection``). It is kept (never a secret: the broker's
    message, or the TLS library's) for :func:`_unreachable` to say.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[float, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, (kerr.SaslAuthenticationFailedError, ssl.SSLError)) or (
                    isinstance(arg, kerr.KafkaConnectionError) and ("Handshake failed" in str(arg) or "[SSL" in str(arg))):
                self.last = (time.monotonic(), _text(arg))
        return True

    def since(self, started: float) -> str | None:
        last = self.last
        return last[1] if last is not None and last[0] >= started else None


_handshakes = _HandshakeRefusals()
for _name in ("kafka.net.manager", "kafka.net.connection"):
    logging.getLogger(_name).addFilter(_handshakes)


def _text(exc: BaseException) -> str:
    """An error as one short text: kafka-python's own message without its ``[Error n] Name:`` prefix."""
    detail = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, KafkaError):
        return detail if detail.startswith(type(exc).__name__) else f"{type(exc).__name__}: {detail}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def refused(who: str, exc: BaseException) -> str:
    """What Kafka refused, and to whom, in one line (an authorization or SASL error)."""
    kind = {kerr.TopicAuthorizationFailedError: "the topic", kerr.GroupAuthorizationFailedError: "the consumer group",
            kerr.TransactionalIdAuthorizationFailedError: "its transactional id",
            kerr.ClusterAuthorizationFailedError: "the cluster"}.get(type(exc))
    if kind:
        arg = str(exc.args[0]) if exc.args else ""
        if arg and " " not in arg:    # kafka-python names the topic or group
            return f"Kafka refused {who}: not authorized for {kind} {arg} ({type(exc).__name__}); {ACLS_HINT}"
        return f"Kafka refused {who}: not authorized for {kind} ({type(exc).__name__}{': ' + arg if arg else ''}); " \
               f"{ACLS_HINT}"
    return f"Kafka refused {who}: {_text(exc)}; check its credentials"


def refusal(config: KafkaConfig, exc: BaseException) -> TransportError:
    return TransportError(refused(config.principal, exc))


def _unreachable(config: KafkaConfig, exc: Exception, started: float | None = None) -> TransportError:
    """The cluster could not be used: unreachable, or it refused the credentials or the TLS handshake
    (``started``: when the failed attempt began; a refusal logged since then is named)."""
    if isinstance(exc, REFUSALS):
        return refusal(config, exc)
    handshake = _handshakes.since(started) if started is not None else None
    if handshake:
        return TransportError(f"cannot connect to Kafka at {config.bootstrap_servers} ({config.security_protocol}) "
                              f"as {config.principal}: {handshake} (check the credentials, the CA file, the client "
                              f"certificate, its key and the key's password)")
    return TransportError(f"cannot reach Kafka at {config.bootstrap_servers} "
                          f"({config.security_protocol}): {type(exc).__name__}: {exc}")


def kafka_client(config: KafkaConfig, build: Callable[..., Any], **settings: Any) -> Any:
    """A kafka-python client of ``config``; what keeps it from starting raised as :class:`TransportError`."""
    started = time.monotonic()
    try:
        return build(**config.client_kwargs(), **settings)
    except (KafkaError, ValueError, OSError) as exc:  # ValueError: unreachable bootstraps; OSError: key/CA files
        raise _unreachable(config, exc, started) from None


# -- topics ---------------------------------------------------------------------------------------
def ensure_topics(config: KafkaConfig, specs: Iterable[TopicSpec], *, replication_factor: int = 1,
                  timeout_s: float = 30) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    specs = list(specs)
    admin = kafka_client(config, KafkaAdminClient, request_timeout_ms=int(timeout_s * 1000))
    try:
        existing = set(admin.list_topics())    # the topics this principal may see
        missing = [s for s in specs if s.name not in existing]
        created, forbidden = [], []
        for spec in missing:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, replication_factor,
                                              topic_configs=dict(spec.configs))], timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:  # another worker created it meanwhile
                pass
            except (kerr.TopicAuthorizationFailedError, kerr.ClusterAuthorizationFailedError):
                # a secured cluster: the operator creates the topics, and a topic this principal
                # may not see is not one it uses (a missing one it uses is reported where it is used)
                forbidden.append(spec.name)
        if created:
            log.info("created topics %s", ", ".join(created))
        if forbidden:
            log.info("not allowed to create or see topics %s as %s: left to the operator", ", ".join(forbidden),
                     config.principal)
        return created
    except KafkaError as exc:
        raise TransportError(f"cannot create topics: {type(exc).__name__}: {exc}") from None
    finally:
        admin.close()


def await_topics(consumer: KafkaConsumer, topics: Iterable[str], *, timeout_s: float = 30,
                 config: KafkaConfig | None = None) -> dict[str, int]:
    """Wait until ``consumer`` knows the partitions of every topic; returns their counts.

    Topics another process has just created take a moment to appear in metadata; a consumer
    that joins its group before then is assigned nothing until its next metadata refresh.
    Topics still unknown after ``timeout_s`` are returned with 0 partitions (the consumer then
    picks them up within ``METADATA_MAX_AGE_MS`` of their creation).

    A topic this principal may not even describe is invisible, as a missing one is: with
    ``config``, a topic not seen at once is asked about, and one Kafka refuses raises
    :class:`TransportError` at once instead of being waited for.
    """
    counts: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    for topic in topics:
        asked = config is None
        while True:
            try:
                partitions = consumer.partitions_for_topic(topic) or set()
            except KafkaError:
                partitions = set()
            if partitions or time.monotonic() >= deadline:
                counts[topic] = len(partitions)
                break
            if not asked:
                asked = True
                _check_describable(config, topic)
            time.sleep(0.2)
    return counts


def _check_describable(config: KafkaConfig, topic: str) -> None:
    """Raise :class:`TransportError` when Kafka refuses ``config``'s principal the topic's metadata
    (a missing topic passes: it may be created in a moment)."""
    try:
        admin = KafkaAdminClient(**config.client_kwargs(), request_timeout_ms=5_000)
    except (KafkaError, ValueError, OSError):
        return                      # not reachable now: the caller goes on waiting
    try:
        found = admin.describe_topics([topic])
    except KafkaError as exc:
        if isinstance(exc, REFUSALS):
            raise refusal(config, exc) from None
        return
    finally:
        admin.close()
    for entry in found:
        if entry.get("error_code") == kerr.TopicAuthorizationFailedError.errno:
            raise refusal(config, kerr.TopicAuthorizationFailedError(topic))


# -- producing ------------------------------------------------------------------------------------
class KeyPartitioner(DefaultPartitioner):
    """The default partitioner's choice for keyed records (Java-compatible murmur2), computed
    faster: a quicker hash and no re-sorting of the partition list for every record."""

    def __init__(self) -> None:
        self._sorted: dict[str, list[int]] = {}

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        if partitions is None:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        ordered = self._sorted.get(topic)
        if ordered is None or len(ordered) != len(partitions):
            ordered = self._sorted[topic] = sorted(partitions)
        return ordered[partition_for(serialized_key, len(ordered))]


def make_producer(config: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all): every acknowledged event is written exactly once per send."""
    settings = {"acks": "all", "enable_idempotence": True, "linger_ms": 10, "batch_size": 256 * 1024,
                "max_request_size": config.max_request_bytes, "retries": 2**31 - 1,
                "delivery_timeout_ms": 120_000, "max_in_flight_requests_per_connection": 5,
                "partitioner": KeyPartitioner()}
    settings.update(overrides)
    return kafka_client(config, KafkaProducer, **settings)


class KafkaSink:
    """Produces each event to its type's topic, keyed by its partition key.

    ``flush`` returns once the broker acknowledged every event sent so far, or raises
    :class:`DeliveryError` if any of them failed.
    """

    def __init__(self, producer: KafkaProducer, topic_for: Callable[[str], str]):
        self._producer, self._topic_for = producer, topic_for
        self._route = Router(producer.partitions_for)
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()
        self.sent = 0

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(exc)

    def _refused(self, exc: BaseException) -> PermanentDeliveryError:
        """Kafka refuses this principal the write: retrying cannot help."""
        return PermanentDeliveryError(refused(principal_of(getattr(self._producer, "config", {})), exc))

    def emit(self, event: Event) -> None:
        try:
            topic = self._topic_for(event.type)
            future = self._producer.send(topic, key=event.key.encode("utf-8"), value=event.to_bytes(),
                                         partition=self._route(topic, event), headers=STRUCTURED)
        except REFUSALS as exc:
            raise self._refused(exc) from None
        except KafkaError as exc:
            raise DeliveryError(f"cannot send {event.type} {event.id}: {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_error)
        self.sent += 1

    def send_raw(self, topic: str, key: str, value: bytes | None, partition: int | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        """A record as it is (a compacted state record; an event already serialised, with
        ``headers=STRUCTURED``)."""
        try:
            future = self._producer.send(topic, key=key.encode("utf-8"), value=value, partition=partition,
                                         headers=headers)
        except REFUSALS as exc:
            raise self._refused(exc) from None
        except KafkaError as exc:
            raise DeliveryError(f"cannot send to {topic}: {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_error)

    def close(self, timeout_s: float = 10) -> None:
        self._producer.close(timeout=timeout_s)

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"flush failed: {type(exc).__name__}: {exc}") from None
        with self._lock:
            failures, self._failures = self._failures, []
        for failure in failures:
            if isinstance(failure, REFUSALS):
                raise self._refused(failure)
        if failures:
            raise DeliveryError(f"{len(failures)} events were not acknowledged; first: "
                                f"{type(failures[0]).__name__}: {failures[0]}")


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


# -- requesting and following -----------------------------------------------------------------------
def publish(config: KafkaConfig, topic: str, events: Iterable[Event], timeout_s: float = 30) -> None:
    producer = make_producer(config)
    try:
        sink = KafkaSink(producer, lambda _type: topic)
        for event in events:
            sink.emit(event)
        sink.flush(timeout_s)
    except PermanentDeliveryError as exc:
        raise TransportError(str(exc)) from None
    finally:
        producer.close(timeout=5)


class Follower:
    """Reads a topic from its current end (or start) without joining a group."""

    def __init__(self, config: KafkaConfig, topic: str, *, from_start: bool = False):
        self._consumer = kafka_client(config, KafkaConsumer, enable_auto_commit=False, isolation_level="read_committed",
                                 group_id=None)
        try:
            if not await_topics(self._consumer, [topic], timeout_s=5, config=config)[topic]:
                raise TransportError(f"topic {topic} does not exist (start a worker once to create it)")
        except TransportError:
            self._consumer.close()
            raise
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        (self._consumer.seek_to_beginning if from_start else self._consumer.seek_to_end)(*tps)
        for tp in tps:  # resolve positions now, so nothing published after this point is missed
            self._consumer.position(tp)

    def to_end(self, timeout_s: float = 30) -> Iterator[InboundMessage]:
        """Every record from the current position to the end the topic had when called."""
        tps = list(self._consumer.assignment())
        ends = self._consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(self._consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, structured_value(r.headers, r.value))

    def messages(self, deadline: float) -> Iterator[InboundMessage]:
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, structured_value(r.headers, r.value))

    def close(self) -> None:
        self._consumer.close()
