"""The hooks a provider implements, in the order the host calls them.

A provider is a module or object whose functions carry ``@hookimpl`` (``from hostspec import
hookimpl``). Implementations may accept any subset of a hook's arguments, so new arguments can
be added here later without breaking providers.

The host calls each hook only on the provider a request names (plus built-in defaults), so the
``firstresult`` hooks below return that provider's answer.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Mapping

from hostspec.markers import hookspec
from hostspec.provider import CheckResult, Connection, ProviderInfo, SandboxHandle, SyncContext

# ---------------------------------------------------------------------------------------------
# identity and set-up
# ---------------------------------------------------------------------------------------------


@hookspec
def provider_info() -> ProviderInfo:
    """Describe the provider: name, version, supported scopes, connection-settings schema.

    Called once per provider at start-up; every provider plugin must implement it.
    """


@hookspec(firstresult=True)
def check_connection(connection: Connection, context: SyncContext) -> CheckResult | None:
    """Verify that ``connection`` works (credentials accepted, organisation reachable).

    :param connection: the connection to check; ``settings`` are validated, secrets unresolved.
    :param context: a context whose ``scope`` is ``"check"``.
    :return: a :class:`CheckResult`; ``None`` means "not supported" (the host says so).

    Stops at first non-None result. Must not raise for a refused credential: return ``ok=False``.
    """


@hookspec(firstresult=True)
def start_sandbox(options: Mapping[str, Any]) -> SandboxHandle | None:
    """Start a local stand-in of the provider's API for demos and tests, without credentials.

    :param options: free-form sizes and seeds (e.g. ``{"contents": 40, "enrollments": 200}``);
        ``connector-host sync --sandbox --sandbox-option KEY=VALUE`` passes any (integers as
        ``int``, other values as text).
    :return: a running :class:`SandboxHandle` whose ``settings`` make a working connection;
        ``None`` when the provider ships no sandbox. The caller closes it.

    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# catalog scope
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def fetch_catalog(connection: Connection, context: SyncContext) -> Iterator[Mapping[str, Any]] | None:
    """Stream every content item available to the connection's organisation.

    :return: an iterator (a generator, never a materialised list) of raw provider records,
        each a JSON-like mapping. The host closes the iterator when it stops early.
        ``None`` means the provider has no catalog scope. It may also yield
        :class:`hostspec.PageEnd` between pages and, once, a :class:`hostspec.ListingTotal`: the
        number of items the provider says the listing holds (the removal guard removes nothing
        when the items yielded disagree with it).

    With ``context.catalog_since`` set (only for providers declaring ``incremental_catalog``),
    list only the items changed since that instant; the host then removes nothing. Route HTTP
    calls through ``context.calls`` (the account's call budget) when the provider names an
    ``account_setting``.

    Raise :class:`hostspec.ProviderError` subclasses for failures of the whole fetch; a record
    the provider cannot read is yielded as it is and rejected by ``map_course``; a record that
    must not become a course (``map_course`` returns ``None``) is counted as skipped.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def map_course(record: Mapping[str, Any], connection: Connection,
               context: SyncContext) -> Mapping[str, Any] | None:
    """Map one raw catalog record to the provider part of ``learning.course.upserted.v1`` data.

    Pure: no I/O, no wall clock (use ``context.now``). Return the fields ``external_id``,
    ``title``, ``description``, ``language``, ``content_type``, ``launch_url`` … as listed in
    :class:`hostspec.events.CourseDataSchema`; the host adds tenant, connection, provider,
    group id, locked fields and the fingerprint, then validates the whole.

    :raise hostspec.RecordRejected: the record cannot be mapped (messages say why).
    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# progress scope
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def fetch_progress(connection: Connection, context: SyncContext, since: datetime | None,
                   until: datetime | None) -> Iterator[Mapping[str, Any]] | None:
    """Stream learner progress records (one per learner and content item).

    :param since: only activity at or after this instant is needed (inclusive); ``None`` means
        everything. The host already widened it by its look-back window (provider data lags).
        Learners enrolled in the window who have no activity yet belong to it too (Coursera asks
        for them apart).
    :param until: only activity before this instant (exclusive; replays of a date range); ``None``:
        no bound. The window is half-open, [since, until): a record on the border of two
        consecutive windows is the later one's, never both's nor neither's.
    :return: an iterator of raw provider records, optionally with :class:`hostspec.PageEnd`
        markers between pages (resumable syncs; start after ``context.resume`` when it is set)
        and an :class:`hostspec.ExpectedCount` when the API says how many records will come
        (progress bars); ``None`` means no progress scope. Route HTTP calls through
        ``context.calls`` when the provider names an ``account_setting``.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def map_stat(record: Mapping[str, Any], connection: Connection,
             context: SyncContext) -> Mapping[str, Any] | None:
    """Map one raw progress record to the provider part of ``learning.learner_stat.upserted.v1``.

    Pure, like ``map_course``. Return ``course_external_id``, ``learner``, ``attempt_id``,
    ``completion_status``, ``progress_percent`` … and ``provenance`` (``native`` / ``derived`` /
    ``absent`` per field) as listed in :class:`hostspec.events.LearnerStatDataSchema`.

    :raise hostspec.RecordRejected: the record cannot be mapped.
    Stops at first non-None result.
    """


# ---------------------------------------------------------------------------------------------
# helpers with built-in defaults
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def record_id(record: Mapping[str, Any], scope: str) -> str | None:
    """The provider's id of a raw record, used to name it in rejection events.

    For catalog records return the id ``map_course`` would use as ``external_id``: a catalog
    item that exists but cannot be mapped then still counts as present, and is not removed.
    The built-in default returns ``record["id"]``, a string or any scalar (an integer becomes its
    text, as the host keeps every id). Stops at first non-None result.
    """


HOOK_ORDER = (
    "provider_info", "check_connection", "start_sandbox",
    "fetch_catalog", "map_course", "fetch_progress", "map_stat", "record_id",
)
"""Every hook, in lifecycle order; a test keeps this list equal to the specs above."""
