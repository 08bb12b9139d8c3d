"""What a connection's settings may point at, when the settings may come from tenants.

A connection stored on the control topic (written through the admin API or imported) can be
authored by someone who is not the operator. Its URLs receive credentials and its secret
references are read by the worker, so both are held to a per-deployment policy:

* provider URLs (every ``fields.Url`` setting and every setting named ``*_url``) use https on
  the default port, carry no user info, and name a host allowed **for that provider**: the hosts
  of the provider's own default URLs, those it declares (``ProviderInfo.hosts``, patterns such
  as ``*.udemy.com``) plus those the policy adds (same patterns). A ``token_url`` therefore can
  only name a host of the same provider, never a collector of client secrets;
* secrets are references, never values, and each tenant reaches **only its own** by default
  (:mod:`hostspec.config.tenant_secrets`): ``{ env = "NAME" }`` with ``NAME`` under
  ``<prefix><TENANT>__`` for an allowed prefix (default ``CONNECTOR_SECRET_``: tenant ``acme``
  names ``CONNECTOR_SECRET_ACME__…``), or ``{ file = "/abs/path" }`` resolving (symbolic links
  followed) under ``<dir>/<tenant>/`` for an allowed directory (none by default). A prefix or
  directory holding ``{tenant}`` places the tenant there instead. Secrets reach other tenants
  only through an explicit ``[[shared_secrets]]`` entry naming them;
* the sandboxes (plain http on a loopback address) are allowed only by the explicit
  development switch ``allow_sandboxes``;
* a provider account's call budget is each tenant's own (:mod:`hostspec.accounts`) unless the
  policy declares it shared by named tenants, with the budget the operator gives it.

.. code-block:: toml

    # policy.toml (connector-host --policy FILE, or $CONNECTOR_HOST_POLICY)
    allow_sandboxes = false                 # true only on a developer's machine
    secret_env_prefixes = ["CONNECTOR_SECRET_"]           # tenant acme: CONNECTOR_SECRET_ACME__*
    secret_dirs = ["/run/secrets/connectors"]             # tenant acme: /run/secrets/connectors/acme/*

    [[shared_secrets]]                      # the one way across tenants: named by the operator
    env_prefix = "CONNECTOR_SHARED_COURSERA_"   # or dir = "/run/secrets/shared/coursera"
    tenants = ["acme", "initech"]           # who may name them ("*": every tenant)

    [allowed_hosts]                         # added to each provider's default hosts
    coursera = ["api.coursera.com"]
    "360learning" = ["app.360learning.com"] # publisher targets

    [shared_accounts."coursera/acme-app"]   # provider/client id: one budget for these tenants
    tenants = ["acme", "acme-eu"]
    calls_per_second = 8

Every check returns messages that name the field and the rule, never a secret value, and never
another tenant's namespace: a refused reference is not quoted back, the allowed ones named are
the tenant's own and those shared with it.
"""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from marshmallow import Schema, fields

from hostspec import accounts
from hostspec.accounts import SharedAccount
from hostspec.errors import ConfigError
from hostspec.config.tenant_secrets import ENV_NAME, SharedSecrets, allowed_dirs, allowed_env_prefixes

LOOPBACK_NAMES = frozenset({"localhost"})
DEFAULT_ENV_PREFIXES = ("CONNECTOR_SECRET_",)    # roots: each tenant under <root><TENANT>__
_PUBLISHER = "360learning"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_fields(schema: Schema) -> list[str]:
    """The settings of a provider's schema that hold URLs."""
    return [name for name, f in schema.fields.items() if isinstance(f, fields.Url) or name.endswith("_url")]


def host_pattern_problem(pattern: Any) -> str | None:
    """Why ``pattern`` is not a host pattern (None: it is): a host name, or ``*.`` and a domain
    of at least two labels."""
    if not isinstance(pattern, str) or not pattern or pattern != pattern.strip().lower():
        return f"{pattern!r}: a host pattern is a lower-case host name"
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.split(".")
    if "*" in name or any(not label or not all(c.isalnum() or c == "-" for c in label) for label in labels):
        return f"{pattern!r}: a host name, or '*.' and a domain (no other wildcard, scheme, port or path)"
    if pattern.startswith("*.") and len(labels) < 2:
        return f"{pattern!r}: a wildcard needs a domain of at least two labels"
    return None


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """``host`` is one of ``patterns`` or a subdomain of a ``*.domain`` pattern."""
    host = host.rstrip(".").lower()
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def default_hosts(schema: Schema) -> set[str]:
    """The hosts of a provider's default URLs: a provider is always allowed to talk to itself."""
    hosts = set()
    for name in url_fields(schema):
        default = schema.fields[name].load_default
        if isinstance(default, str) and default:
            host = urlsplit(default).hostname
            if host:
                hosts.add(host.lower())
    return hosts


