"""Coursera's and LinkedIn's golden records (one per unit or scale conversion: grade scale, hours
and seconds, completions, epoch dates) pass through their mapping and the host's rules as expected,
and a wrong conversion planted in the mapping fails with a diff naming the field."""
from pathlib import Path

import pytest

import connector_coursera.plugin
import connector_linkedin.plugin
from hostspec.kit.golden import check_golden
from hostspec.kit.testing import open_run

TESTS = Path(__file__).parents[1]
PROVIDERS = {
    # plugin, small sandbox, the field a planted mistake breaks: (scale it by, the diff line expected)
    "coursera": (connector_coursera.plugin, {"contents": 4, "learners": 2, "enrollments": 4},
                 "score_percent", 0.01, "score_percent: expected 94.6, got 0.946"),
    "linkedin": (connector_linkedin.plugin, {"courses": 4, "learners": 2, "activities": 4},
                 "time_spent_seconds", 60, "time_spent_seconds: expected 8431, got 505860"),
}


@pytest.fixture(params=list(PROVIDERS))
def provider(request):
    plugin, options, *mistake = PROVIDERS[request.param]
    with open_run(plugin, sandbox_options=options) as run:
        yield run, plugin, TESTS / f"connector_{request.param}" / "golden", mistake


def test_the_golden_records_map_as_expected(provider):
    run, _plugin, golden, _ = provider
    assert check_golden(golden, run.provider.hooks, run.connection, run.context("progress"), run.provider.name) == 3


def test_a_wrong_conversion_fails_naming_the_field(provider, monkeypatch):
    run, plugin, golden, (field, factor, line) = provider
    real = plugin.stat_from_report

    def wrong(report, *, now):
        stat = real(report, now=now)
        if stat.get(field) is not None:
            stat[field] = round(stat[field] * factor, 6)
        return stat

    monkeypatch.setattr(plugin, "stat_from_report", wrong)
    with pytest.raises(AssertionError, match=line):
        check_golden(golden, run.provider.hooks, run.connection, run.context("progress"), run.provider.name)
