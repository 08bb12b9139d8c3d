"""A conformance suite a provider package runs against itself, in a few lines.

.. code-block:: python

    # tests/test_conformance.py of a provider package
    from hostspec.kit.testing import provider_test_class
    import connector_acme.plugin

    TestAcmeConformance = provider_test_class(connector_acme.plugin, sandbox_options={"courses": 12})

pytest then runs, against the provider's own sandbox (hook ``start_sandbox``) or against
``settings`` you pass (a recorded-fixture server, a test account):

* the plugin registers, its hooks are known and its ``provider_info`` is complete;
* the settings schema refuses missing and unknown keys and hides secrets from ``repr``;
* ``check_connection`` succeeds, and answers ``ok=False`` (without raising) to a wrong secret;
* ``fetch_catalog`` / ``fetch_progress`` stream (iterators, never lists);
* a full sync emits events that are valid against ``schemas/`` (JSON Schema) and the
  marshmallow contract, with nothing rejected, at least one course and one stat per scope;
* every stat respects the learning rules (:mod:`hostspec.rules`);
* no secret value appears in events or logs;
* event ids are deterministic: a second sync of the same data gives the same ids;
* an unreadable record raises ``RecordRejected`` with messages (never another exception);
* mapping is pure: mapping the same record twice gives the same result;
* ``record_id`` names each catalog item as ``map_course`` does (``external_id``), and an item that
  cannot be mapped causes no removal;
* every page is read (against the sandbox's ``expected`` counts), ``since`` and ``until`` are
  honoured, a progress fetch resumes from a ``PageEnd`` cursor, a second sync of unchanged data
  emits nothing, completed stats carry a completion date;
* a sync survives the sandbox answering 429 and 503 (``inject``): transient answers are retried;
  answered ``429`` with ``Retry-After: 3`` four times, the provider waits 3 s each time (by the
  sandbox's clock) and retries all four (:mod:`hostspec.kit.conformance.retry`);
* what the stats mean (:mod:`hostspec.kit.conformance.meaning`): unique stat keys, learner and attempt
  ids that identify, progress in percent, time spent in seconds, 100 % completed, first/last
  activity in order (the heuristics can be waived per provider with a reason: ``waivers``);
* golden records (``golden``): raw records the provider ships with the normalized result it
  expects map to it through ``map_course``/``map_stat`` and the host's rules, with a
  field-by-field diff on mismatch (:mod:`hostspec.kit.golden`);
* the catalog listing states its total (``ListingTotal``) unless ``ProviderInfo`` declares the
  API states none (:mod:`hostspec.kit.conformance.listing`);
* ``ProviderInfo.hosts`` is declared and covers the settings' default URLs; the sandbox passes
  the settings policy only with ``allow_sandboxes`` (:mod:`hostspec.kit.conformance.hosts`).

A failing check says what is wrong and shows the run's first dead letters with their reasons.
Assertion rewriting is on for this module and its checks (the ``hostspec`` pytest plugin registers it), so a
bare ``assert`` shows its values too. Needs pytest and jsonschema (the host's ``test`` extra).

For a provider's own tests, :func:`connection_for` builds a connection from settings (a
sandbox's ``settings``) without a connections file.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import pytest

from hostspec.kit.conformance.basics import BasicChecks
from hostspec.kit.conformance.events import EventChecks
from hostspec.kit.conformance.explain import explain  # noqa: F401  (exported)
from hostspec.kit.conformance.fetching import FetchChecks
from hostspec.kit.conformance.hosts import HostChecks
from hostspec.kit.conformance.listing import ListingChecks
from hostspec.kit.conformance.meaning import MeaningChecks
from hostspec.kit.conformance.retry import RetryChecks
from hostspec.kit.conformance.run import Run, connection_for, open_run  # noqa: F401  (connection_for: exported)


# pytest runs the tests of the last base first: the groups run hosts, retry, listing, meaning,
# basics, events, fetching, each group in its own order.
class ProviderConformance(FetchChecks, EventChecks, BasicChecks, MeaningChecks, ListingChecks, RetryChecks,
                          HostChecks):
    """The tests; :func:`provider_test_class` binds them to one provider. The checks come in groups
    (:mod:`hostspec.kit.conformance`): the provider's surface (``basics``), the events (``events``),
    fetching and syncing again (``fetching``); the identity and scale checks come from
    :class:`hostspec.kit.conformance.meaning.MeaningChecks` (``waivers``)."""

    plugin: Any = None
    provider_name: str | None = None
    sandbox_options: Mapping[str, Any] = {}
    settings: Mapping[str, Any] | None = None
    waivers: Mapping[str, str] = {}
    golden: str | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def run(cls) -> Iterator[Run]:
        with open_run(cls.plugin, name=cls.provider_name, sandbox_options=cls.sandbox_options,
                      settings=cls.settings) as run:
            yield run


def provider_test_class(plugin: Any, *, name: str | None = None, sandbox_options: Mapping[str, Any] | None = None,
                        settings: Mapping[str, Any] | None = None, waivers: Mapping[str, str] | None = None,
                        golden: Any = None) -> type:
    """A pytest test class checking ``plugin`` (a provider module or object).

    :param name: the provider's name, when the plugin object holds several (rare).
    :param sandbox_options: passed to the provider's ``start_sandbox`` hook.
    :param settings: connection settings to use instead of a sandbox (a recorded-fixture server,
        a test account); secrets may be plain strings here.
    :param waivers: heuristic checks this provider's API legitimately fails, each with the reason
        (``{"full_progress_completed": "100 % means watched, not passed"}``); the names are
        :data:`hostspec.kit.conformance.meaning.WAIVABLE`.
    :param golden: a golden-records file or folder (``Path(__file__).parent / "golden"``):
        raw records with the normalized result expected (:mod:`hostspec.kit.golden`).
    """
    label = (name or getattr(plugin, "__name__", "provider")).rsplit(".", 1)[-1]
    return type(f"Test{label.title().replace('_', '')}Conformance", (ProviderConformance,),
                {"plugin": plugin, "provider_name": name, "sandbox_options": dict(sandbox_options or {}),
                 "settings": None if settings is None else dict(settings), "waivers": dict(waivers or {}),
                 "golden": None if golden is None else str(golden),
                 "__test__": True})


__all__ = ["ProviderConformance", "connection_for", "explain", "open_run", "provider_test_class"]
