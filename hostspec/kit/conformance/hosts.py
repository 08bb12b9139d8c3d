"""Conformance check: the provider declares the hosts its settings may point at.

Mixed into :class:`hostspec.kit.testing.ProviderConformance`. ``ProviderInfo.hosts`` (patterns:
``api.acme.com``, ``*.acme.com``) is what the settings policy (:mod:`hostspec.config.policy`) allows a
tenant-authored connection of this provider to name; the check asks that it is declared, well
formed, covers every default (documented production) URL of the settings schema, and that the
sandbox's settings pass the policy only with the development switch ``allow_sandboxes``.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from hostspec.config.policy import (
    SettingsPolicy,
    default_hosts,
    host_allowed,
    host_pattern_problem,
    url_fields,
)


class HostChecks:
    def test_provider_hosts_are_declared_and_cover_its_urls(self, run):
        info = run.provider.info
        assert info.hosts, (
            "ProviderInfo declares no hosts: the settings policy then allows only the hosts of the schema's default "
            "URLs, and a tenant's connection to another of your API hosts is refused. Declare "
            "ProviderInfo(hosts=(\"api.acme.com\",) or (\"*.acme.com\",))")
        bad = [p for p in (host_pattern_problem(h) for h in info.hosts) if p]
        assert not bad, "; ".join(bad)
        schema = info.settings_schema()
        uncovered = sorted(h for h in default_hosts(schema) if not host_allowed(h, info.hosts))
        assert not uncovered, (f"the settings' default URLs name {uncovered}, not among ProviderInfo.hosts "
                               f"{list(info.hosts)}: declare every production host your settings point at")

    def test_the_sandbox_is_allowed_only_by_the_development_switch(self, run):
        if run.sandbox is None:
            pytest.skip("no sandbox")
        info = run.provider.info
        schema = info.settings_schema()
        urls = {k: v for k, v in run.settings.items() if k in url_fields(schema) and isinstance(v, str)}
        if not urls:
            pytest.skip("the sandbox's settings hold no URL")
        plain = {k: v for k, v in run.settings.items() if k not in info.secret_fields}
        dev = SettingsPolicy(allow_sandboxes=True).problems(info.name, schema, (), plain, hosts=info.hosts)
        assert not dev, f"the sandbox's URLs are refused even with allow_sandboxes: {dev}"
        prod = SettingsPolicy().problems(info.name, schema, (), plain, hosts=info.hosts)
        loopback = [k for k, v in urls.items() if urlsplit(v).hostname in ("127.0.0.1", "localhost", "::1")]
        assert set(loopback) <= set(prod), f"a sandbox URL passes the production policy: {set(loopback) - set(prod)}"


__all__ = ["HostChecks"]
