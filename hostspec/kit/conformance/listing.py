"""Conformance checks on how a provider lists: the catalog's stated total.

Mixed into :class:`hostspec.kit.testing.ProviderConformance`.

* ``test_the_catalog_listing_states_its_total``: a complete ``fetch_catalog`` yields a
  :class:`~hostspec.provider.ListingTotal` equal to the items it yields. Without one, a listing
  cut short (a lost ``next`` link, an entitlement glitch) is guarded by shares only. The paging
  helpers (``offset_pages``, ``cursor_pages``, ``next_link_pages``) yield it when the answer
  carries a count; a provider whose API states none says ``ProviderInfo(states_listing_total=False)``.
"""
from __future__ import annotations

from typing import Any, Mapping

import pytest

from hostspec.provider import ListingTotal


def listing_total_problem(records: list[Any], states_total: bool) -> str | None:
    totals = [r.total for r in records if isinstance(r, ListingTotal)]
    items = sum(isinstance(r, Mapping) for r in records)
    if not totals:
        if not states_total:
            return None
        return (f"fetch_catalog yielded {items} items and no ListingTotal: the host's removal guard cannot tell a "
                f"listing cut short from mass removals. Yield ListingTotal(n) when the API states a count (the "
                f"paging helpers do it when given the count's key: offset_pages(total=…), cursor_pages returning "
                f"(items, next, count), next_link_pages(total=…)), or declare "
                f"ProviderInfo(states_listing_total=False) when the API states none")
    if len(totals) > 1:
        return f"fetch_catalog yielded ListingTotal {len(totals)} times ({totals}): yield it once"
    if totals[0] != items:
        return (f"fetch_catalog yielded ListingTotal({totals[0]}) but {items} items: the total must be the "
                f"count of the complete listing (the sandbox's own)")
    return None


class ListingChecks:
    def test_the_catalog_listing_states_its_total(self, run):
        if "catalog" not in run.provider.info.scopes:
            pytest.skip("no catalog scope")
        problem = listing_total_problem(run.fetch("catalog"), run.provider.info.states_listing_total)
        assert problem is None, problem


__all__ = ["ListingChecks", "listing_total_problem"]
