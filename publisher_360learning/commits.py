"""Acknowledgement (a part of :class:`.service.PublisherService`): what deliveries produced
(dead letters, parked stats, ledger journal records) is sent and flushed, then their events are
finished and the offsets committed up to the lowest event not finished."""
from __future__ import annotations

import logging
import time

from hostspec.errors import DeliveryError
from hostspec.transport.cloudevents import STRUCTURED

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split

class Commits:
    """The outbox and the offset commits; uses the service's state."""

    def _flush_outbox(self) -> bool:
        """Send what deliveries produced (dead letters, parked stats, journal records) and wait for
        the broker; then their events are finished. False (everything kept) when it failed."""
        self._outbox.extend(self._journal.drain())
        if self._outbox:
            try:
                for topic, partition, key, value in self._outbox:
                    headers = STRUCTURED if topic in self._event_topics else None   # journal records: none
                    self._sink.send_raw(topic, key, value, partition=partition, headers=headers)
                self._sink.flush(timeout_s=60)
            except DeliveryError as exc:
                log.warning("%d records not acknowledged by Kafka (%s); sent again before the next commit",
                            len(self._outbox), exc)
                return False
            self._outbox = []
        for p in self._to_finish:
            p.tracker.finished(p.offset)
        self._to_finish = []
        return True

    def _commit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        self._reread()
        if not force and now - self._last_commit < self.settings.commit_interval_s:
            return
        self._last_commit = now
        if not self._flush_outbox():
            return
        positions = {tp: o.commit_position() for tp, o in self._offsets.items() if tp in self._ready}
        changed = {tp: n for tp, n in positions.items() if self._committed.get(tp) != n}
        if changed and self._consumer.commit_many(changed):
            self._committed.update(changed)
