"""Conformance check: a provider honours ``Retry-After`` and keeps retrying within its budget.

Mixed into :class:`hostspec.kit.testing.ProviderConformance`. The sandbox (a
:class:`hostspec.kit.sandboxes.SandboxServer` with a ``FaultBook``) answers the next
:data:`THROTTLED_TIMES` data requests ``429`` with ``Retry-After: 3``; the sync must end as an
undisturbed one, each request after a 429 must come at least ``Retry-After`` later by the
sandbox's clock (``FaultBook.seen``), and all :data:`THROTTLED_TIMES` answers must have been
retried (more than three retries: a provider giving up after three tries fails).
"""
from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from hostspec.kit.conformance.explain import explain

RETRY_AFTER_S = 3
THROTTLED_TIMES = 4
SLACK_S = 0.1       # the sandbox records a request before answering it: the gap can only be longer


def retry_after_gaps(seen: list[Any], route: str) -> list[float]:
    """For each 429 in ``seen`` (``FaultBook.seen`` entries), the seconds until the next request
    of the same method and path on ``route``."""
    gaps = []
    for i, picked in enumerate(seen):
        if picked.rule is None or picked.rule.action != "status_429":
            continue
        later = next((p for p in seen[i + 1:] if (p.method, p.path) == (picked.method, picked.path)
                      and fnmatch.fnmatchcase(p.path, route)), None)
        if later is not None:
            gaps.append(later.at - picked.at)
    return gaps


class RetryChecks:
    def test_retry_after_is_honoured_and_retried_more_than_three_times(self, run):
        faults = getattr(run.sandbox, "faults", None)
        if not callable(getattr(run.sandbox, "inject", None)) or not hasattr(faults, "seen"):
            pytest.skip("the sandbox cannot inject faults (SandboxServer.inject with a FaultBook)")
        mark = len(faults.seen)
        rule = run.sandbox.inject("429", times=THROTTLED_TIMES, retry_after=RETRY_AFTER_S)
        sink, report = run.sync()
        seen = list(faults.seen)[mark:]
        said = f"429 Too Many Requests (Retry-After: {RETRY_AFTER_S})"
        assert rule.fired == THROTTLED_TIMES and report.outcome == run.report.outcome, (
            f"after the sandbox answered {said} {rule.fired} times, the sync ended {report.outcome} instead of "
            f"{run.report.outcome}: the provider gave up; allow more than three retries within the run's budget "
            f"(hostspec.kit.retry.retry_policy(max_attempts=5 or more, max_retry_after_s ≥ {RETRY_AFTER_S}))\n"
            f"{explain(sink, report)}")
        gaps = retry_after_gaps(seen, run.sandbox.DATA_ROUTE)
        short = [g for g in gaps if g < RETRY_AFTER_S - SLACK_S]
        assert gaps and not short, (
            f"the sandbox answered {said} and the provider came back after {', '.join(f'{g:.2f}' for g in gaps)} s "
            f"(by the sandbox's clock): Retry-After is ignored; wait what the server asks "
            f"(hostspec.kit.retry.retry_policy does, raise_for_answer reads the header; max_retry_after_s must "
            f"allow {RETRY_AFTER_S} s)")
        assert report.counts.courses_emitted == run.report.counts.courses_emitted
        assert report.counts.stats_emitted == run.report.counts.stats_emitted


__all__ = ["RETRY_AFTER_S", "RetryChecks", "THROTTLED_TIMES", "retry_after_gaps"]
