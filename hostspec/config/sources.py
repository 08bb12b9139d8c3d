"""What a process reads its connections from: the protocol the worker and the scheduler share."""
from __future__ import annotations

from typing import Protocol

from hostspec.config.connections import ConnectionStore


class ConnectionSource(Protocol):
    """Where a process finds its connections: the connections file
    (:class:`hostspec.runtime.worker.ConnectionsFile`) or the control topic
    (:class:`hostspec.config.control_topic.ConnectionLog`)."""

    source: str

    def store(self) -> ConnectionStore: ...

    def catch_up(self, timeout_s: float = 5) -> bool: ...


__all__ = ["ConnectionSource"]
