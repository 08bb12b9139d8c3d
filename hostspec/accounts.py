"""Whose call budget a connection spends: the provider account as the host identifies it.

A provider limits calls per API client (Coursera: per ``client_id``), but the client id is a
setting tenants write: keyed by it alone, any tenant naming another's client id would share,
lower and pause that tenant's budget. So an account is identified by what only its owner holds:

* **By default, tenant + provider + client id + a digest of the secret.** Only connections of
  the same tenant that hold the same secret share a budget (and only they can lower it, with
  ``account_calls_per_second``, or pause it, with their 429s). A second tenant naming the same
  client id gets its own budget, whatever secret it gives; so does a connection of the same
  tenant holding another secret (a wrong one fails with its own 401).
* **Shared across tenants only when the operator says so**, in the settings policy
  (:mod:`hostspec.config.policy`)::

      [shared_accounts."coursera/acme-app"]   # provider/client id
      tenants = ["acme", "acme-eu"]            # who shares it (holding the same secret)
      calls_per_second = 8                     # its budget, whatever the connections say

  The connections of the listed tenants that hold the same secret share that budget; tenants'
  ``account_calls_per_second`` do not change it. Other tenants naming the client id still get
  budgets of their own.

An :class:`AccountKey` has a ``name`` safe to log (``acme:coursera/acme-app``, or
``coursera/acme-app (shared)``; never the secret nor its digest) and an opaque ``id`` derived
from the owner, the account and the secret's digest, which keys the gates and the rate signals
workers exchange (an id is never logged). The digest lives in memory only.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from hostspec.errors import ConfigError, SecretUnavailable
from hostspec.secrets import Secret

if TYPE_CHECKING:
    from hostspec.engine.plugins import HostPluginManager
    from hostspec.provider import Connection

SHARED = "shared"
_ID_LABEL = b"hostspec.accounts.v1"


@dataclass(frozen=True)
class SharedAccount:
    """An operator's declaration: ``tenants`` share the account, whose budget is ``calls_per_second``."""

    tenants: frozenset[str]
    calls_per_second: int


@dataclass(frozen=True)
class AccountKey:
    """One budget: ``name`` for people and logs, ``id`` for gates and signals; ``budget`` the
    operator's calls per second (shared accounts) or None (the connections' own)."""

    name: str
    id: str = field(repr=False)
    budget: int | None = None


def account_key(connection: "Connection", plugins: "HostPluginManager",
                shared: Mapping[str, SharedAccount] | None = None) -> AccountKey | None:
    """The budget ``connection`` spends, or None for a provider that names no account."""
    info = plugins.provider(connection.provider).info
    if not info.account_setting:
        return None
    account = _setting(connection.settings, info.account_setting)
    if not account:
        return None
    label = f"{connection.provider}/{account}"
    declared = (shared or {}).get(label)
    if declared is not None and connection.tenant in declared.tenants:
        owner, name, budget = [SHARED], f"{label} ({SHARED})", declared.calls_per_second
    else:
        owner, name, budget = ["tenant", connection.tenant], f"{connection.tenant}:{label}", None
    secrets = [(s, _setting(connection.settings, s)) for s in sorted(info.secret_fields)]
    return AccountKey(name, _id([*owner, connection.provider, str(account)], _secret_digest(secrets)), budget)


def shared_accounts(doc: Any, *, source: str) -> dict[str, SharedAccount]:
    """The ``[shared_accounts]`` table of a policy file. :raise ConfigError:"""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: shared_accounts must map \"provider/client id\" to tables")
    out = {}
    for label, entry in doc.items():
        where = f"{source}: shared_accounts.{label!r}"
        if not isinstance(label, str) or label.count("/") < 1 or not all(label.split("/", 1)):
            raise ConfigError(f"{where}: the name must be \"provider/client id\"")
        if not isinstance(entry, Mapping) or set(entry) != {"tenants", "calls_per_second"}:
            raise ConfigError(f"{where}: must have exactly tenants (a list) and calls_per_second")
        tenants, calls = entry["tenants"], entry["calls_per_second"]
        if not isinstance(tenants, list) or not tenants or not all(isinstance(t, str) and t for t in tenants):
            raise ConfigError(f"{where}: tenants must be a non-empty list of tenant names")
        if isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls <= 10_000:
            raise ConfigError(f"{where}: calls_per_second must be a whole number from 1 to 10000")
        out[label] = SharedAccount(frozenset(tenants), calls)
    return out


def _setting(settings: Any, name: str) -> Any:
    value = getattr(settings, name, None)
    if value is None and isinstance(settings, Mapping):
        value = settings.get(name)
    return value


def _secret_digest(secrets: list[tuple[str, Any]]) -> bytes:
    """A digest of the connection's secret values (in memory only). A secret that cannot be read
    counts by its reference: its runs fail before any call, and it shares nothing with a readable one."""
    h = hashlib.sha256(_ID_LABEL + b"\0secret")
    for name, value in secrets:
        if isinstance(value, Secret):
            try:
                text = "value\0" + value.reveal()
            except SecretUnavailable:
                text = "unavailable\0" + value.reference
        else:
            text = "value\0" + ("" if value is None else str(value))
        h.update(f"\0{name}\0{text}".encode("utf-8"))
    return h.digest()


def _id(parts: list[str], digest: bytes) -> str:
    encoded = json.dumps(parts).encode("utf-8")      # unambiguous, whatever the names hold
    return hashlib.sha256(_ID_LABEL + b"\0id\0" + encoded + b"\0" + digest).hexdigest()[:32]


__all__ = ["SHARED", "AccountKey", "SharedAccount", "account_key", "shared_accounts"]
