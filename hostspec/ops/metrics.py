"""Prometheus metrics of the worker, the scheduler and the publisher (prometheus-client).

Served over HTTP by ``--metrics-port`` (``/metrics``). Providers report their API calls through
:func:`provider_call`, :func:`provider_retry` and :func:`rate_limit_wait` (part of the public
``hostspec`` surface); the engine, the worker and the publisher report the rest.

What to alert on (see the README): ``connector_last_success_timestamp_seconds`` older than a
day and a half, ``connector_runs_total{outcome="failed"}`` increasing, ``connector_consumer_lag``
growing, ``publisher_records_total{result="rejected"}`` increasing, parked stats piling up, and
the connections' source unhealthy (``connector_connections_file_ok`` or
``connector_control_topic_ok`` at 0).

The two source gauges are exported only by a process that has that source (:func:`export`): a
process reading the control topic has no connections file, and a gauge it never sets would
read 0 and fire the alert on every control-plane deployment.
"""
from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import Collector

REQUESTS = Counter("connector_requests_total", "Sync requests read by the worker, by what became of them",
                   ["outcome"])  # accepted | merged | refused | too_many_pending | duplicate | forwarded | redelivered | retried
RUNS = Counter("connector_runs_total", "Sync runs that ended", ["provider", "connection", "outcome"])
RUN_SECONDS = Histogram("connector_run_duration_seconds", "Duration of sync runs", ["provider", "scope"],
                        buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600))
RECORDS = Counter("connector_records_total", "Records handled by sync runs", ["provider", "connection", "type", "result"])
PROVIDER_CALLS = Counter("connector_provider_calls_total", "HTTP calls to provider APIs",
                         ["provider", "method", "status"])
PROVIDER_RETRIES = Counter("connector_provider_retries_total", "Provider API calls retried", ["provider", "reason"])
RATE_LIMIT_WAIT = Counter("connector_rate_limit_wait_seconds_total",
                          "Time spent waiting because a provider asked to slow down", ["provider"])
LAST_SUCCESS = Gauge("connector_last_success_timestamp_seconds",
                     "When a connection last synced successfully (Unix time)", ["connection", "scope"])
CONSUMER_LAG = Gauge("connector_consumer_lag", "Records not yet read by this process", ["group", "topic", "partition"])
WORKER_PARTITIONS = Gauge("connector_worker_partitions", "Request partitions of this worker (owned, ready)",
                          ["phase"])
RESTORE_SECONDS = Histogram("connector_state_restore_seconds", "Time to restore one partition's state",
                            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900))
RESTORED_RECORDS = Counter("connector_state_restored_records_total", "State records read while restoring")
RUNS_CANCELLED = Counter("connector_runs_cancelled_total", "Runs stopped because their partition moved",
                         ["reason"])  # revoked | lost | evicted (noticed by the run itself)
TRANSACTION_SECONDS = Histogram("connector_transaction_seconds", "Time from a transaction's start to its commit",
                                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15))
COMMITS_REFUSED = Counter("connector_commits_refused_total",
                          "Transactions not committed because this worker may no longer write for the partition",
                          ["reason"])  # revoked | evicted | generation (refused by the group coordinator)
CONNECTIONS_FILE_OK = Gauge("connector_connections_file_ok", "1 when the connections file last read cleanly, "
                            "0 while a broken change is ignored (the last good version stays in use); "
                            "exported only by a process reading a connections file", registry=None)
CONTROL_TOPIC_OK = Gauge("connector_control_topic_ok", "1 while the control topic is read to its end and "
                         "followed, 0 while it cannot be read or the broker does not answer (the connections "
                         "read stay in use); exported "
                         "only by a process reading the control topic", registry=None)
CONNECTIONS_FILE_ERRORS = Counter("connector_connections_file_errors_total",
                                  "Changes of the connections file that could not be used")
API_REQUESTS = Counter("connector_api_requests_total", "Requests the admin API answered, by route template, "
                       "method and status", ["route", "method", "status"])
