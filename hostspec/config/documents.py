"""Connections as documents: the data of ``learning.connection.v1`` events on the control topic.

Pure functions between the three shapes a connection takes:

* a **document** (the event's data): name, revision (and the revision that created it),
  tenant, provider, group, settings with secrets as references, host options, schedule,
  publisher target, who changed it and when;
* an **entry**: the same connection as a table of the connections file, which
  :class:`~hostspec.config.connections.ConnectionStore` validates and the scheduler reads;
* an **event**: the document in its CloudEvent, keyed by the connection's name so that the
  compacted topic keeps the latest one.

The transport (:mod:`hostspec.config.control_topic`) reads and writes them; the admin API and
``connector-host connections import`` build them; nothing here does I/O.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.config.connections import ConnectionStore, describe_messages
from hostspec.errors import DocumentRefused, HostError, SettingsRefused
from hostspec.config.policy import SettingsPolicy
from hostspec.config.schedule import jobs_of

if TYPE_CHECKING:    # the plugin manager is handed in; config needs only its interface
    from hostspec.engine.plugins import HostPluginManager

HOST_OPTIONS = ("max_removal_share", "catalog_complete_days", "progress_lookback_hours", "account_calls_per_second")
SOURCE = "/connector-host/control"
# (connection name, target table, tenant) -> problems by field: the publisher's check of a target
TargetCheck = Callable[[str, Mapping[str, Any], str], dict[str, Any]]


def document(name: str, entry: Mapping[str, Any], *, revision: int, changed_by: str, now: datetime,
             target: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document of a connections-file ``entry`` (``target``: its publisher target, if any)."""
    options = {k: entry[k] for k in HOST_OPTIONS if entry.get(k) is not None}
    return {"connection": name, "revision": revision, "deleted": False, "tenant": entry.get("tenant"),
            "provider": entry.get("provider"), "group_id": entry.get("group_id"),
            "paused": not entry.get("enabled", True), "settings": dict(entry.get("settings") or {}),
            "options": options or None, "schedule": dict(entry["schedule"]) if entry.get("schedule") else None,
            "target": dict(target) if target else None, "changed_by": changed_by, "changed_at": ev.isoformat(now)}


def tombstone(name: str, *, revision: int, changed_by: str, now: datetime, tenant: str | None = None) -> dict[str, Any]:
    """The document that ends connection ``name`` (kept as a record of who deleted it, and of
    whose it was: its dead letters stay that tenant's)."""
    return {"connection": name, "revision": revision, "deleted": True, "tenant": tenant, "provider": None,
            "group_id": None, "paused": False, "settings": None, "options": None, "schedule": None, "target": None,
            "changed_by": changed_by, "changed_at": ev.isoformat(now)}


def entry(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The connections-file table of a (live) document."""
    out: dict[str, Any] = {"tenant": doc["tenant"], "provider": doc["provider"], "group_id": doc["group_id"],
                           "settings": dict(doc["settings"] or {}), "enabled": not doc.get("paused", False)}
    out.update({k: v for k, v in (doc.get("options") or {}).items() if v is not None})
    if doc.get("created_revision") is not None:
        out["created_revision"] = doc["created_revision"]
    if doc.get("schedule"):
        out["schedule"] = dict(doc["schedule"])
    return out


def event(doc: Mapping[str, Any], now: datetime) -> ev.Event:
    name = doc["connection"]
    return ev.make_event(ev.CONNECTION, dict(doc), key=name, source=SOURCE, subject=name, time=now,
                         id_content=f"{name}/{doc['revision']}")


def store(docs: Mapping[str, Mapping[str, Any]], *, source: str, policy: SettingsPolicy | None) -> ConnectionStore:
    """The live connections among ``docs`` (name -> latest document)."""
    return ConnectionStore({name: entry(doc) for name, doc in docs.items() if not doc.get("deleted")},
                           source=source, policy=policy)


def check(doc: Mapping[str, Any], plugins: HostPluginManager, policy: SettingsPolicy,
          target_check: TargetCheck | None = None) -> None:
    """Refuse a document that would not work or breaks the policy, before it is stored.

    :raise SettingsRefused: with the messages of the event schema (:class:`DocumentRefused`),
        the provider's settings schema, the policy or the publisher's target check, by field.
    """
    try:
        ev.validate_data(ev.CONNECTION, dict(doc))
    except ValidationError as exc:
        raise DocumentRefused(f"connection document refused: {describe_messages(exc.messages)}", exc.messages) from None
    if doc.get("deleted"):
        return
    name = doc["connection"]
    try:
        one = store({name: doc}, source="connection", policy=policy)
        one.get(name, plugins)
        one.raw(name)
        jobs_of(name, entry(doc), source="connection")
    except SettingsRefused:
        raise
    except HostError as exc:
        raise SettingsRefused(str(exc), {"connection": [str(exc)]}) from None
    if doc.get("target") is not None and target_check is not None:
        problems = target_check(name, doc["target"], doc["tenant"])
        if problems:
            raise SettingsRefused(f"connection {name!r}: publisher target refused: {describe_messages(problems)}",
                                  {"target": problems})


__all__ = ["HOST_OPTIONS", "TargetCheck", "check", "document", "entry", "event", "store", "tombstone"]
