"""Where a process finds its connections: the connections file (:class:`ConnectionsFile`, re-read
when it changes) or the control topic (:class:`hostspec.config.control_topic.ConnectionLog`); the
protocol both give the worker and the scheduler (:class:`ConnectionSource`)."""
from __future__ import annotations

import os
from typing import Protocol

from hostspec.config.connections import ConnectionStore
from hostspec.config.policy import SettingsPolicy
from hostspec.config.reloading import ReloadingFile
from hostspec.ops import metrics


class ConnectionSource(Protocol):
    """Where a process finds its connections: the connections file (:class:`ConnectionsFile`)
    or the control topic (:class:`hostspec.config.control_topic.ConnectionLog`)."""

    source: str

    def store(self) -> ConnectionStore: ...

    def catch_up(self, timeout_s: float = 5) -> bool: ...


class ConnectionsFile(ReloadingFile[ConnectionStore]):
    """The connections file, re-read when it changes so operators can add connections live
    (:class:`~hostspec.config.reloading.ReloadingFile`: a broken change keeps the last good version)."""

    def __init__(self, path: str | os.PathLike[str], *, policy: SettingsPolicy | None = None):
        metrics.export(metrics.CONNECTIONS_FILE_OK)    # only a process with a connections file has it
        super().__init__(path, lambda p: ConnectionStore.from_file(p, policy=policy), what="connections file",
                         describe=lambda store: f": {len(store.names)} connections",
                         on_ok=lambda: metrics.CONNECTIONS_FILE_OK.set(1),
                         on_error=lambda: (metrics.CONNECTIONS_FILE_OK.set(0), metrics.CONNECTIONS_FILE_ERRORS.inc()))

    @property
    def source(self) -> str:
        return str(self.path)

    def store(self) -> ConnectionStore:
        """The current connections; raises :class:`HostError` only if no version ever read."""
        return self.current()

    def catch_up(self, timeout_s: float = 5) -> bool:
        """Nothing to wait for: :meth:`store` reads the file's latest version."""
        return False


__all__ = ["ConnectionSource", "ConnectionsFile"]