API_REQUEST_SECONDS = Histogram("connector_api_request_duration_seconds", "Time the admin API took to answer, "
                                "by route template and method", ["route", "method"],
                                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
SCHEDULED = Counter("connector_scheduled_requests_total", "Sync requests published by the scheduler", ["job"])

REMOVALS_HELD = Counter("connector_removals_held_total", "Courses absent from a listing and not removed by the "
                        "removal guard (a short or disagreeing listing, or more than max_removal_share)",
                        ["connection"])
PUBLISHER_RECORDS = Counter("publisher_records_total", "Records handled by the 360Learning publisher",
                            ["connection", "kind", "result"])
PUBLISHER_CALLS = Counter("publisher_api_calls_total", "HTTP calls to 360Learning", ["method", "status"])
PUBLISHER_RETRIES = Counter("publisher_retries_total", "360Learning calls retried", ["reason"])
PUBLISHER_THROTTLE = Counter("publisher_rate_limit_wait_seconds_total",
                             "Time spent waiting for the client-side rate limits", ["kind"])
PUBLISHER_BULK = Counter("publisher_bulk_operations_total", "360Learning bulk operations", ["type", "status"])
PUBLISHER_BATCH_SECONDS = Histogram("publisher_batch_duration_seconds", "Time to deliver one batch",
                                    buckets=(0.5, 1, 5, 15, 60, 300, 900, 3600))
PUBLISHER_LANE_WAITS = Counter("publisher_lane_waits_total", "Deliveries of one connection put back to wait "
                               "(state: retrying = 360Learning unavailable, config = the company's setting)",
                               ["connection", "state"])
PUBLISHER_LANE_BACKLOG = Gauge("publisher_lane_backlog", "Events of one connection waiting for delivery",
                               ["connection"])
PUBLISHER_LAST = Gauge("publisher_last_delivery_timestamp_seconds",
                       "When a connection's records were last delivered (Unix time)", ["connection"])
PUBLISHER_PARKED = Gauge("publisher_parked_stats", "Stats of one connection parked now (their learner or "
                         "course not in 360Learning yet), as this instance's ledger knows them", ["connection"])
PUBLISHER_PARKED_ALL = Gauge("publisher_parked_stats_all", "Stats parked now across every connection of this "
                             "instance (its ledger's count; 0 when none, so an alert has a series to read)")
PUBLISHER_HELD_BYTES = Gauge("publisher_held_bytes", "Estimated bytes of events held in the lanes, against "
                             "the instance's memory budget (--memory-budget)")
PUBLISHER_LEFT_IN_KAFKA = Counter("publisher_events_left_in_kafka_total", "Events not kept in memory (a full "
                                  "lane, or the memory budget taking them back), read again later", ["cause"])

_STAT_FIELDS = {"courses_emitted": ("course", "emitted"), "courses_unchanged": ("course", "unchanged"),
                "courses_removed": ("removal", "emitted"), "stats_emitted": ("stat", "emitted"),
                "stats_unchanged": ("stat", "unchanged"), "rejected": ("record", "rejected")}


def export(metric: Collector) -> Collector:
    """Export ``metric`` (made with ``registry=None``) from now on; again is harmless."""
    try:
        REGISTRY.register(metric)
    except ValueError:     # registered already
        pass
    return metric


def serve(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` on ``port`` (0: any free port); returns the server (``server_port``)."""
    server, _thread = start_http_server(port, addr)
    return server


def provider_call(provider: str, method: str, status: int | str) -> None:
    PROVIDER_CALLS.labels(provider, method, str(status)).inc()


def provider_retry(provider: str, reason: str) -> None:
    PROVIDER_RETRIES.labels(provider, reason).inc()


def rate_limit_wait(provider: str, seconds: float) -> None:
    RATE_LIMIT_WAIT.labels(provider).inc(max(0.0, seconds))


class RunCounts:
    """Moves the record counters by what a run's counts gained since the last call."""

    def __init__(self, provider: str, connection: str):
        self.provider, self.connection = provider, connection
        self._last: dict[str, int] = {}

    def update(self, counts: Any) -> None:
        for name, (type_, result) in _STAT_FIELDS.items():
            value = getattr(counts, name)
            delta = value - self._last.get(name, 0)
            if delta:
                RECORDS.labels(self.provider, self.connection, type_, result).inc(delta)
                self._last[name] = value


class LagProbe:
    """Updates :data:`CONSUMER_LAG` from a consumer's ``lag()`` at most every ``every_s`` seconds."""

    def __init__(self, consumer: Any, group: str, every_s: float = 10.0):
        self._consumer, self._group, self._every, self._clock = consumer, group, every_s, time.monotonic
        self._next = 0.0

    def __call__(self) -> None:
        if self._clock() < self._next:
            return
        self._next = self._clock() + self._every
        for (topic, partition), lag in self._consumer.lag().items():
            CONSUMER_LAG.labels(self._group, topic, str(partition)).set(lag)
