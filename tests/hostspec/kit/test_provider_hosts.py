"""ProviderInfo.hosts reaches the settings policy: declared hosts and subdomain patterns are
allowed, nothing else."""
from __future__ import annotations

from marshmallow import Schema, fields

from hostspec.config.policy import SettingsPolicy, host_allowed, host_pattern_problem


class Settings(Schema):
    base_url = fields.Url(load_default="https://api.udemy.com", require_tld=False)


def test_declared_patterns_are_allowed_and_nothing_beyond():
    policy, schema = SettingsPolicy(), Settings()
    hosts = ("*.udemy.com",)
    assert policy.problems("udemy", schema, (), {"base_url": "https://acme.udemy.com/api-2.0"}, hosts=hosts) == {}
    for url in ("https://udemy.com.evil.com/", "https://evil-udemy.com/", "https://acme.udemy.com.evil.com/"):
        assert "base_url" in policy.problems("udemy", schema, (), {"base_url": url}, hosts=hosts), url
    assert "base_url" in policy.problems("udemy", schema, (), {"base_url": "https://acme.udemy.com/"})


def test_host_patterns():
    assert host_allowed("a.b.udemy.com", ["*.udemy.com"]) and not host_allowed("udemy.com", ["*.udemy.com"])
    assert host_pattern_problem("*.udemy.com") is None and host_pattern_problem("api.udemy.com") is None
    for bad in ("*", "*.com", "https://udemy.com", "udemy.com:443", "a*.udemy.com", "UDEMY.com", ""):
        assert host_pattern_problem(bad), bad
    assert "*" not in SettingsPolicy().hosts_for("x", Settings(), ["*", "*.com"])
