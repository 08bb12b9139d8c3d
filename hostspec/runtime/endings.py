"""Ending requests without a run: refused, forwarded, skipped, redelivered.

The main loop collects the endings of one poll and commits them together, one transaction per
partition, with their offsets (:mod:`hostspec.transport.transactions`): nothing blocks a
partition. A revoked partition's endings are dropped (its new owner reads them again); a
transient failure puts them back in their partition's backlog, behind a capped backoff; endings
Kafka refuses for good are replaced by minimal dead letters, and those by the offsets alone.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from hostspec import events as ev
from hostspec.requests import SyncRequest
from hostspec.errors import DeliveryError, PermanentDeliveryError, RunAbandoned, TransportError
from hostspec.ops import metrics
from hostspec.ops.logs import log_context
from hostspec.runtime.dead_letters import refused_request
from hostspec.runtime.resources import Resources
from hostspec.runtime.settings import WorkerSettings
from hostspec.runtime.tasks import PartitionTask
from hostspec.topics import Topics
from hostspec.transport.cloudevents import STRUCTURED
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.transactions import OutRecord, ProducerBroken, commit_fenced

log = logging.getLogger("hostspec.runtime.worker")   # the worker's lines, whichever part says them


@dataclass
class Outgoing:
    """A request the main loop ends without running it: refused, forwarded, skipped, redelivered."""

    task: PartitionTask
    msg: InboundMessage
    records: list[OutRecord]
    outcome: str
    minimal: Callable[[], list[OutRecord]] | None = None   # a smaller ending if Kafka refuses ``records``


class Endings:
    """Builds the endings of requests that do not run, and commits them."""

    def __init__(self, settings: WorkerSettings, topics: Topics, resources: Resources):
        self._settings, self._topics, self._resources = settings, topics, resources

    def record(self, event: ev.Event) -> OutRecord:
        return OutRecord(self._topics.for_type(event.type), None, event.key.encode("utf-8"),
                         event.to_json().encode("utf-8"), STRUCTURED)

    def refusal(self, task: PartitionTask, msg: InboundMessage, reason: str, errors: Any,
                request: SyncRequest | None = None, *, stage: str = "request",
                kind: str = "invalid_request", tenant: str | None = None) -> Outgoing:
        """End a request refused: its dead letter and failed status (with ``tenant``, the
        connection's, when known), and a log line bound to the request like a run's lines."""
        with log_context(request_id=request.request_id if request else None,
                         connection=request.connection if request else None, tenant=tenant,
                         provider=request.provider if request else None):
            log.warning("refused request at %d@%d: %s", msg.partition, msg.offset, reason)

        def events(value: bytes | None, errors: Any) -> list[OutRecord]:
            return [self.record(e) for e in refused_request(
                topic=msg.topic, partition=msg.partition, offset=msg.offset, value=value, reason=reason,
                errors=errors, now=datetime.now(timezone.utc), connection=request.connection if request else None,
                provider=request.provider if request else None, tenant=tenant, worker=self._settings.worker_id,
                stage=stage, kind=kind)]

        return Outgoing(task, msg, events(msg.value, errors), "refused", minimal=lambda: events(None, None))

    def end(self, outgoing: list[Outgoing]) -> None:
        """Commit the endings of requests that did not run, one transaction per partition.

        One partition's failure never touches another's endings: a revoked one is dropped (its
        new owner reads them again), a transient failure puts them back in that partition's
        backlog. Endings Kafka refuses for good are replaced by minimal dead letters, and those
        (should Kafka refuse them too) by the offsets alone, so a partition always moves on.
        """
        by_task: dict[int, list[Outgoing]] = {}
        for o in outgoing:
            if not o.task.revoked.is_set():
                by_task.setdefault(id(o.task), []).append(o)
        for endings in by_task.values():
            self._end_partition(endings)

    def _end_partition(self, endings: list[Outgoing]) -> None:
        pool = self._resources.main_producers
        assert pool is not None
        slot, producer, broken = None, None, False
        try:
            slot, producer = pool.take()
            for attempt in ("whole", "minimal", "offsets only"):
                try:
                    self._commit_endings(producer, endings, attempt)
                    return
                except PermanentDeliveryError as exc:
                    log.error("endings of %d requests refused by Kafka (%s, %s); trying again with less",
                              len(endings), exc, attempt)
            raise DeliveryError("even the offsets alone were refused")
        except RunAbandoned:
            pass    # the partition moved on: its new owner reads these requests again
        except (DeliveryError, TransportError) as exc:
            broken = isinstance(exc, ProducerBroken)
            self._requeue(endings, f"{type(exc).__name__}: {exc}")
        finally:
            if slot is not None:
                pool.give_back(slot, producer, broken=broken)

    def _commit_endings(self, producer: Any, endings: list[Outgoing], attempt: str) -> None:
        records: list[OutRecord] = []
        for o in endings:
            if attempt == "whole":
                records.extend(o.records)
            elif attempt == "minimal":
                records.extend(o.minimal() if o.minimal else o.records)
        task = endings[0].task
        commit_fenced(producer, [task], records, finishing={task.tp: [o.msg.offset for o in endings]})
        task.failures = 0
        for o in endings:
            metrics.REQUESTS.labels(o.outcome).inc()

    def _requeue(self, endings: list[Outgoing], why: str) -> None:
        s = self._settings
        task = endings[0].task
        task.failures += 1
        wait = min(s.retry_backoff_max_s, s.retry_backoff_s * 2 ** min(task.failures, 16))
        log.warning("%d requests of partition %d not ended (%s); trying again in %.0fs", len(endings),
                    task.partition, why, wait)
        for o in sorted(endings, key=lambda o: o.msg.offset, reverse=True):
            task.backlog.appendleft(o.msg)
        task.not_before = time.monotonic() + wait


__all__ = ["Endings", "Outgoing"]
