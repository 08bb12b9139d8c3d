"""Who calls the admin API: bearer tokens, each naming a principal with a role.

Roles (what each may do: :mod:`hostspec.control.access`):

* ``platform_admin``: every connection of every tenant, and the audit trail;
* ``tenant_admin``: one tenant's connections, syncs, runs, dead letters and re-drives;
* ``tenant_trigger``: one tenant's syncs (requested) and runs (read).

Tokens come from two places:

* a **tokens file** (``--tokens-file``, ``$CONNECTOR_HOST_API_TOKENS_FILE``), TOML tables
  ``[tokens.NAME]`` with ``sha256`` (the hex SHA-256 of the token: the token itself is never
  stored), ``role`` and, for the tenant roles, ``tenant``. It is re-read when it changes
  (:class:`~hostspec.config.reloading.ReloadingFile`): a token is added, rotated or revoked without a
  restart; a change that does not read is logged and the version read before stays in use.
  ``connector-host api-token`` writes entries (a new random token, printed once);
* ``--token NAME=env:VAR`` / ``NAME=file:/path`` (or ``$CONNECTOR_HOST_API_TOKENS``), the way
  tokens were given before roles: each is a **platform admin**, the powers such a token always
  had, read at each call so a rotated file takes effect at once.

Tokens are compared by digest and in constant time; the principal's name is the author of its
changes (``api:NAME``). Nothing here ever logs, raises or shows a token or a digest.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hostspec.config.connections import read_toml
from hostspec.errors import ConfigError, HostError
from hostspec.event_schemas import ROLES
from hostspec.config.reloading import ReloadingFile
from hostspec.secrets import Secret

PLATFORM_ADMIN, TENANT_ADMIN, TENANT_TRIGGER = ROLES
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"sha256", "role", "tenant"}


@dataclass(frozen=True)
class Principal:
    """Who a token stands for; ``tenant`` is None for a platform admin."""

    name: str
    role: str
    tenant: str | None = None

    @property
    def actor(self) -> str:
        return f"api:{self.name}"

    @property
    def platform(self) -> bool:
        return self.role == PLATFORM_ADMIN

    def sees(self, tenant: str | None) -> bool:
        """Whether an object of ``tenant`` is this principal's to see."""
        return self.platform or (tenant is not None and tenant == self.tenant)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _entry(path: Path, name: str, table: Any) -> tuple[str, Principal]:
    where = f"tokens file {path}, [tokens.{name}]"
    if not _NAME.match(name):
        raise ConfigError(f"{where}: the name must be 1-128 letters, digits, '_', '.', ':' or '-'")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table with sha256, role (and tenant)")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)} (a token is given as its sha256 only)")
    sha, role, tenant = table.get("sha256"), table.get("role"), table.get("tenant")
    if not isinstance(sha, str) or not _DIGEST.match(sha):
        raise ConfigError(f"{where}: sha256 must be the token's SHA-256 in 64 lowercase hex digits")
    if role not in ROLES:
        raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}")
    if role == PLATFORM_ADMIN and tenant is not None:
        raise ConfigError(f"{where}: a platform_admin has no tenant")
    if role != PLATFORM_ADMIN and (not isinstance(tenant, str) or not _NAME.match(tenant)):
        raise ConfigError(f"{where}: a {role} needs its tenant (a tenant name)")
    return sha, Principal(name, role, tenant)


def read_tokens_file(path: Path, reserved: frozenset[str] = frozenset()) -> dict[str, Principal]:
    """Digest -> principal of every entry. :raise ConfigError: the file or an entry is wrong
    (the message names the file and the entry, never a digest)."""
    doc = read_toml(path, "tokens")
    tables = doc.get("tokens", {})
    if not isinstance(tables, dict) or set(doc) - {"tokens"}:
        raise ConfigError(f"tokens file {path}: only [tokens.NAME] tables belong here")
    out: dict[str, Principal] = {}
    for name, table in tables.items():
        sha, principal = _entry(path, name, table)
        if name in reserved:
            raise ConfigError(f"tokens file {path}, [tokens.{name}]: the name is also given by --token")
        if sha in out:
            raise ConfigError(f"tokens file {path}: [tokens.{name}] and [tokens.{out[sha].name}] have the same "
                              f"token")
        out[sha] = principal
    return out


class Tokens:
    """The principals the API knows, from ``--token`` references and a tokens file."""

    def __init__(self, refs: Mapping[str, Secret] | None = None, file: str | os.PathLike[str] | None = None):
        self._refs = dict(refs or {})
        reserved = frozenset(self._refs)
        self._file = None if file is None else ReloadingFile(
            file, lambda p: read_tokens_file(p, reserved), what="API tokens file",
            describe=lambda found: f": {len(found)} tokens")
        if self._file is not None:
            self._file.current()          # a wrong file fails at start, with its name and entry

    def authenticate(self, given: str) -> Principal | None:
        """The principal of bearer token ``given``, or None."""
        found: Principal | None = None
        if self._file is not None:
            sha = digest(given)
            for known, principal in self._file.current().items():
                if hmac.compare_digest(known, sha):
                    found = principal
        for name, secret in self._refs.items():
            try:
                expected = secret.reveal()
            except HostError:
                continue
            if hmac.compare_digest(given.encode(), expected.encode()):
                found = Principal(name, PLATFORM_ADMIN)
        return found

    def check(self) -> None:
        """Every ``--token`` reference resolves (a dangling one fails at start, with its name)."""
        for secret in self._refs.values():
            secret.reveal()

    def describe(self) -> str:
        parts = [f"{len(self._refs)} platform admin tokens by --token"] if self._refs else []
        if self._file is not None:
            parts.append(f"{len(self._file.current())} tokens in {self._file.path}")
        return ", ".join(parts) or "no tokens"


def write_token(path: Path, name: str, *, role: str | None = None, tenant: str | None = None,
                revoke: bool = False) -> str | None:
    """Add, replace (rotate) or remove entry ``name`` of tokens file ``path`` (created when
    missing), written whole and renamed into place so a server never reads half a file. Returns
    the new token (to be shown once), or None when revoking."""
    tables: dict[str, Any] = {}
    if path.exists():
        tables = {p.name: {"sha256": sha, "role": p.role, "tenant": p.tenant}
                  for sha, p in read_tokens_file(path).items()}
    token = None
    if revoke:
        if tables.pop(name, None) is None:
            raise ConfigError(f"tokens file {path} has no [tokens.{name}]")
    else:
        token = secrets.token_urlsafe(32)
        tables[name] = {"sha256": digest(token), "role": role, "tenant": tenant}
        _entry(path, name, {k: v for k, v in tables[name].items() if v is not None})    # checked before written
    lines = ["# admin API tokens: SHA-256 digests only (connector-host api-token; docs/security.md)\n"]
    for entry, table in sorted(tables.items()):
        lines.append(f"\n[tokens.{json.dumps(entry)}]\n")
        lines.extend(f"{k} = {json.dumps(v)}\n" for k, v in table.items() if v is not None)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(lines))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return token


__all__ = ["PLATFORM_ADMIN", "Principal", "TENANT_ADMIN", "TENANT_TRIGGER", "Tokens", "digest",
           "read_tokens_file", "write_token"]