@dataclass(frozen=True)
class SettingsPolicy:
    """The deployment's rules for tenant-authored settings (see the module's documentation)."""

    allowed_hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    secret_env_prefixes: tuple[str, ...] = DEFAULT_ENV_PREFIXES
    secret_dirs: tuple[str, ...] = ()
    allow_sandboxes: bool = False
    shared_secrets: tuple[SharedSecrets, ...] = ()
    shared_accounts: Mapping[str, SharedAccount] = field(default_factory=dict)   # by "provider/client id"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "SettingsPolicy":
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"policy file {path} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from None
        return cls.from_mapping(doc, source=str(path))

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], *, source: str = "policy") -> "SettingsPolicy":
        unknown = set(doc) - {"allowed_hosts", "secret_env_prefixes", "secret_dirs", "allow_sandboxes",
                              "shared_secrets", "shared_accounts"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
        hosts = doc.get("allowed_hosts", {})
        if not isinstance(hosts, Mapping) or not all(_strings(v) for v in hosts.values()):
            raise ConfigError(f"{source}: allowed_hosts must map provider names to lists of host names")
        prefixes = doc.get("secret_env_prefixes", list(DEFAULT_ENV_PREFIXES))
        dirs = doc.get("secret_dirs", [])
        if not _strings(prefixes) or not all(prefixes):
            raise ConfigError(f"{source}: secret_env_prefixes must be a list of non-empty strings")
        if not _strings(dirs) or not all(os.path.isabs(d) for d in dirs):
            raise ConfigError(f"{source}: secret_dirs must be a list of absolute paths")
        sandboxes = doc.get("allow_sandboxes", False)
        if not isinstance(sandboxes, bool):
            raise ConfigError(f"{source}: allow_sandboxes must be true or false")
        shared = doc.get("shared_secrets", [])
        if not isinstance(shared, list):
            raise ConfigError(f"{source}: shared_secrets must be a list of tables ([[shared_secrets]])")
        return cls(allowed_hosts={k: tuple(h.lower() for h in v) for k, v in hosts.items()},
                   secret_env_prefixes=tuple(prefixes), secret_dirs=tuple(dirs), allow_sandboxes=sandboxes,
                   shared_secrets=tuple(SharedSecrets.from_mapping(entry, f"{source}: shared_secrets[{i}]")
                                        for i, entry in enumerate(shared)),
                   shared_accounts=accounts.shared_accounts(doc.get("shared_accounts", {}), source=source))

    @classmethod
    def from_env(cls, path: str | None = None, *, allow_sandboxes: bool | None = None) -> "SettingsPolicy":
        """The policy of ``path`` (default ``$CONNECTOR_HOST_POLICY``), or the defaults; the
        development switch may also come from ``$CONNECTOR_HOST_ALLOW_SANDBOXES=1``."""
        path = path or os.environ.get("CONNECTOR_HOST_POLICY")
        policy = cls.from_file(path) if path else cls()
        if allow_sandboxes is None:
            allow_sandboxes = os.environ.get("CONNECTOR_HOST_ALLOW_SANDBOXES", "") in ("1", "true", "yes")
        if allow_sandboxes and not policy.allow_sandboxes:
            policy = replace(policy, allow_sandboxes=True)
        return policy

    # -- URLs --------------------------------------------------------------------------------------
    def url_problem(self, url: Any, allowed: Iterable[str]) -> str | None:
        """Why ``url`` may not be used (None: it may)."""
        if not isinstance(url, str) or not url or any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
            return "must be an https URL"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "must be an https URL"
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            return "must be an https URL with a host"
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            return "must not carry user info"
        if self.allow_sandboxes and is_loopback(host) and parts.scheme in ("http", "https"):
            return None
        if parts.scheme != "https":
            return "must use https" + ("" if not is_loopback(host) else
                                       " (a sandbox on this machine needs the development switch allow_sandboxes)")
        if port not in (None, 443):
            return "must use the default https port"
        allowed = sorted(set(allowed))
        if not host_allowed(host, allowed):
            return f"host {_quote(host)} is not allowed for this provider (allowed: {', '.join(allowed) or 'none'})"
        return None

    def hosts_for(self, provider: str, schema: Schema | None = None, declared: Iterable[str] = ()) -> set[str]:
        """The hosts (patterns) ``provider``'s URLs may name: its default URLs' hosts, those it
        declares (``ProviderInfo.hosts``) and the policy's ``allowed_hosts`` for it."""
        own = default_hosts(schema) if schema is not None else set()
        return own | {p for p in declared if host_pattern_problem(p) is None} | set(self.allowed_hosts.get(provider, ()))

    # -- secrets -----------------------------------------------------------------------------------
    def secret_problem(self, value: Any, tenant: str | None = None) -> str | None:
        """Why a secret setting's stored value may not be used by ``tenant`` (None: it may): a
        reference outside the tenant's own namespaces (:mod:`hostspec.config.tenant_secrets`) and those
        shared with it. The message names only those, never the refused reference."""
        if not isinstance(value, Mapping) or len(value) != 1:
            return "must be a reference, { env = \"NAME\" } or { file = \"/path\" }, never a value"
        (kind, ref), = value.items()
        if kind == "env" and isinstance(ref, str) and ENV_NAME.match(ref):
            prefixes = allowed_env_prefixes(self.secret_env_prefixes, self.shared_secrets, tenant)
            if any(ref.startswith(p) for p in prefixes):
                return None
            return ("environment variable outside this tenant's secrets (allowed: "
                    f"{', '.join(p + '…' for p in prefixes) or 'none'})")
        if kind == "file" and isinstance(ref, str) and ref and "\x00" not in ref:
            if not os.path.isabs(ref):
                return "a secret file must be an absolute path"
            real = os.path.realpath(ref)
            folders = allowed_dirs(self.secret_dirs, self.shared_secrets, tenant)
            for folder in folders:
                root = os.path.realpath(folder)
                if os.path.commonpath([root, real]) == root and real != root:
                    return None
            return f"secret file outside this tenant's secrets (allowed: {', '.join(folders) or 'no directory'})"
        return "must be a reference, { env = \"NAME\" } or { file = \"/path\" }, never a value"

    # -- a whole settings table --------------------------------------------------------------------
    def problems(self, provider: str, schema: Schema, secret_fields: Iterable[str],
                 settings: Mapping[str, Any], tenant: str | None = None,
                 hosts: Iterable[str] = ()) -> dict[str, list[str]]:
        """Every rule ``settings`` (as stored, before loading) breaks, by field; ``hosts``: the
        provider's declared host patterns (``ProviderInfo.hosts``)."""
        out: dict[str, list[str]] = {}
        allowed = self.hosts_for(provider, schema, hosts)
        for name in url_fields(schema):
            if name in settings and settings[name] is not None:
                problem = self.url_problem(settings[name], allowed)
                if problem:
                    out.setdefault(name, []).append(problem)
        for name in secret_fields:
            if name in settings:
                problem = self.secret_problem(settings[name], tenant)
                if problem:
                    out.setdefault(name, []).append(problem)
        return out

    def target_problems(self, target: Mapping[str, Any], *, default_hosts: Iterable[str],
                        tenant: str | None = None) -> dict[str, list[str]]:
        """The same rules for a 360Learning publisher target (``base_url``, ``client_secret``)."""
        out: dict[str, list[str]] = {}
        if target.get("base_url") is not None:
            problem = self.url_problem(target["base_url"], {*default_hosts, *self.allowed_hosts.get(_PUBLISHER, ())})
            if problem:
                out["base_url"] = [problem]
        if "client_secret" in target:
            problem = self.secret_problem(target["client_secret"], tenant)
            if problem:
                out["client_secret"] = [problem]
        return out


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


__all__ = ["SettingsPolicy", "default_hosts", "is_loopback", "url_fields"]
