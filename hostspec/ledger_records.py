"""The delivery facts of a publisher's ledger journal, as the host reads them.

A publisher that keeps a ledger journal (the 360Learning publisher does: a compacted Kafka topic
``<group>.ledger``, :func:`hostspec.topics.ledger_topic`) writes one record per delivered or
refused item, and the admin API reads those records to tell how a connection's deliveries go
(``GET /connections/{name}/delivery``). This module is the shape both keep to; the host knows no
publisher, only this.

A delivery fact:

* key (UTF-8): ``d`` :data:`SEP` *record key*, where the record key is the item's identity
  across runs, its parts joined by :data:`SEP` (``kind, connection, course[, learner[, attempt]]``;
  the same parts, joined by ``/``, are the ``record_id`` of its dead letter and the ``subject`` of
  its parked event);
* value: a JSON object with at least ``connection`` (string), ``tenant`` (string or null),
  ``status`` (:data:`DELIVERED` or :data:`FAILED`) and ``at`` (when, seconds since the epoch);
  the publisher adds its own fields, which the host ignores;
* a tombstone (no value): the fact is withdrawn (the target lost what was delivered: it will be
  sent again).

Records of other keys (the publisher's other facts) are not delivery facts and are skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

SEP = "\x1f"
DELIVERY = "d"            # the key's first part: a delivery fact
DELIVERED = "delivered"   # the target took the item
FAILED = "failed"         # the target (or the publisher's own check) refused it: it is dead-lettered
STATUSES = (DELIVERED, FAILED)


@dataclass(frozen=True)
class DeliveryFact:
    """One item's latest delivery outcome; ``status`` None: the fact was withdrawn (a tombstone),
    and ``connection``, ``tenant`` and ``at`` are then unknown."""

    record_id: str          # the record key, its parts joined by "/" (as dead letters and parked events name it)
    status: str | None
    connection: str | None = None
    tenant: str | None = None
    at: float | None = None


def delivery_key(record_key: str) -> str:
    """The journal key of ``record_key`` (its parts joined by :data:`SEP`)."""
    return DELIVERY + SEP + record_key


def delivery_value(*, connection: str, tenant: str | None, status: str, at: float,
                   **more: Any) -> dict[str, Any]:
    """A delivery fact's value: the fields the host reads, then the publisher's own ``more``."""
    if status not in STATUSES:
        raise ValueError(f"a delivery fact's status is {' or '.join(STATUSES)}, not {status!r}")
    return {**more, "connection": connection, "tenant": tenant, "status": status, "at": at}


def read_fact(key: bytes | str | None, value: bytes | None) -> DeliveryFact | None:
    """The delivery fact of a journal record, or None when the record is not one (another kind of
    fact, or a value that does not keep to the shape: skipped, never an error)."""
    if key is None:
        return None
    try:
        text = key.decode("utf-8") if isinstance(key, bytes) else key
    except UnicodeDecodeError:
        return None
    kind, sep, record_key = text.partition(SEP)
    if kind != DELIVERY or not sep or not record_key:
        return None
    record_id = record_key.replace(SEP, "/")
    if value is None:
        return DeliveryFact(record_id, None)
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not _keeps_to_shape(data):
        return None
    return DeliveryFact(record_id, data["status"], data["connection"], data.get("tenant"), float(data["at"]))


def _keeps_to_shape(data: Any) -> bool:
    return (isinstance(data, Mapping) and isinstance(data.get("connection"), str)
            and isinstance(data.get("tenant"), (str, type(None))) and data.get("status") in STATUSES
            and isinstance(data.get("at"), (int, float)) and not isinstance(data.get("at"), bool))


__all__ = ["DELIVERED", "DELIVERY", "DeliveryFact", "FAILED", "SEP", "STATUSES", "delivery_key", "delivery_value",
           "read_fact"]
