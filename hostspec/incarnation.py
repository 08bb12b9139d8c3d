"""A connection's state belongs to that connection's life: its *incarnation*.

The sync state (fingerprints of what was emitted, watermarks, page cursors, request-done markers:
:mod:`hostspec.engine.state`) says what one 360Learning group already received from one provider
organization. Keyed by the connection's name alone, a connection deleted and created again under
the same name, or pointed at another organization or group, would start from the old state: its
first sync would emit nothing it "already" emitted, to a group that never received it.

So state is keyed by ``tenant/name/<incarnation>``, the incarnation a digest of:

* the **provider**, the **360Learning group**, and the provider's **identity settings**
  (``ProviderInfo.identity_settings``, by default its ``account_setting``; Coursera: ``org_id``):
  which organization's data goes to which group. Changing one of them starts afresh; tuning
  settings (page size, timeouts, a rotated secret) do not;
* the connection's **creation revision** (``created_revision``) when it comes from the control
  topic: the control plane sets it to the revision of the document that created the connection
  (its first, or the first after a deletion) and keeps it on every later change, so a
  connection deleted and created again under the same name is a new incarnation even with the
  same settings. A connections file has no deletions to tell apart: there, only the identity
  counts (a document written before ``created_revision`` existed keeps its state the same way).

The state of an earlier incarnation is never read again; it stays in the state topic until
the run of a later incarnation sweeps it (:mod:`hostspec.engine.run`).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from hostspec.provider import ProviderInfo


def identity_settings(info: ProviderInfo) -> tuple[str, ...]:
    """The settings naming the provider organization a connection reads."""
    if info.identity_settings:
        return info.identity_settings
    return (info.account_setting,) if info.account_setting else ()


def incarnation(info: ProviderInfo, group_id: str, settings: Mapping[str, Any] | Any,
                created_revision: int | None) -> str:
    """The digest naming one life of a connection (16 hex digits); ``settings`` as loaded."""
    identity = {}
    for name in identity_settings(info):
        value = getattr(settings, name, None)
        if value is None and isinstance(settings, Mapping):
            value = settings.get(name)
        identity[name] = None if value is None else str(value)
    parts = [info.name, group_id, identity, created_revision]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def of_connection(scope: str, tenant: str, name: str) -> bool:
    """Whether ``scope`` is the state of an incarnation of connection ``tenant/name`` (this one,
    an earlier one, or one keyed before incarnations existed). Names hold no ``/``."""
    return scope == f"{tenant}/{name}" or scope.rsplit("/", 1)[0] == f"{tenant}/{name}"


__all__ = ["identity_settings", "incarnation", "of_connection"]
