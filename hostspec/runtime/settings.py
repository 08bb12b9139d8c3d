"""The worker's settings, and the bound on each partition's backlog."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from hostspec.engine.run import DEFAULT_LOOKBACK
from hostspec.runtime.fairness import DEFAULT_PER_CONNECTION, DEFAULT_PER_TENANT

MAX_BACKLOG = 500          # requests read and not yet ended, per partition, before it is paused


@dataclass(frozen=True)
class WorkerSettings:
    group_id: str = "connector-host"
    concurrency: int = 4             # runs at once in this process, across all its partitions
    session_timeout_ms: int = 45_000
    max_poll_interval_ms: int = 300_000
    grace_s: float = 30.0            # on shutdown, how long running syncs may finish
    retry_backoff_s: float = 1.0     # first wait before re-running a request that hit a transient error ...
    retry_backoff_max_s: float = 60.0  # ... doubling up to this
    status_every: int = 5_000        # a "progress" status every that many records
    batch_size: int = 5_000          # records per transaction
    batch_seconds: float = 10.0      # ... or this long, whichever comes first
    transaction_timeout_ms: int = 15_000
    lookback_s: float = DEFAULT_LOOKBACK.total_seconds()
    request_memory_s: float = 7 * 86_400   # how long request ids are remembered (the requests topic's retention)
    coalesce: bool = True            # requests waiting behind a running one merge into one run
    max_pending_per_connection: int = DEFAULT_PER_CONNECTION   # requests held per connection, ...
    max_pending_per_tenant: int = DEFAULT_PER_TENANT           # ... and per tenant in a partition; more: refused
    state_dir: str | None = None     # local state databases, one per owned partition (default: a temporary folder)
    static_membership: bool = False  # join as a static group member named worker_id
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


__all__ = ["MAX_BACKLOG", "WorkerSettings"]
