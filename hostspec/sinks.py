"""Where the engine's events go. Kafka lives in :mod:`hostspec.transport`; these need no broker."""
from __future__ import annotations

import sys
from typing import IO, Protocol

from .events import Event


class Sink(Protocol):
    def emit(self, event: Event) -> None:
        """Accept one event (may buffer)."""

    def flush(self) -> None:
        """Return once every accepted event is durably handed over."""


class MemorySink:
    """Keeps events in a list (tests, embedding)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


class JsonLinesSink:
    """One CloudEvent per line, to a file path or a text stream (``-`` is stdout)."""

    def __init__(self, target: str | IO[str]):
        if isinstance(target, str):
            self._own = target != "-"
            self._out: IO[str] = open(target, "w", encoding="utf-8") if self._own else sys.stdout
        else:
            self._own, self._out = False, target

    def emit(self, event: Event) -> None:
        self._out.write(event.to_json())
        self._out.write("\n")

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self.flush()
        if self._own:
            self._out.close()

    def __enter__(self) -> "JsonLinesSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
