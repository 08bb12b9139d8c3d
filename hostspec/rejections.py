"""A ``record.rejected`` for a Kafka message a component could not use: the worker's refused
requests (:mod:`hostspec.runtime.dead_letters`) and the publisher's undeliverable events.

The raw message travels with it (UTF-8 text when it decodes, base64 otherwise, cut at
:data:`MAX_RAW_CHARS`) together with where it came from, so it can be inspected and replayed; every
quoted part is bounded (:mod:`hostspec.bounded`).
"""
from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from hostspec import events as ev
from hostspec.bounded import bounded, cut, fit

MAX_RAW_CHARS = 64_000


def raw_text(value: bytes | None) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    try:
        text, encoding = value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(value).decode("ascii"), "base64"
    return cut(text, MAX_RAW_CHARS), encoding


def raw_rejection(*, stage: str, topic: str, partition: int, offset: int, value: bytes | None, reason: str,
                  errors: Any, now: datetime, key: str, source: str, id_content: str,
                  request_id: str | None = None, tenant: str | None = None, connection: str | None = None,
                  provider: str | None = None) -> ev.Event:
    """A ``record.rejected`` for a Kafka message that could not be used, its raw value kept."""
    raw, encoding = raw_text(value)
    data = {"stage": stage, "reason": cut(reason), "errors": bounded(errors), "record_id": request_id, "record": None,
            "request_id": request_id, "run_id": None, "tenant": tenant, "connection": connection,
            "provider": provider, "origin": {"topic": topic, "partition": partition, "offset": offset},
            "raw_value": raw, "raw_encoding": encoding}
    data = fit(data, ["raw_value", "errors"])
    return ev.make_event(ev.RECORD_REJECTED, data, key=key, source=source, subject=request_id, time=now,
                         id_content=id_content)


__all__ = ["MAX_RAW_CHARS", "raw_rejection", "raw_text"]
