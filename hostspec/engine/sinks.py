"""Where the engine's events go. Kafka lives in :mod:`hostspec.transport`; these need no broker."""
from __future__ import annotations

import os
import sys
from typing import IO, Protocol

from hostspec.errors import DeliveryError
from hostspec.events import Event


class Sink(Protocol):
    def emit(self, event: Event) -> None:
        """Accept one event (may buffer)."""

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        """Make every event emitted so far durable, together with ``state_records``.

        Sinks that cannot store state atomically with events ignore ``state_records`` (the engine
        keeps state in its own store). ``final`` marks the run's last checkpoint: a Kafka sink
        then also commits the request's offset.
        """


class MemorySink:
    """Keeps events in a list (tests, embedding)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.checkpoints = 0

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        self.checkpoints += 1

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


class JsonLinesSink:
    """One CloudEvent per line, to a file path or a text stream (``-`` is stdout).

    A checkpoint flushes and, for a file, fsyncs: state is committed only after its events are
    on disk. A crash between the two re-emits that batch on the next run (at least once).
    """

    def __init__(self, target: str | IO[str]):
        if isinstance(target, str):
            self._own = target != "-"
            self._out: IO[str] = open(target, "w", encoding="utf-8") if self._own else sys.stdout
        else:
            self._own, self._out = False, target

    def emit(self, event: Event) -> None:
        try:
            self._out.write(event.to_json())
            self._out.write("\n")
        except BrokenPipeError:      # ``sync ... | head``: undelivered, the run's state is not committed
            raise DeliveryError("the events' reader closed its end (broken pipe)") from None

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        self._out.flush()
        if self._own:
            os.fsync(self._out.fileno())

    def close(self) -> None:
        self._out.flush()
        if self._own:
            self._out.close()

    def __enter__(self) -> "JsonLinesSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
