"""Named connections from a TOML file; each provider validates its own ``settings`` table.

.. code-block:: toml

    [connections.acme-coursera]
    tenant = "acme"
    provider = "coursera"
    group_id = "65a1b2c3d4e5f60718293a4b"     # the 360Learning synchronized group
    # max_removal_share = 0.2                  # a run removes at most this share of the courses
    # catalog_complete_days = 7                # a complete catalog listing this often, changes only between
    # progress_lookback_hours = 48             # incremental progress starts this long before the last watermark
    # account_calls_per_second = 4             # the budget of the provider account (client id), shared by
    #                                          # the tenant's connections holding its client id and secret
    #                                          # across the fleet (the smallest one given wins)

    [connections.acme-coursera.settings]
    org_id = "DjYCkBQTQV69TtWA7RuNug"
    client_id = "acme-app-key"
    client_secret = { env = "ACME_COURSERA_SECRET" }   # or { file = "secrets/acme" }

A connection read from the control topic also carries ``created_revision`` (set by the control
plane): with its provider, group and organization it names the connection's incarnation, which
keys its sync state (:mod:`hostspec.incarnation`).

Secrets are :class:`hostspec.secrets.Secret` objects, read when a provider calls ``reveal()``.
Errors name the file, the connection and the field, never a secret value.
"""
from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from marshmallow import ValidationError

from hostspec import event_schemas
from hostspec.errors import ConfigError, SettingsRefused, UnknownConnectionError
from hostspec.incarnation import incarnation
from hostspec.config.policy import SettingsPolicy
from hostspec.provider import Connection
from hostspec.secrets import Secret

if TYPE_CHECKING:    # the plugin manager is handed in; config needs only its interface
    from hostspec.engine.plugins import HostPluginManager

log = logging.getLogger(__name__)
_REQUIRED = ("tenant", "provider", "group_id")
_NAME = event_schemas.NAME


