"""A provider's own memory between runs (``context.state``): small JSON values under keys the
provider chooses, kept in the connection's sync state (:mod:`hostspec.engine.state`).

Writes travel with the run's events: they wait in the run's state session and are committed by
the same checkpoint as the events emitted before them (with the Kafka worker, in the same
transaction, as changelog records), so a crash loses both or neither. A dry run keeps none. A
connection pointed at another organization starts with an empty memory (its state scope is new:
:mod:`hostspec.incarnation`).

Use it for what the provider's API cannot say again on the next run (LinkedIn Learning keeps
the per-day report values it adds up into lifetime totals). Keep each value small: one key per
learner and course, not one key holding every learner.
"""
from __future__ import annotations

import json
from typing import Any, Callable

PREFIX = "provider:"   # the checkpoint names of provider memory; the host's own never start so


class ProviderState:
    """``get(key)`` / ``put(key, value)`` over the run's state (or a scratch dict outside runs)."""

    def __init__(self, read: Callable[[str], Any], write: Callable[[str, Any], None]):
        self._read, self._write = read, write

    @classmethod
    def of_session(cls, session: Any) -> "ProviderState":
        """The memory of the connection a run's :class:`hostspec.engine.state.StateSession` belongs to."""
        return cls(lambda key: session.checkpoint(PREFIX + key),
                   lambda key, value: session.set_checkpoint(PREFIX + key, value))

    @classmethod
    def scratch(cls) -> "ProviderState":
        """A memory that lasts as long as the object (hooks called outside a sync: tests, checks)."""
        memory: dict[str, Any] = {}
        return cls(memory.get, lambda key, value: memory.__setitem__(key, value) if value is not None
                   else memory.pop(key, None))

    def get(self, key: str, default: Any = None) -> Any:
        value = self._read(key)
        return default if value is None else json.loads(json.dumps(value))   # a copy the caller may change

    def put(self, key: str, value: Any) -> None:
        """Remember ``value`` (JSON: dicts, lists, strings, numbers, booleans) under ``key``;
        ``None`` forgets the key."""
        if not isinstance(key, str) or not key:
            raise ValueError("a provider state key is a non-empty string")
        self._write(key, None if value is None else json.loads(json.dumps(value, allow_nan=False)))


__all__ = ["PREFIX", "ProviderState"]
