"""Acknowledgement (a part of :class:`.service.PublisherService`): what deliveries produced
(dead letters, parked stats, ledger journal records) is sent and flushed, then their events are
finished and the offsets committed up to the lowest event not finished."""
from __future__ import annotations

import logging
import time

from hostspec.errors import DeliveryError
from hostspec.topics import Topics
from hostspec.transport.cloudevents import STRUCTURED

from .reading import Reader
from .shared import Shared

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split

class Committer:
    """The outbox and the offset commits."""

    def __init__(self, topics: Topics, shared: Shared, reader: Reader):
        self._shared, self._reader = shared, reader
        self._event_topics = {topics.dead_letter, topics.parked}
        self._last_commit = 0.0

    def flush_outbox(self) -> bool:
        """Send what deliveries produced (dead letters, parked stats, journal records) and wait for
        the broker; then their events are finished. False (everything kept) when it failed."""
        sh = self._shared
        sh.outbox.extend(sh.journal.drain())
        if sh.outbox:
            try:
                for topic, partition, key, value in sh.outbox:
                    headers = STRUCTURED if topic in self._event_topics else None   # journal records: none
                    sh.sink.send_raw(topic, key, value, partition=partition, headers=headers)
                sh.sink.flush(timeout_s=60)
            except DeliveryError as exc:
                log.warning("%d records not acknowledged by Kafka (%s); sent again before the next commit",
                            len(sh.outbox), exc)
                return False
            sh.outbox = []
        for p in sh.to_finish:
            p.tracker.finished(p.offset)
        sh.to_finish = []
        return True

    def commit(self, *, force: bool = False) -> None:
        sh = self._shared
        now = time.monotonic()
        self._reader.reread()
        if not force and now - self._last_commit < sh.settings.commit_interval_s:
            return
        self._last_commit = now
        if not self.flush_outbox():
            return
        positions = {tp: o.commit_position() for tp, o in sh.offsets.items() if tp in sh.ready}
        changed = {tp: n for tp, n in positions.items() if sh.committed.get(tp) != n}
        if changed and sh.consumer.commit_many(changed):
            sh.committed.update(changed)
