"""Rate signals: a worker that was answered 429 tells the others, through a one-partition topic.

Every worker follows the topic from its end (a signal matters for seconds: nothing old is read)
and pauses its own gate of that account (:mod:`hostspec.runtime.ratebudget`). Signals are advisory:
one lost or late only means the other workers learn of the limit from their own 429s.

A signal names the account by its opaque id (:class:`hostspec.accounts.AccountKey`: tenant or
shared account, provider, client id and a digest of the secret), so a 429 answered to one
tenant pauses only the gates of that same account, never another tenant's budget on the same
client id. Ids are not logged.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from hostspec.transport.config import KafkaConfig
from hostspec.transport.follower import Follower
from hostspec.transport.producers import make_producer

log = logging.getLogger(__name__)


class RateSignals:
    def __init__(self, config: KafkaConfig, topic: str, worker_id: str,
                 on_signal: Callable[[str, float], None]):
        self._config, self._topic, self._worker = config, topic, worker_id
        self._on_signal = on_signal
        self._producer: Any = None
        self._closed = threading.Event()
        self._follower = Follower(config, topic)    # from the end, position resolved now
        self._thread = threading.Thread(target=self._follow, daemon=True, name="rate-signals")
        self._thread.start()

    def publish(self, account: str, pause_s: float) -> None:
        """Tell every other worker to pause the account whose id is ``account`` for ``pause_s``
        (fire and forget: called from a run's HTTP call). A duration, not an instant: the clocks
        of two machines differ."""
        try:
            if self._producer is None:
                self._producer = make_producer(self._config, linger_ms=0)
            value = json.dumps({"account": account, "pause_s": pause_s, "worker": self._worker})
            self._producer.send(self._topic, key=account.encode(), value=value.encode())
        except Exception as exc:   # advisory: the others will meet the limit themselves
            log.warning("rate signal not sent: %s", exc)

    def _follow(self) -> None:
        while not self._closed.is_set():
            try:
                for msg in self._follower.messages(time.monotonic() + 1):
                    self._apply(msg.value)
            except Exception as exc:   # the broker away: try again, never stop the worker
                if not self._closed.is_set():
                    log.warning("rate signals not read (%s); trying again", exc)
                    time.sleep(1)

    def _apply(self, value: bytes | None) -> None:
        try:
            signal = json.loads(value or b"")
            account, pause_s, worker = signal["account"], float(signal["pause_s"]), signal.get("worker")
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable rate signal ignored")
            return
        if worker != self._worker:
            self._on_signal(account, pause_s)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._follower.close()
        if self._producer is not None:
            self._producer.close(timeout=2)


__all__ = ["RateSignals"]
