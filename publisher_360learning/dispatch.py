"""Lanes delivering (a part of :class:`.service.PublisherService`): the lanes that are due are
started round robin in the lane threads, a company's lanes taking at most its bulk slots; each
delivery's outcome is accounted for once it ends (succeeded, failed and waiting, revoked)."""
from __future__ import annotations

import logging
import time
from collections import Counter

from hostspec.credentials import CredentialKey
from hostspec.ops import metrics

from . import contract
from .delivery import Outcome
from .errors import TargetConfigError, TransientError
from .lanes import BACKOFF_S, Lane, Pending
from .ownership import Fence, LaneRevoked

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split

class Dispatch:
    """Starting deliveries and accounting for their outcomes; uses the service's state."""

    def _company(self, connection: str) -> CredentialKey | None:
        """The credential the connection delivers with (host, client id, secret's digest): the
        connections holding it wait together; another secret naming the same client id is
        another credential and never makes them wait."""
        target = self.deliverer.targets.get(connection)
        if target is None:
            return None
        try:
            return self.deliverer.credential(target)
        except TargetConfigError:
            return None

    def _dispatch(self) -> None:
        """Start the lanes that are due, round robin, while threads are free; one company's lanes
        take at most ``company_lanes`` of them (its bulk slots), so the others always get theirs."""
        s = self.settings
        now = time.monotonic()
        ready_units = {p % self._units for _t, p in self._ready}
        if self._company_wait:     # waits over are forgotten
            self._company_wait = {k: until for k, until in self._company_wait.items() if until > now}
        companies = Counter(self._company(lane.connection) for lane, _batch, _epoch in self._running.values())
        lanes = list(self._lanes.values())
        first = self._dispatch_from % len(lanes) if lanes else 0
        for i, lane in enumerate(lanes[first:] + lanes[:first]):
            if len(self._running) >= s.concurrency:
                return
            metrics.PUBLISHER_LANE_BACKLOG.labels(lane.connection).set(len(lane.queue))
            if not lane.due(now, batch_size=s.batch_size, batch_seconds=s.batch_seconds):
                continue
            company = self._company(lane.connection)
            if now < self._company_wait.get(company, 0.0):
                continue                 # another connection of this company just failed: wait with it
            if company is not None and companies[company] >= self._company_lanes:
                continue                 # the company's bulk slots are all taken: other companies first
            if not lane.queue and lane.unit not in ready_units:
                lane.tags_due = None     # tags of a unit given up: its new owner merges them
                continue
            batch = lane.take(s.batch_size, self._budget.batch_bytes(s.concurrency))
            lane.tags_due = None         # a delivery runs the tags step too
            partitions = {p.tp for p in batch} or {tp for tp in self._ready if tp[1] % self._units == lane.unit}
            fence = self._ownership.fence(partitions)
            with self._busy_lock:
                for p in batch:
                    self._busy[p.tp] = self._busy.get(p.tp, 0) + 1
            future = self._pool.submit(self._deliver, lane.connection, batch, not lane.settled, fence)
            self._running[future] = (lane, batch, self._unit_epochs.get(lane.unit, 0))
            companies[company] += 1
            self._dispatch_from = first + i + 1

    def _deliver(self, connection: str, batch: list[Pending], settle: bool,
                 fence: Fence) -> tuple[Outcome | None, BaseException | None, list]:
        """In a lane's thread: (outcome, None, journal records) or (None, the error, journal records).
        The journal records are returned either way: what the ledger learnt must reach Kafka.
        Marks its partitions idle itself when done: a revocation waits on that while the poll
        loop may be blocked in the rebalance."""
        started = time.monotonic()
        with self._journal.capturing() as journal:
            try:
                return self.deliverer.deliver_connection(connection, [p.item for p in batch], settle=settle,
                                                         fence=fence), None, journal
            except Exception as exc:
                return None, exc, journal
            finally:
                metrics.PUBLISHER_BATCH_SECONDS.observe(time.monotonic() - started)
                with self._busy_lock:
                    for p in batch:
                        self._busy[p.tp] -= 1

    def _finish_done(self) -> None:
        for future in [f for f in self._running if f.done()]:
            lane, batch, epoch = self._running.pop(future)
            outcome, error, journal = future.result()
            self._outbox.extend(journal)
            if error is None:
                self._lane_succeeded(lane, batch, outcome, epoch)
            elif isinstance(error, LaneRevoked):     # its partitions were given up: their new owner delivers
                lane.requeue([p for p in batch if self._current(p)])    # (those still ours: tried again)
                log.info("connection %s: delivery of %d events stopped: %s", lane.connection, len(batch), error)
            elif isinstance(error, TransientError):
                self._lane_failed(lane, batch, error, config=error.code == contract.BULK_DISABLED)
            else:   # a bug, or something no one foresaw: retried, then dead-lettered
                lane.bugs += 1
                if lane.bugs < self.settings.max_batch_failures:
                    log.error("connection %s: delivery failed unexpectedly (%d in a row)", lane.connection, lane.bugs,
                              exc_info=error)
                    self._lane_failed(lane, batch, error)
                    continue
                log.error("connection %s: delivery failed unexpectedly %d times in a row; dead-lettering its %d "
                          "events", lane.connection, lane.bugs, len(batch), exc_info=error)
                outcome = Outcome()
                with self._journal.capturing() as journal:
                    for p in batch:
                        outcome.dead.append(self.deliverer.rejected(p.item, "publisher_error",
                                                                    f"{lane.bugs} attempts failed; see the log"))
                self._outbox.extend(journal)
                outcome.counts["publisher_error"] = len(batch)
                self._lane_succeeded(lane, batch, outcome, epoch)

    def _current(self, p: Pending) -> bool:
        return self._offsets.get(p.tp) is p.tracker and p.tp in self._ready

    def _lane_failed(self, lane: Lane, batch: list[Pending], exc: BaseException, *, config: bool = False) -> None:
        bugs = lane.bugs
        wait = lane.failed([p for p in batch if self._current(p)], f"{type(exc).__name__}: {exc}", config=config)
        lane.bugs = bugs
        company = self._company(lane.connection)
        if company is not None and isinstance(exc, TransientError):
            self._company_wait[company] = max(self._company_wait.get(company, 0.0), lane.not_before)
        metrics.PUBLISHER_LANE_WAITS.labels(lane.connection, lane.state).inc()
        if config:
            log.error("connection %s: 360Learning refuses bulk operations for this company (%s): an administrator "
                      "must enable its bulk API. %d events wait; asking again in %.0fs", lane.connection, exc,
                      len(lane.queue), wait)
        else:
            log.warning("connection %s: %d events not delivered (%s); this connection tries again in %.0fs, "
                        "the others go on", lane.connection, len(batch), exc, wait)

    def _lane_succeeded(self, lane: Lane, batch: list[Pending], outcome: Outcome, epoch: int) -> None:
        for event in [*outcome.dead, *outcome.parked]:
            topic = self.topics.for_type(event.type)
            self._outbox.append((topic, self._route(topic, event), event.key, event.to_bytes()))
        self._to_finish.extend(p for p in batch if self._current(p))
        lane.succeeded()
        if epoch == self._unit_epochs.get(lane.unit, 0):
            lane.settled = True        # settled under the unit's current ownership, not a stale one's
        if outcome.tags_pending:
            lane.tags_due = time.monotonic() + BACKOFF_S[3]
        self.batches += 1
        for k, v in outcome.counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        if batch:
            log.info("connection %s: %d events: %s", lane.connection, len(batch),
                     ", ".join(f"{k}={v}" for k, v in sorted(outcome.counts.items())) or "nothing to deliver")
