"""Defaults the host registers as a plugin, so providers implement only what differs."""
from __future__ import annotations

from typing import Any, Mapping

from hostspec.errors import scalar_id
from hostspec.markers import hookimpl


@hookimpl(trylast=True)
def record_id(record: Mapping[str, Any]) -> str | None:
    """``record["id"]``, a string or any scalar (an integer id becomes its text)."""
    return scalar_id(record.get("id")) if isinstance(record, Mapping) else None
