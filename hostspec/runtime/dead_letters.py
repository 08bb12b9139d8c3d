"""Events for a request the worker refuses: a dead letter, and a failed status when possible.

Pure functions: the worker decides, this module builds. The raw message travels with the dead
letter (UTF-8 text when it decodes, base64 otherwise, cut at ``MAX_RAW_CHARS`` with a hash of the
whole) together with where it came from, so it can be inspected and replayed. Every quoted part
is bounded (:mod:`hostspec.bounded`): a dead letter is never larger than about
``bounded.EVENT_LIMIT`` bytes, whatever the size of what it refuses.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

from hostspec import event_schemas
from hostspec import events as ev
from hostspec.bounded import bounded, cut, fit
from hostspec.engine.report import Counts
from hostspec.rejections import MAX_RAW_CHARS, raw_rejection, raw_text

MAX_ID_CHARS = 200      # a longer request id is refused (see worker.admit), and quoted cut
SOURCE = "/connector-host/worker"


def _parsed(value: bytes | None) -> Any:
    """A raw value as JSON, or None when it is not."""
    try:
        return json.loads(value) if value else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def request_id_of(value: bytes | None) -> str | None:
    """The CloudEvent id of a raw request, when it is readable enough to have one (cut when long)."""
    return _id_of(_parsed(value))


def _id_of(doc: Any) -> str | None:
    rid = doc.get("id") if isinstance(doc, dict) else None
    return cut(rid, MAX_ID_CHARS) if isinstance(rid, str) and rid else None


def _names_of(doc: Any) -> dict[str, str]:
    """The connection and provider a raw request names, when they are well-formed names (a
    refused request's status and dead letter then say whose it was)."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        return {}
    out = {}
    for name in ("connection", "provider"):
        candidate = data.get(name)
        try:
            if isinstance(candidate, str):
                event_schemas.NAME(candidate)
                out[name] = candidate
        except ValidationError:
            pass
    return out


def _final_status(request_id: str, *, tenant: str | None, connection: str | None, provider: str | None,
                  scope: str | None, phase: str, kind: str, message: str, now: datetime, worker: str | None,
                  id_content: str) -> ev.Event:
    """A ``sync.status`` that ends a request which never ran (refused or skipped)."""
    status = {"request_id": request_id, "run_id": None, "tenant": tenant, "connection": connection,
              "provider": provider, "scope": scope, "phase": phase, "dry_run": False, "counts": asdict(Counts()),
              "error": {"kind": kind, "message": cut(message)}, "started_at": None, "ended_at": ev.isoformat(now),
              "worker": worker}
    return ev.make_event(ev.SYNC_STATUS, status, key=ev.partition_key(tenant, connection, provider, "sync"),
                         source=SOURCE, subject=connection or request_id, time=now, id_content=id_content)


def refused_request(*, topic: str, partition: int, offset: int, value: bytes | None, reason: str,
                    errors: Any, now: datetime, connection: str | None = None, provider: str | None = None,
                    tenant: str | None = None, worker: str | None = None, stage: str = "request",
                    kind: str = "invalid_request") -> list[ev.Event]:
    """A ``record.rejected`` dead letter, plus a ``sync.status`` failed when the request id is known.

    ``stage``/``kind``: ``request``/``invalid_request`` for a request refused on arrival,
    ``delivery``/``delivery`` for one whose events Kafka refuses for good.
    """
    doc = _parsed(value)
    request_id = _id_of(doc)
    named = _names_of(doc)       # what a refused request still says about itself
    connection, provider = connection or named.get("connection"), provider or named.get("provider")
    digest = hashlib.sha256(value or b"").hexdigest()
    key = ev.partition_key(tenant, connection, provider, f"request/{request_id or digest[:16]}")
    out = [raw_rejection(stage=stage, topic=topic, partition=partition, offset=offset, value=value,
                         reason=reason, errors=errors, now=now, key=key, source=SOURCE,
                         id_content=f"{topic}/{partition}/{offset}/{digest}", request_id=request_id,
                         tenant=tenant, connection=connection, provider=provider)]
    if request_id is not None:
        out.append(_final_status(request_id, tenant=tenant, connection=connection, provider=provider, scope=None,
                                 phase="failed", kind=kind, message=reason, now=now, worker=worker,
                                 id_content=f"{request_id}/refused"))
    return out


def skipped_request(request_id: str, *, tenant: str, connection: str, provider: str, scope: str, reason: str,
                    now: datetime, worker: str | None) -> ev.Event:
    """A ``sync.status`` ``skipped``: a request id that already ran (a slot published twice)."""
    return _final_status(request_id, tenant=tenant, connection=connection, provider=provider, scope=scope,
                         phase="skipped", kind="duplicate_request", message=reason, now=now, worker=worker,
                         id_content=f"{request_id}/skipped/{ev.isoformat(now)}")