class ConnectionStore:
    """Connections read from one file or the control topic; each is validated against its
    provider (and, when given, the deployment's :class:`~hostspec.config.policy.SettingsPolicy`) when
    first used."""

    def __init__(self, raw: Mapping[str, Mapping[str, Any]], *, source: str, base: Path | None = None,
                 policy: SettingsPolicy | None = None):
        self._raw = dict(raw)
        self.source = source
        self._base = base
        self._policy = policy
        self._cache: dict[str, Connection] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, policy: SettingsPolicy | None = None) -> "ConnectionStore":
        path = Path(path)
        table = read_toml_tables(path, "connections", "NAME")
        warn_if_readable_with_inline_secrets(path, "connections", any(
            isinstance(v, str) and "secret" in k.lower()
            for entry in table.values() if isinstance(entry, Mapping)
            for k, v in (entry.get("settings") or {}).items()))
        return cls(table, source=str(path), base=path.parent, policy=policy)

    @property
    def policy(self) -> SettingsPolicy | None:
        """The settings policy its connections are held to (None: an operator's own file)."""
        return self._policy

    @property
    def names(self) -> list[str]:
        return sorted(self._raw)

    def raw(self, name: str) -> Mapping[str, Any]:
        if name not in self._raw:
            raise UnknownConnectionError(name, self.names)
        return self._raw[name]

    def get(self, name: str, plugins: HostPluginManager) -> Connection:
        """The validated connection ``name``.

        :raise UnknownConnectionError: no such connection in the file.
        :raise UnknownProviderError: its provider is not installed.
        :raise ConfigError: a required key is missing or a setting is invalid.
        """
        if name in self._cache:
            return self._cache[name]
        entry = self.raw(name)
        where = f"{self.source}: connection {name!r}"
        try:
            _NAME(name)
        except ValidationError:
            raise ConfigError(f"{where}: the name must be letters, digits, '_', '.', ':' or '-'") from None
        missing = [k for k in _REQUIRED if not isinstance(entry.get(k), str) or not entry.get(k)]
        if missing:
            raise ConfigError(f"{where}: missing or empty {', '.join(missing)}")
        unknown = set(entry) - {*_REQUIRED, "settings", "enabled", "schedule", "max_removal_share",
                                "catalog_complete_days", "progress_lookback_hours", "account_calls_per_second",
                                "created_revision"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        provider = plugins.provider(entry["provider"])
        settings_raw = entry.get("settings", {})
        if not isinstance(settings_raw, Mapping):
            raise ConfigError(f"{where}: settings must be a table")
        if self._policy is not None:
            problems = self._policy.problems(provider.name, provider.info.settings_schema(),
                                             provider.info.secret_fields, settings_raw, tenant=entry["tenant"],
                                             hosts=provider.info.hosts)
            if problems:
                raise SettingsRefused(f"{where}: settings refused by the policy: {describe_messages(problems)}",
                                      {"settings": problems})
        settings_raw = {k: _bind_secret(v, self._base) if k in provider.info.secret_fields else v
                        for k, v in settings_raw.items()}
        try:
            settings = provider.info.settings_schema().load(settings_raw)
        except ValidationError as exc:
            raise SettingsRefused(f"{where}: invalid settings: {describe_messages(exc.messages)}",
                                  {"settings": exc.messages}) from None
        share = entry.get("max_removal_share", 0.2)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise ConfigError(f"{where}: max_removal_share must be a number from 0 to below 1 (a share of the "
                              f"connection's courses; removing all of them is never allowed)")
        every = entry.get("catalog_complete_days", 7)
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 <= every <= 365:
            raise ConfigError(f"{where}: catalog_complete_days must be a number of days from 0 (always list the "
                              f"whole catalog) to 365")
        lookback = entry.get("progress_lookback_hours")
        if lookback is not None and (isinstance(lookback, bool) or not isinstance(lookback, (int, float))
                                     or not 0 <= lookback <= 24 * 90):
            raise ConfigError(f"{where}: progress_lookback_hours must be a number of hours from 0 to 2160 (how "
                              f"long the provider's reports may lag behind the learners' activity)")
        calls = entry.get("account_calls_per_second")
        if calls is not None and (isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls <= 10_000):
            raise ConfigError(f"{where}: account_calls_per_second must be a whole number of calls from 1 to 10000")
        created = entry.get("created_revision")
        if created is not None and (isinstance(created, bool) or not isinstance(created, int) or created < 1):
            raise ConfigError(f"{where}: created_revision must be a revision number (1 or more)")
        connection = Connection(name=name, tenant=entry["tenant"], provider=provider.name,
                                group_id=entry["group_id"], settings=settings, max_removal_share=float(share),
                                catalog_complete_days=float(every),
                                progress_lookback_hours=None if lookback is None else float(lookback),
                                account_calls_per_second=calls,
                                incarnation=incarnation(provider.info, entry["group_id"], settings, created))
        self._cache[name] = connection
        return connection

    def enabled(self) -> list[str]:
        return [n for n in self.names if self._raw[n].get("enabled", True)]


def connection_from_settings(name: str, provider_name: str, settings: Mapping[str, Any],
                             plugins: HostPluginManager, *, tenant: str = "sandbox",
                             group_id: str = "000000000000000000000001", **host: Any) -> Connection:
    """A single connection built in code (the embedded sandbox default, tests); ``host``: the
    connection-level keys of the connections file (``max_removal_share``, ``catalog_complete_days``,
    ``progress_lookback_hours``, ``account_calls_per_second``)."""
    store = ConnectionStore({name: {"tenant": tenant, "provider": provider_name, "group_id": group_id,
                                    "settings": dict(settings), **host}}, source="<in-memory>")
    return store.get(name, plugins)


def _bind_secret(value: Any, base: Path | None) -> Any:
    if isinstance(value, Mapping) and set(value) == {"file"} and isinstance(value["file"], str):
        return Secret(file=value["file"], base=base)
    return value


def describe_messages(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {describe_messages(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return ", ".join(describe_messages(m) for m in messages)
    return str(messages)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict. :raise ConfigError: it cannot be read or is not TOML (the message
    names ``what`` file and the path)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} file {path} cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML: {exc}") from None


def read_toml_tables(path: Path, key: str, name_hint: str) -> dict[str, Any]:
    """The ``[key.NAME]`` tables of a TOML file (connections, publisher targets).

    :raise ConfigError: the file cannot be read, is not TOML, or has no such table.
    """
    doc = read_toml(path, key)
    table = doc.get(key)
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{key} file {path} has no [{key}.{name_hint}] tables")
    return table


def warn_if_readable_with_inline_secrets(path: Path, key: str, inline: bool) -> None:
    """Warn when a file holding inline secrets can be read by other users."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if inline and mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s file %s holds inline secrets and is readable by other users; "
                    "use { env = \"NAME\" } or chmod 600", key, path)


__all__ = ["ConnectionStore", "connection_from_settings", "describe_messages", "read_toml_tables",
           "warn_if_readable_with_inline_secrets"]
