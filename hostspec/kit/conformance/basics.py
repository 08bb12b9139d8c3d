"""Conformance checks of a provider's surface: its ``provider_info``, its hooks, its settings schema,
``check_connection`` and streaming fetch hooks.

Mixed into :class:`hostspec.kit.testing.ProviderConformance` (``run``: :class:`hostspec.kit.conformance.run.Run`).
"""
from __future__ import annotations

from typing import Iterator

import pytest
from marshmallow import ValidationError

from hostspec.config.connections import connection_from_settings
from hostspec.hookspecs import HOOK_ORDER
from hostspec.kit.conformance.run import GROUP_ID
from hostspec.provider import SCOPES


class BasicChecks:
    """Identity, settings, checking and fetching: what a provider declares and how its hooks answer."""

    # -- identity ----------------------------------------------------------------------------------
    def test_provider_info_is_complete(self, run):
        info = run.provider.info
        assert info.name == info.name.lower() and info.name.replace("_", "").isalnum(), info.name
        assert info.version and info.title, "version and title are shown by `connector-host plugins`"
        assert info.scopes and set(info.scopes) <= set(SCOPES), info.scopes
        fields = info.settings_schema().fields
        assert set(info.secret_fields) <= set(fields), "secret_fields must name settings fields"
        assert set(info.identity_settings) <= set(fields) - set(info.secret_fields), \
            "identity_settings must name settings fields that are not secrets"

    def test_only_known_hooks(self, run):
        implemented = {name for name in dir(type(self).plugin)
                       if hasattr(getattr(type(self).plugin, name), "hostspec_impl")}
        assert implemented <= set(HOOK_ORDER), implemented - set(HOOK_ORDER)
        assert {"provider_info", "fetch_catalog", "map_course"} <= implemented or \
               {"provider_info", "fetch_progress", "map_stat"} <= implemented

    # -- settings --------------------------------------------------------------------------------------
    def test_settings_schema_refuses_missing_and_unknown_keys(self, run):
        schema = run.provider.info.settings_schema
        with pytest.raises(ValidationError):
            schema().load({})
        with pytest.raises(ValidationError):
            schema().load({**run.settings, "no_such_setting_xyz": 1})

    def test_settings_hide_secrets(self, run):
        text = repr(run.connection) + repr(run.connection.settings) + str(run.connection.settings)
        for secret in run.secrets():
            assert secret not in text

    # -- checking and fetching --------------------------------------------------------------------------
    def test_check_connection(self, run):
        result = run.provider.hooks.check_connection(connection=run.connection, context=run.context("check"))
        assert result is not None and result.ok, result
        if run.provider.info.secret_fields:
            name = run.provider.info.secret_fields[0]
            bad = connection_from_settings("bad", run.provider.name, {**run.settings, name: "wrong-secret-value"},
                                           run.plugins, group_id=GROUP_ID)
            refused = run.provider.hooks.check_connection(connection=bad, context=run.context("check"))
            assert refused is not None and not refused.ok
            assert "wrong-secret-value" not in refused.message

    def test_fetch_hooks_stream(self, run):
        hooks, scopes = run.provider.hooks, run.provider.info.scopes
        fetched = []
        if "catalog" in scopes:
            fetched.append(hooks.fetch_catalog(connection=run.connection, context=run.context("catalog")))
        if "progress" in scopes:
            fetched.append(hooks.fetch_progress(connection=run.connection, context=run.context("progress"),
                                                since=None, until=None))
        for records in fetched:
            assert isinstance(records, Iterator) and not hasattr(records, "__len__"), \
                f"fetch hooks must stream (return a generator), got {type(records).__name__}"
            next(records)
            records.close()
