"""Plugin manager: specs, entry-point discovery, built-in defaults, per-provider hook callers.

Providers are found through the ``hostspec.providers`` entry-point group. Two environment
switches help operators and authors:

* ``HOSTSPEC_PLUGINS=coursera,other`` loads only the named entry points (an allow-list);
* ``HOSTSPEC_TRACE_HOOKS=1`` writes every hook call and result to the ``hostspec.trace`` logger.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from hostspec.engine import defaults as builtin_defaults
from hostspec import hookspecs
from hostspec.errors import PluginError, UnknownProviderError
from hostspec.markers import PROJECT_NAME
from hostspec.provider import SCOPES, ProviderInfo

ENTRY_POINT_GROUP = "hostspec.providers"
_trace_log = logging.getLogger("hostspec.trace")


@dataclass(frozen=True)
class Provider:
    """An installed provider: its info and the hook callers limited to it and the built-ins."""

    info: ProviderInfo
    plugin: object
    hooks: Any  # an object whose attributes are pluggy hook callers

    @property
    def name(self) -> str:
        return self.info.name


class _SubsetHooks:
    def __init__(self, pm: pluggy.PluginManager, others: list[object]):
        for name in hookspecs.HOOK_ORDER:
            setattr(self, name, pm.subset_hook_caller(name, remove_plugins=others))


class HostPluginManager:
    """Owns the pluggy manager and knows which registered plugins are providers."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._providers: dict[str, Provider] = {}
        self._index_providers()

    # -- discovery ---------------------------------------------------------------------------
    def _index_providers(self) -> None:
        plugins = []
        for plugin_name, plugin in self.pm.list_name_plugin():
            if plugin is builtin_defaults or plugin_name == "builtin_defaults":
                continue
            impl = getattr(plugin, "provider_info", None)
            if impl is None:
                raise PluginError(plugin_name, "implements no provider_info hook")
            try:
                info = impl()
            except Exception as exc:
                raise PluginError(plugin_name, f"provider_info failed: {exc!r}") from exc
            _check_info(plugin_name, info)
            if info.name in {p.name for p in plugins}:
                raise PluginError(plugin_name, f"provider name {info.name!r} is already taken")
            plugins.append(Provider(info=info, plugin=plugin, hooks=None))
        for prov in plugins:
            others = [p.plugin for p in plugins if p is not prov]
            self._providers[prov.name] = Provider(prov.info, prov.plugin, _SubsetHooks(self.pm, others))

    # -- lookup ------------------------------------------------------------------------------
    @property
    def providers(self) -> dict[str, Provider]:
        return dict(self._providers)

    def provider(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProviderError(name, list(self._providers)) from None


def _check_info(plugin_name: str, info: object) -> None:
    if not isinstance(info, ProviderInfo):
        raise PluginError(plugin_name, f"provider_info must return ProviderInfo, not {type(info).__name__}")
    if not info.name or info.name != info.name.lower() or not info.name.replace("_", "").isalnum():
        raise PluginError(plugin_name, f"provider name {info.name!r} must be lower-case letters, digits or _")
    unknown = set(info.scopes) - set(SCOPES)
    if not info.scopes or unknown:
        raise PluginError(plugin_name, f"scopes must be a non-empty subset of {SCOPES}, got {info.scopes}")


def _entry_points(allow: set[str] | None) -> Iterable[importlib.metadata.EntryPoint]:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allow is None or ep.name in allow:
            yield ep


def get_plugin_manager(*, load_entry_points: bool = True, plugins: Iterable[tuple[str, object]] = (),
                       allow: Iterable[str] | None = None) -> HostPluginManager:
    """Build the manager: specs, built-in defaults, entry-point providers, then ``plugins``.

    :param plugins: extra ``(name, plugin)`` pairs registered directly (tests, embedding).
    :param allow: entry-point names to load; default: ``HOSTSPEC_PLUGINS`` or all.
    :raise PluginError: a plugin cannot be imported, declares a hook the spec does not know,
        or implements one with arguments the spec does not have. The message names the plugin.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin_defaults, name="builtin_defaults")
    if allow is None and os.environ.get("HOSTSPEC_PLUGINS"):
        allow = [n.strip() for n in os.environ["HOSTSPEC_PLUGINS"].split(",") if n.strip()]
    allowed = set(allow) if allow is not None else None
    candidates: list[tuple[str, object]] = []
    if load_entry_points:
        for ep in _entry_points(allowed):
            try:
                candidates.append((ep.name, ep.load()))
            except Exception as exc:
                raise PluginError(ep.name, f"cannot be loaded from {ep.value}: {exc!r}") from exc
    candidates.extend(plugins)
    for name, plugin in candidates:
        if pm.is_registered(plugin):
            continue
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(name, str(exc)) from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        culprit = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(culprit, str(exc)) from exc
    if os.environ.get("HOSTSPEC_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda msg: _trace_log.debug(msg.rstrip()))
        pm.enable_tracing()
    return HostPluginManager(pm)


__all__ = ["ENTRY_POINT_GROUP", "HostPluginManager", "Provider", "get_plugin_manager"]
