"""What the publisher's parts share: the settings, the Kafka clients and thread pools
(:meth:`.service.PublisherService.run` opens them; the parts read them when they act, never
before), the lanes, the offsets of the partitions served, the outbox and the events finished once
it is acknowledged, the ownership fence, the memory budget and the counts of the summary."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from kafka.errors import KafkaError

from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.kafka import Partition
from hostspec.transport.offsets import OffsetTracker
from hostspec.transport.producers import KafkaSink
from hostspec.transport.routing import Router

from .budget import MemoryBudget
from .journal import LedgerJournal
from .lanes import Lane, Pending
from .ownership import Ownership

if TYPE_CHECKING:
    from .service import ServiceSettings

log = logging.getLogger(__package__ + ".service")     # the service's log, whichever part says it


@dataclass(eq=False)
class Shared:
    settings: ServiceSettings
    budget: MemoryBudget
    ownership: Ownership | None = None        # the fence's lease (set by the service, over the consumer)
    consumer: RequestConsumer | None = None
    sink: KafkaSink | None = None
    route: Router | None = None
    journal: LedgerJournal | None = None
    units: int = 0
    pool: ThreadPoolExecutor | None = None        # the lanes' deliveries
    restorer: ThreadPoolExecutor | None = None    # ledger restores
    lanes: dict[str, Lane] = field(default_factory=dict)
    offsets: dict[Partition, OffsetTracker] = field(default_factory=dict)
    ready: set[Partition] = field(default_factory=set)              # assigned, ledger restored, served
    restoring: dict[Partition, int] = field(default_factory=dict)   # partition -> token of the restore it waits for
    committed: dict[Partition, int] = field(default_factory=dict)
    parked_paused: set[Partition] = field(default_factory=set)
    unit_epochs: dict[int, int] = field(default_factory=dict)       # unit -> restores begun: a delivery settles for one
    busy: dict[Partition, int] = field(default_factory=dict)        # lane batches in flight per partition
    busy_lock: threading.Lock = field(default_factory=threading.Lock)
    outbox: list[tuple[str, int | None, str, bytes | None]] = field(default_factory=list)  # (topic, partition, key, value)
    to_finish: list[Pending] = field(default_factory=list)          # finished once the outbox is acknowledged
    batches: int = 0
    totals: dict[str, int] = field(default_factory=dict)

    def lane(self, connection: str, unit: int) -> Lane:
        lane = self.lanes.get(connection)
        if lane is None:
            lane = self.lanes[connection] = Lane(connection, cap=self.settings.lane_cap)
        lane.unit = unit
        return lane

    def on_partition(self, action: Callable[..., Any], tp: Partition, *args: Any) -> None:
        """Pause, resume or seek ``tp``, unless the group took it away meanwhile (the revocation
        is in the queue; kafka-python raises for a partition no longer assigned)."""
        try:
            action(tp, *args)
        except (KeyError, KafkaError, AssertionError) as exc:
            log.debug("%s of %s[%d] skipped: no longer assigned (%s)", action.__name__, *tp, exc)

    def count(self, what: str, n: int = 1) -> None:
        self.totals[what] = self.totals.get(what, 0) + n


__all__ = ["Shared"]
