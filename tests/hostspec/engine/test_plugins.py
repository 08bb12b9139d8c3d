"""Plugin discovery, per-provider dispatch, and the errors a broken plugin produces at start-up."""
from __future__ import annotations

import importlib.metadata
import inspect

import pytest
from marshmallow import Schema, fields

from hostspec import ProviderInfo, hookimpl, hookspecs
from hostspec.errors import PluginError, UnknownProviderError
from hostspec.engine.plugins import ENTRY_POINT_GROUP, get_plugin_manager


class _Settings(Schema):
    token = fields.String()


def make_provider(name: str, **extra):
    class Plugin:
        @hookimpl
        def provider_info(self):
            return ProviderInfo(name=name, version="1.2.3", title=name.title(), scopes=("catalog",),
                                settings_schema=_Settings)

        @hookimpl
        def map_course(self, record):
            return {"from": name, **record}

    for attr, value in extra.items():
        setattr(Plugin, attr, value)
    return Plugin()


def test_coursera_is_discovered_through_its_entry_point():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps["coursera"] == "connector_coursera.plugin"
    pm = get_plugin_manager()
    info = pm.provider("coursera").info
    assert info.name == "coursera" and set(info.scopes) == {"catalog", "progress"}
    assert "client_secret" in info.secret_fields


def test_hooks_are_dispatched_only_to_the_named_provider():
    pm = get_plugin_manager(load_entry_points=False,
                            plugins=[("alpha", make_provider("alpha")), ("beta", make_provider("beta"))])
    assert sorted(pm.providers) == ["alpha", "beta"]
    assert pm.provider("alpha").hooks.map_course(record={"x": 1}, connection=None, context=None)["from"] == "alpha"
    assert pm.provider("beta").hooks.map_course(record={"x": 1}, connection=None, context=None)["from"] == "beta"


def test_builtin_default_record_id_serves_every_provider():
    pm = get_plugin_manager(load_entry_points=False, plugins=[("alpha", make_provider("alpha"))])
    hooks = pm.provider("alpha").hooks
    assert hooks.record_id(record={"id": "abc"}, scope="catalog") == "abc"
    assert hooks.record_id(record={"id": 7}, scope="catalog") == "7"        # integer ids, kept as text
    assert hooks.record_id(record={"id": True}, scope="catalog") is None


def test_unknown_provider_lists_installed_ones():
    pm = get_plugin_manager(load_entry_points=False,
                            plugins=[("alpha", make_provider("alpha")), ("beta", make_provider("beta"))])
    with pytest.raises(UnknownProviderError) as excinfo:
        pm.provider("udemy")
    assert "udemy" in str(excinfo.value) and "alpha, beta" in str(excinfo.value)


def test_hookimpl_with_unknown_argument_names_the_plugin():
    @hookimpl
    def map_course(self, record, colour):
        return None

    with pytest.raises(PluginError) as excinfo:
        get_plugin_manager(load_entry_points=False, plugins=[("painter", make_provider("painter", map_course=map_course))])
    assert excinfo.value.plugin_name == "painter"
    assert "colour" in str(excinfo.value)


def test_hookimpl_without_spec_fails_check_pending():
    @hookimpl
    def fetch_everything(self):
        return None

    with pytest.raises(PluginError) as excinfo:
        get_plugin_manager(load_entry_points=False, plugins=[("greedy", make_provider("greedy", fetch_everything=fetch_everything))])
    assert excinfo.value.plugin_name == "greedy"
    assert "fetch_everything" in str(excinfo.value)


def test_plugin_without_provider_info_is_refused():
    class Nameless:
        @hookimpl
        def map_course(self, record):
            return None

    with pytest.raises(PluginError, match="nameless.*provider_info"):
        get_plugin_manager(load_entry_points=False, plugins=[("nameless", Nameless())])


@pytest.mark.parametrize("info, message", [
    ("not info", "must return ProviderInfo"),
    (ProviderInfo("Bad Name", "1", "x", ("catalog",), _Settings), "lower-case"),
    (ProviderInfo("ok", "1", "x", ("everything",), _Settings), "scopes"),
])
def test_invalid_provider_info_is_refused(info, message):
    class Plugin:
        @hookimpl
        def provider_info(self):
            return info

    with pytest.raises(PluginError, match=message):
        get_plugin_manager(load_entry_points=False, plugins=[("odd", Plugin())])


def test_two_plugins_claiming_one_name_are_refused():
    with pytest.raises(PluginError, match="already taken"):
        get_plugin_manager(load_entry_points=False,
                           plugins=[("a", make_provider("same")), ("b", make_provider("same"))])


def test_entry_point_that_fails_to_import_names_the_plugin(monkeypatch):
    broken = importlib.metadata.EntryPoint(name="broken", value="no_such_module_xyz.plugin", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr("hostspec.engine.plugins._entry_points", lambda allow: [broken])
    with pytest.raises(PluginError) as excinfo:
        get_plugin_manager()
    assert excinfo.value.plugin_name == "broken" and "no_such_module_xyz" in str(excinfo.value)


def test_allow_list_limits_loaded_entry_points(monkeypatch):
    monkeypatch.setenv("HOSTSPEC_PLUGINS", "somethingelse")
    assert get_plugin_manager().providers == {}
    monkeypatch.setenv("HOSTSPEC_PLUGINS", "coursera")
    assert list(get_plugin_manager().providers) == ["coursera"]


def test_every_hook_is_documented_and_listed_in_lifecycle_order():
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "hostspec_spec")]
    assert sorted(specs) == sorted(hookspecs.HOOK_ORDER)
    source = inspect.getsource(hookspecs)
    positions = [source.index(f"def {name}(") for name in hookspecs.HOOK_ORDER]
    assert positions == sorted(positions), "HOOK_ORDER must follow the order of the specs"
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40, f"hook {name} needs a docstring that states its contract"


def test_fetch_hooks_of_coursera_return_iterators_not_lists(plugins, connection):
    from hostspec.provider import SyncContext
    from datetime import datetime, timezone

    ctx = SyncContext("run", "req", "catalog", datetime.now(timezone.utc))
    records = plugins.provider("coursera").hooks.fetch_catalog(connection=connection, context=ctx)
    assert inspect.isgenerator(records)
    first = next(r for r in records if isinstance(r, dict))      # markers (ExpectedCount) aside
    assert first["id"]
    records.close()
