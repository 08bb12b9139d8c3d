"""Defaults the host registers as a plugin, so providers implement only what differs."""
from __future__ import annotations

from typing import Any, Mapping

from .markers import hookimpl


@hookimpl(trylast=True)
def record_id(record: Mapping[str, Any]) -> str | None:
    value = record.get("id") if isinstance(record, Mapping) else None
    return value if isinstance(value, str) and value else None
