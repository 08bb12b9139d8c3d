"""Whether the Kafka cluster answers this process now: what ``/ready`` says about the broker.

A process's Kafka clients do not say that the broker has gone. kafka-python retries in the
background, a consumer's ``poll()`` keeps returning nothing, a producer with nothing to send
hears nothing; a readiness check built on "polled lately" or "has a group generation" stays
true for minutes after the broker stopped (the issue measured 75 s and counting, on the worker,
the publisher and the admin API alike).

:class:`BrokerProbe` asks instead. A thread of its own sends a cheap request (DescribeCluster,
a Metadata request without topics on older brokers) every ``every_s`` seconds over a client of
its own with short timeouts, and :class:`Liveness` remembers when the cluster last answered.
The broker is *alive* while its last answer is younger than ``window_s``. Why asking, rather
than reading what the process's own clients last heard:

* it is the same check for every process (worker, publisher, scheduler, admin API), whichever
  clients the process uses (kafka-python, or librdkafka for the worker's transactions), without
  reading any client's internals;
* an idle process still knows: a last answer ages whether or not the process has work;
* a hung request cannot hide the outage: aliveness is the age of the last answer, computed when
  ``/ready`` asks, so a probe stuck in a connection attempt still turns *not alive* on time.

The cost is one more connection per process and one small request every few seconds. Any answer
of the broker counts, a refusal too (an ACL that denies DescribeCluster still proves the broker
is there); only the absence of an answer (connection refused, no node, timeout) does not.

With the defaults (a request every 2 s, a window of 7 s), ``/ready`` turns 503 within 7 s of the
broker going away and back to 200 within about 3 s of its return (the probe's client retries its
connection at least every second).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from kafka import KafkaAdminClient
from kafka.errors import BrokerResponseError

from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import kafka_client

log = logging.getLogger(__name__)

EVERY_S = 2.0      # one request this often
WINDOW_S = 7.0     # the broker is alive while its last answer is younger than this
TIMEOUT_S = 3.0    # one request (and a connection attempt) waits this long at most


class Liveness:
    """When the cluster last answered, and whether that is recent enough (pure: the clock is given)."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s, self._clock = window_s, clock
        self.last_answer: float | None = None

    def answered(self) -> None:
        self.last_answer = self._clock()

    def silence(self) -> float | None:
        """Seconds since the last answer (None: never answered)."""
        return None if self.last_answer is None else self._clock() - self.last_answer

    def alive(self) -> bool:
        silence = self.silence()
        return silence is not None and silence < self.window_s


def counts_as_answer(exc: BaseException | None) -> bool:
    """Whether a request's outcome proves the broker is there: a response, an error response
    included (a refusal is an answer); not a connection error, a missing node or a timeout."""
    return exc is None or isinstance(exc, BrokerResponseError)


_running: list["BrokerProbe"] = []    # the probes started in this process, newest last


def broker_answering() -> bool | None:
    """Whether the probe running in this process hears the broker (None: none runs here), for
    what reports on Kafka without a probe of its own (the control topic's gauge)."""
    probes = list(_running)
    return probes[-1].alive() if probes else None


class BrokerProbe:
    """Asks the cluster every ``every_s`` seconds, in a daemon thread, whether it is there
    (see the module's text). :meth:`alive` is what ``/ready`` consults; any thread may call it."""

    def __init__(self, config: KafkaConfig, *, every_s: float = EVERY_S, window_s: float = WINDOW_S,
                 timeout_s: float = TIMEOUT_S, ask: Callable[[], Any] | None = None):
        """:param ask: one request to the cluster (default: DescribeCluster over a client of the
        probe's own); raises when it got no answer. For tests."""
        self._config, self.every_s, self.timeout_s = config, every_s, timeout_s
        self.liveness = Liveness(window_s)
        self._ask = ask or self._describe_cluster
        self._client: Any = None
        self.last_error: BaseException | None = None    # why the last request got no answer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "BrokerProbe":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kafka-liveness", daemon=True)
            self._thread.start()
            _running.append(self)
        return self

    def alive(self) -> bool:
        return self.liveness.alive()

    def probe_once(self) -> bool:
        """Ask once; True when the cluster answered."""
        try:
            self._ask()
            outcome: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - whatever it is, the question is only "did it answer"
            outcome = exc
        if counts_as_answer(outcome):
            self.liveness.answered()
            return True
        self.last_error = outcome
        log.debug("Kafka did not answer the liveness probe: %s: %s", type(outcome).__name__, outcome)
        return False

    def close(self) -> None:
        self._stop.set()
        if self in _running:
            _running.remove(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.timeout_s + 2)
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a client of a broker that is gone
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.probe_once()
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def _describe_cluster(self) -> Any:
        if self._client is None:     # made here, not at start: the broker may be away at start
            timeout_ms = int(self.timeout_s * 1000)
            self._client = kafka_client(self._config, lambda **settings: _admin_client({
                **settings, "request_timeout_ms": timeout_ms, "bootstrap_timeout_ms": timeout_ms,
                "reconnect_backoff_max_ms": 1000}))
        return self._client.describe_cluster()


def _admin_client(settings: dict[str, Any]) -> KafkaAdminClient:
    """A KafkaAdminClient, its IO thread stopped when it cannot bootstrap (kafka-python 3.0 starts
    the thread, then raises from the constructor, and leaves the thread running: a probe retrying
    every few seconds while the broker is away would gather one thread per attempt)."""
    client = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        client.__init__(**settings)    # type: ignore[misc]
    except BaseException:
        for part in ("_client", "_net"):
            closing = getattr(getattr(client, part, None), "close" if part == "_client" else "stop", None)
            if closing is not None:
                try:
                    closing()
                except Exception:  # noqa: BLE001 - the error that matters is the one raised
                    pass
        raise
    return client


__all__ = ["BrokerProbe", "Liveness", "broker_answering", "counts_as_answer"]
