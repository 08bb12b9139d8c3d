"""Exactly-once output: buffered Kafka transactions, each one fenced by the consumer group.

How a run's output stays exactly-once while the fleet changes under it (the design of Kafka
Streams' EOS v2, KIP-447):

* **Nothing is open while a provider is called.** Events are serialized once, size-checked and
  buffered in memory; a checkpoint opens a transaction, writes the buffer and the state records,
  and commits, all at once. A provider that answers one page a minute cannot make a transaction
  time out, and a dead worker leaves at most one short transaction open.
* **Every transaction is fenced.** It first commits its input partition's offset with the
  consumer's *current* group metadata (``send_offsets_to_transaction``); the group coordinator
  checks generation and member id before anything else is written, so a member that was
  evicted or whose generation is gone fails there, with nothing written. kafka-python reports an
  evicted member as generation -1, which the broker would accept without any check; the
  owner's :meth:`Owner.membership` refuses it first.
* **Revocation is a barrier.** The owner (a partition task of the worker) holds its commit lock
  for the whole transaction and refuses to start one once revoked; revocation takes the same
  lock, so when it returns no transaction of that partition is in flight or can start.
* **A new owner sees everything committed.** It fetches the partition's committed offset with
  ``require_stable`` (the coordinator makes it wait while a transaction carrying that offset is
  open) before it restores the partition's state (:mod:`.changelog`).

The run's buffer is :class:`~hostspec.transport.transactional_sink.TransactionalSink`, the
transactional producers :class:`~hostspec.transport.producer_pool.ProducerPool`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Collection, ContextManager, NamedTuple, Protocol

from kafka import KafkaProducer
from kafka import errors as kerr
from kafka.structs import OffsetAndMetadata, TopicPartition

from hostspec.ops import metrics
from hostspec.errors import DeliveryError, PermanentDeliveryError, RunAbandoned
from hostspec.transport.kafka import Partition
from hostspec.transport.stuck import Stuck

log = logging.getLogger(__name__)
MEMBERSHIP_RETRY_S = 60.0        # how long a commit waits for a rebalance to settle before giving up
DEADLINE_MARGIN_S = 5.0          # a transaction step is awaited until transaction_timeout_ms + this

# The group refused the offsets: stale generation, rebalance in progress. Retried with fresh
# metadata while the partition is still ours.
_MEMBERSHIP = (kerr.CommitFailedError, kerr.IllegalGenerationError, kerr.UnknownMemberIdError,
               kerr.RebalanceInProgressError, kerr.CoordinatorLoadInProgressError,
               kerr.CoordinatorNotAvailableError, kerr.NotCoordinatorError, kerr.ConcurrentTransactionsError)
_STALE = (kerr.CommitFailedError, kerr.IllegalGenerationError, kerr.UnknownMemberIdError, kerr.FencedInstanceIdError)
# This producer can never be used again.
_FATAL = (kerr.ProducerFencedError, kerr.InvalidProducerEpochError, kerr.TransactionalIdAuthorizationFailedError,
          kerr.TransactionCoordinatorFencedError, kerr.InvalidTxnStateError, kerr.IllegalStateError)
# Kafka refuses the write itself: retrying the same write cannot succeed.
_PERMANENT = (kerr.MessageSizeTooLargeError, kerr.RecordListTooLargeError, kerr.InvalidTopicError,
              kerr.TopicAuthorizationFailedError, kerr.ClusterAuthorizationFailedError,
              kerr.PolicyViolationError, kerr.InvalidRecordError)


class OutRecord(NamedTuple):
    topic: str
    partition: int | None    # None: chosen by key
    key: bytes
    value: bytes | None      # None: a tombstone
    headers: list[tuple[str, bytes]] | None = None   # STRUCTURED for an event (CloudEvents binding)


class Owner(Protocol):
    """What a transaction needs from the owner of its input partition (a worker's partition task).

    An owner without input (``tp`` None, e.g. a benchmark) commits no offsets and is not fenced.
    """

    tp: Partition | None
    state_partition: int | None

    @property
    def commit_lock(self) -> ContextManager[Any]: ...

    def membership(self) -> Any:
        """The consumer's group metadata, or :class:`RunAbandoned` when the partition is no longer ours."""

    def offset_to_commit(self, finishing: Collection[int]) -> int:
        """The input offset to commit now (``finishing``: the requests this transaction ends)."""

    def finished(self, offset: int) -> None:
        """The request at ``offset`` was ended by a committed transaction."""


class ProducerBroken(DeliveryError):
    """The producer is fenced or in a fatal state: replace it, then redo the work."""


class _AbortFailed(Exception):
    """A failed transaction could not even be aborted: the producer cannot be trusted again."""


def _kind(exc: BaseException) -> str:
    if isinstance(exc, (_AbortFailed, UnconfirmedCommit, Stuck)):
        return "fatal"
    if isinstance(exc, kerr.FencedInstanceIdError):
        return "evicted"
    if isinstance(exc, _MEMBERSHIP):
        return "membership"
    if isinstance(exc, _FATAL):
        return "fatal"
    if isinstance(exc, _PERMANENT):
        return "permanent"
    return "retriable"


class UnconfirmedCommit(Exception):
    """The client reported the commit done, yet records of the transaction were never acknowledged.

    kafka-python 3.0 can do this after a broker outage longer than the transaction timeout: the
    broker aborted the transaction, the client "completes" it without sending EndTxn (and its
    I/O thread then dies). Trusting it would let the next transaction commit a page cursor past
    rows whose events were aborted. The outcome is treated as unknown: the producer is replaced
    and the connection's state is read back from the changelog before its request runs again.
    """


def _bounded(producer: KafkaProducer, start: Callable[[Any], Any], fallback: Callable[[], Any],
             deadline: float) -> None:
    """Run a transactional step of kafka-python and wait for it until ``deadline`` at most.

    kafka-python 3.0's ``send_offsets_to_transaction``, ``commit_transaction`` and
    ``abort_transaction`` wait for the broker without any limit: during an outage the run's
    thread would hold its partition's commit lock, and the revocation behind it the consumer's
    I/O thread, for ever. The same steps are started here through the client's transaction
    manager and awaited with a deadline; past it the producer is treated as unusable
    (:class:`Stuck`), replaced, and the work redone. A stuck transaction cannot commit later:
    it registered with its coordinator at its first step, so the broker aborts it once
    ``transaction_timeout_ms`` has passed (the deadline is set after that point), and the
    replacement producer (same transactional id) fences it.
    """
    manager, sender = getattr(producer, "_transaction_manager", None), getattr(producer, "_sender", None)
    if manager is None or sender is None or not hasattr(sender, "wakeup"):   # another client version
        fallback()
        return
    result = start(manager)
    sender.wakeup()
    if not result.wait(timeout_ms=max(1, int((deadline - time.monotonic()) * 1000))):
        raise Stuck("no answer from Kafka within the transaction's deadline")


def transact(producer: KafkaProducer, records: list[OutRecord], offsets: dict[Partition, int] | None,
             group_metadata: Any) -> dict[int, int]:
    """One transaction: the offsets first (the fence), then the records, then the commit.

    Returns, per partition of the records' topics, the offset after the last record written
    there (``{partition: end}``, of the last record's topic; used for the state topic). Raises
    the client's exception unchanged after aborting when possible; :func:`_kind` tells the
    caller what it means. Every record is checked acknowledged after the commit
    (:class:`UnconfirmedCommit` otherwise).
    """
    config = getattr(producer, "config", {})
    started = time.monotonic()
    deadline = started + config.get("transaction_timeout_ms", 60_000) / 1000 + DEADLINE_MARGIN_S
    producer.begin_transaction()
    futures = []
    try:
        if offsets:
            committed = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
            _bounded(producer, lambda m: m.send_offsets_to_transaction(committed, group_metadata),
                     lambda: producer.send_offsets_to_transaction(committed, group_metadata), deadline)
        for record in records:
            futures.append(producer.send(record.topic, key=record.key, value=record.value,
                                         partition=record.partition, headers=record.headers))
        _bounded(producer, lambda m: m.begin_commit(), producer.commit_transaction, deadline)
    except Exception as exc:
        if _kind(exc) != "fatal":
            try:
                _bounded(producer, lambda m: m.begin_abort(), producer.abort_transaction, time.monotonic() + 30)
            except Exception as abort_exc:
                raise _AbortFailed(f"{type(exc).__name__}: {exc}; then abort failed: "
                                   f"{type(abort_exc).__name__}: {abort_exc}") from exc
        raise
    metrics.TRANSACTION_SECONDS.observe(time.monotonic() - started)
    unconfirmed = [f for f in futures if not f.succeeded()]
    if unconfirmed:
        raise UnconfirmedCommit(f"{len(unconfirmed)} of {len(futures)} records not acknowledged after the commit")
    ends: dict[int, int] = {}
    for record, future in zip(records, futures):
        if record.topic == records[-1].topic:
            ends[future.value.partition] = max(ends.get(future.value.partition, 0), future.value.offset + 1)
    return ends


def commit_fenced(producer: KafkaProducer, owners: list[Owner], records: list[OutRecord], *,
                  finishing: dict[Partition, list[int]] | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> dict[int, int]:
    """Commit ``records`` with the offsets of ``owners`` in one transaction, under their locks.

    Returns what :func:`transact` returns (where the records of the last topic end).

    Retries while a rebalance settles (with fresh group metadata each time) as long as every
    owner still owns its partition.

    :raise ProducerBroken: the producer is fenced or fatal: replace it (nothing was committed).
    :raise RunAbandoned: an owner lost its partition (nothing was committed).
    :raise PermanentDeliveryError: Kafka refuses these records for good.
    :raise DeliveryError: a transient failure (nothing was committed; redo later).
    """
    finishing = finishing or {}
    owners = sorted(owners, key=lambda o: o.tp or ("", -1))   # one lock order everywhere: no deadlock
    deadline = time.monotonic() + MEMBERSHIP_RETRY_S
    pause = 0.1
    while True:
        with _all_locks([o.commit_lock for o in owners]):
            metadata = None
            try:
                for owner in owners:
                    metadata = owner.membership()
            except RunAbandoned as exc:
                metrics.COMMITS_REFUSED.labels("revoked" if "revoked" in str(exc) else "evicted").inc()
                raise
            offsets = {o.tp: o.offset_to_commit(finishing.get(o.tp, ())) for o in owners if o.tp is not None}
            try:
                ends = transact(producer, records, offsets, metadata)
            except Exception as exc:
                kind = _kind(exc)
                if kind == "fatal":
                    raise ProducerBroken(f"producer unusable: {type(exc).__name__}: {exc}") from None
                if isinstance(exc, _STALE):
                    metrics.COMMITS_REFUSED.labels("generation").inc()
                if kind == "evicted":
                    raise RunAbandoned(f"this worker was replaced in its group: {exc}") from None
                if kind == "permanent":
                    raise PermanentDeliveryError(f"Kafka refused the records: {type(exc).__name__}: {exc}") from None
                if kind == "retriable" or time.monotonic() >= deadline or should_stop():
                    raise DeliveryError(f"transaction not committed: {type(exc).__name__}: {exc}") from None
                log.info("transaction refused while the group rebalances (%s); retrying", type(exc).__name__)
            else:
                for owner in owners:
                    for offset in finishing.get(owner.tp, []) if owner.tp is not None else ():
                        owner.finished(offset)
                return ends
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


class _all_locks:
    def __init__(self, locks: list[Any]):
        self._locks = locks

    def __enter__(self) -> None:
        taken = []
        try:
            for lock in self._locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        for lock in reversed(self._locks):
            lock.release()


class Unfenced:
    """An :class:`Owner` with no input partition: transactions without offsets (benchmarks, tools)."""

    tp = None
    state_partition = None

    def __init__(self) -> None:
        self.commit_lock = threading.Lock()

    def membership(self) -> Any:
        return None

    def offset_to_commit(self, finishing: Collection[int]) -> int:
        raise AssertionError("no input partition")

    def finished(self, offset: int) -> None:
        pass


__all__ = ["OutRecord", "Stuck", "UnconfirmedCommit", "Unfenced", "Owner", "ProducerBroken", "commit_fenced", "transact"]
