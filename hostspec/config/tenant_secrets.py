"""Where each tenant's secrets live: its own namespace, and what an operator shares explicitly.

A secret reference written by a tenant reaches only that tenant's secrets by default:

* an environment variable under ``<root><TENANT>__`` for each allowed root prefix (default
  ``CONNECTOR_SECRET_``): tenant ``acme-eu`` reaches ``CONNECTOR_SECRET_ACME_EU__…`` only. The
  tenant is written upper case, each run of characters other than A-Z and 0-9 as one ``_``, no
  ``_`` at either end; the ``__`` after it ends the namespace, so no tenant's namespace lies
  inside another's (``CONNECTOR_SECRET_ACME__`` is not a prefix of ``CONNECTOR_SECRET_ACME_EU__``);
* a file under ``<dir>/<tenant>/`` for each allowed directory (none by default).

A root holding ``{tenant}`` places the tenant there instead (``CONNECTOR_SECRET_{tenant}__``,
``/run/secrets/{tenant}/connectors``). Anything else is shared only by an operator's explicit
grant, :class:`SharedSecrets` (``[[shared_secrets]]`` in the policy file).

Tenant ids that differ only in case or punctuation (``acme-eu``, ``ACME.EU``) share one
environment namespace: give companies ids that differ in letters or digits.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from hostspec.errors import ConfigError

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
EVERY_TENANT = "*"


def env_tenant(tenant: str | None) -> str | None:
    """The tenant as environment variable names hold it (None: no tenant, or nothing left)."""
    if not tenant:
        return None
    return re.sub(r"[^A-Za-z0-9]+", "_", tenant).strip("_").upper() or None


def dir_tenant(tenant: str | None) -> str | None:
    """The tenant as a directory name (None: no tenant, or one unsafe in a path)."""
    if not tenant or tenant in (".", "..") or "/" in tenant or "\\" in tenant or "\x00" in tenant:
        return None
    return tenant


def env_namespaces(roots: Iterable[str], tenant: str | None) -> list[str]:
    """The variable name prefixes ``tenant`` owns under ``roots``."""
    name = env_tenant(tenant)
    if name is None:
        return []
    return [root.replace("{tenant}", name) if "{tenant}" in root else f"{root}{name}__" for root in roots]


def dir_namespaces(roots: Iterable[str], tenant: str | None) -> list[str]:
    """The directories ``tenant`` owns under ``roots``."""
    name = dir_tenant(tenant)
    if name is None:
        return []
    return [root.replace("{tenant}", name) if "{tenant}" in root else os.path.join(root, name) for root in roots]


@dataclass(frozen=True)
class SharedSecrets:
    """An operator's grant: the variables under ``env_prefix`` (or the files under ``dir``) may be
    named by the ``tenants`` listed (``"*"``: every tenant)."""

    tenants: frozenset[str]
    env_prefix: str | None = None
    dir: str | None = None

    def grants(self, tenant: str | None) -> bool:
        return bool(tenant) and (EVERY_TENANT in self.tenants or tenant in self.tenants)

    @classmethod
    def from_mapping(cls, entry: Any, where: str) -> "SharedSecrets":
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table with env_prefix or dir, and tenants")
        unknown = set(entry) - {"env_prefix", "dir", "tenants"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        prefix, folder, tenants = entry.get("env_prefix"), entry.get("dir"), entry.get("tenants")
        if (prefix is None) == (folder is None):
            raise ConfigError(f"{where}: give exactly one of env_prefix or dir")
        if prefix is not None and not (isinstance(prefix, str) and ENV_NAME.match(prefix)):
            raise ConfigError(f"{where}: env_prefix must be the start of a variable name (A-Z, 0-9, _)")
        if folder is not None and not (isinstance(folder, str) and os.path.isabs(folder)):
            raise ConfigError(f"{where}: dir must be an absolute path")
        if not isinstance(tenants, list) or not tenants or not all(isinstance(t, str) and t for t in tenants):
            raise ConfigError(f"{where}: tenants must list the tenants it is shared with (\"*\": every tenant)")
        return cls(frozenset(tenants), prefix, folder)


def allowed_env_prefixes(roots: Iterable[str], shared: Iterable[SharedSecrets], tenant: str | None) -> list[str]:
    """Every variable name prefix ``tenant`` may name: its own namespaces, then what is shared with it."""
    return env_namespaces(roots, tenant) + [s.env_prefix for s in shared if s.env_prefix and s.grants(tenant)]


def allowed_dirs(roots: Iterable[str], shared: Iterable[SharedSecrets], tenant: str | None) -> list[str]:
    """Every directory ``tenant`` may name files under: its own, then what is shared with it."""
    return dir_namespaces(roots, tenant) + [s.dir for s in shared if s.dir and s.grants(tenant)]


__all__ = ["ENV_NAME", "EVERY_TENANT", "SharedSecrets", "allowed_dirs", "allowed_env_prefixes", "dir_namespaces",
           "dir_tenant", "env_namespaces", "env_tenant"]
