"""The check of a connection's publisher target, registered by the publisher.

A connection document may carry the target its publisher delivers to (``target``); the host
stores it and knows nothing of its shape. A publisher installed with the host registers the
function that checks one under the entry point group ``hostspec.target_checks``, called as
``check(policy, connection, target, tenant)`` and returning the problems by field (empty: none).
With none registered, targets are stored unchecked.
"""
from __future__ import annotations

import importlib.metadata
from typing import Any, Callable, Mapping

from hostspec.config.documents import TargetCheck
from hostspec.config.policy import SettingsPolicy

ENTRY_POINT_GROUP = "hostspec.target_checks"
Registered = Callable[[SettingsPolicy, str, Mapping[str, Any], str | None], Mapping[str, Any]]


def registered_checks() -> list[Registered]:
    """The target checks installed publishers register, by entry point name."""
    checks = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            checks.append(ep.load())
        except ImportError:       # registered, but its package is not installed any more
            continue
    return checks


def target_check(policy: SettingsPolicy, checks: list[Registered] | None = None) -> TargetCheck | None:
    """The check of a stored target under ``policy``: every registered check's problems, or None
    when no publisher registers one (``checks``: these instead of the registered ones)."""
    found = registered_checks() if checks is None else checks
    if not found:
        return None

    def check(name: str, target: Mapping[str, Any], tenant: str) -> dict[str, Any]:
        problems: dict[str, Any] = {}
        for one in found:
            problems.update(one(policy, name, target, tenant))
        return problems

    return check


__all__ = ["ENTRY_POINT_GROUP", "registered_checks", "target_check"]
