"""Logging for the host's commands: one handler on stderr, secrets always redacted.

``--log-format json`` writes one JSON object per line (``ts``, ``level``, ``logger``,
``message``, and ``run_id``, ``request_id``, ``tenant``, ``connection``, ``provider`` while a
run or a delivery is in progress); ``text`` is for people; ``auto`` (the default) picks text on
a terminal and JSON otherwise (a container, a file, a pipe).

Code sets the context with ``with log_context(run_id=…, connection=…):``; it follows the thread
(and asyncio task) it was set in.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from hostspec.secrets import install_log_redaction

CONTEXT_FIELDS = ("run_id", "request_id", "tenant", "connection", "provider")
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context", default={})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record emitted inside the block (in this thread)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, value)
        return True


class KafkaNoise(logging.Filter):
    """Drops kafka-python's records about what is normal on a fresh cluster or an absent broker:
    connection attempts (the host says once, in one line, when the cluster cannot be reached),
    a coordinator or a topic's metadata not there yet. Shown at DEBUG level."""

    PATTERNS = ("Connection lost", "Bootstrap", "not ready", "ECONNREFUSED", "Unable to bootstrap",
                "NotCoordinator", "No partition metadata", "CoordinatorNotAvailable", "connect attempt",
                "Unable to connect", "LEADER_NOT_AVAILABLE", "UnknownTopicOrPartition")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        message = record.getMessage()
        return not any(p in message for p in self.PATTERNS)


class ConnectionErrorLimit(logging.Filter):
    """At most one connection-error line per broker every ``interval_s``.

    With the broker away, every client of a process reports each reconnection attempt and each
    failed metadata refresh (kafka-python: ``No node available for metadata refresh``,
    ``Connection failed``, ``socket disconnected`` …; librdkafka, the worker's transactional
    producers with ``KAFKA_CLIENT=confluent``: its ``FAIL`` lines): a worker wrote about 40 such
    lines a second. This filter lets the first line about a broker through, drops the others about
    it for ``interval_s``, and then lets the next one through with the count of those it dropped.
    A line names its broker by address (``host:port``) or node id; a line naming none counts
    against ``any broker``. Other records, and kafka-python's records below WARNING, pass
    untouched. Shown all at DEBUG level.
    """

    PATTERNS = ("No node available", "ECONNREFUSED", "Connection refused", "Connection failed", "Connection lost",
                "socket disconnected", "Abort (", "Metadata refresh: failed", "Request timed out", "Bootstrap",
                "Unable to connect", "KafkaConnectionError", "NodeNotReadyError", "connect attempt",
                "Error receiving network data", "Error sending request data", "Connection reset")
    LIBRDKAFKA = "hostspec.transport.librdkafka"     # librdkafka's log, as hostspec.transport.librdkafka hands it on
    _ADDRESS = re.compile(r"\b((?:\d{1,3}\.){3}\d{1,3}|\[[0-9a-fA-F:]+\]|[A-Za-z][\w.-]*):(\d{2,5})(?![\d.])")
    _NODE = re.compile(r"node_id=([\w-]+)")

    def __init__(self, interval_s: float = 30.0, clock: Any = time.monotonic):
        super().__init__()
        self.interval_s, self._clock = interval_s, clock
        self._windows: dict[str, list[float]] = {}    # broker -> [window start, lines dropped since]
        self._lock = threading.Lock()

    @classmethod
    def broker_of(cls, message: str) -> str:
        address = cls._ADDRESS.search(message)
        if address:
            return f"{address.group(1)}:{address.group(2)}"
        node = cls._NODE.search(message)
        return f"node {node.group(1)}" if node else "any broker"

    @classmethod
    def is_connection_error(cls, logger: str, level: int, message: str) -> bool:
        if logger == cls.LIBRDKAFKA:
            return message.startswith("FAIL ")
        return logger.startswith("kafka") and level >= logging.WARNING and any(p in message for p in cls.PATTERNS)

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name.startswith("kafka") or record.name == self.LIBRDKAFKA):
            return True
        message = record.getMessage()
        if not self.is_connection_error(record.name, record.levelno, message):
            return True
        broker = self.broker_of(message)
        with self._lock:
            now = self._clock()
            window = self._windows.get(broker)
            if window is not None and now - window[0] < self.interval_s:
                window[1] += 1
                return False
            self._windows[broker] = [now, 0]
        if window is not None and window[1]:
            record.msg = (f"{message} ({int(window[1])} more connection errors about {broker} in the last "
                          f"{now - window[0]:.0f}s not shown)")
            record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (the message already redacted by the handler's filter)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key in CONTEXT_FIELDS:
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{k}={getattr(record, k)}" for k in ("connection", "run_id") if hasattr(record, k))
        return f"{text} [{context}]" if context else text


def setup_logging(level: str = "WARNING", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # kafka-python narrates every connection at INFO; keep its warnings and errors only, and not
    # those a fresh cluster or an absent broker always produce (the host reports those itself)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    if root.level > logging.DEBUG:
        handler.addFilter(KafkaNoise())
        handler.addFilter(ConnectionErrorLimit())
    install_log_redaction(root)
