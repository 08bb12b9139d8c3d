"""The objects the host hands to provider hooks, and the ones providers hand back."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol

from marshmallow import Schema

from hostspec.provider_state import ProviderState

SCOPES = ("catalog", "progress")


@dataclass(frozen=True)
class ProviderInfo:
    """What a provider tells the host about itself (hook ``provider_info``).

    :param name: the name requests use (``"coursera"``); lower case, unique among installed providers.
    :param version: the provider package's version.
    :param scopes: which of ``"catalog"`` and ``"progress"`` it can sync.
    :param settings_schema: a marshmallow schema class validating the connection's ``settings``
        table; fields listed in ``secret_fields`` arrive as :class:`hostspec.secrets.Secret`.
    :param secret_fields: names of settings that hold secrets.
    :param incremental_catalog: ``fetch_catalog`` honours ``context.catalog_since`` (lists only
        the changes). Without it every catalog sync is a complete listing.
    :param account_setting: the setting naming the account the provider limits calls by (an API
        client id): a tenant's connections sharing it (and its secret) share one call budget
        (:mod:`hostspec.accounts`, :mod:`hostspec.runtime.ratebudget`).
        The provider then passes ``context.calls`` to its HTTP client
        (:func:`hostspec.kit.http.gate_session`).
    :param calls_per_second: the account's budget unless a connection says
        ``account_calls_per_second``.
    :param identity_settings: the settings naming the provider organization whose data a
        connection reads (Coursera: ``org_id``; default: ``account_setting``). Changing one gives
        the connection a new state (:mod:`hostspec.incarnation`).
    :param states_listing_total: the catalog API states how many items its complete listing
        holds, and ``fetch_catalog`` yields it as :class:`ListingTotal` (the paging helpers do).
        ``False`` declares that the API states no total: the removal guard then goes by shares
        only, and the conformance suite does not ask for one.
    :param hosts: the hosts (patterns) its settings' URLs may point at in production:
        ``"api.acme.com"``, or ``"*.acme.com"`` for any subdomain (not ``acme.com`` itself). The
        settings policy (:mod:`hostspec.config.policy`) allows these beside the hosts of the schema's
        default URLs and the deployment's ``allowed_hosts``; the conformance suite checks that
        the default URLs are on them.
    """

    name: str
    version: str
    title: str
    scopes: tuple[str, ...]
    settings_schema: type[Schema]
    secret_fields: tuple[str, ...] = ()
    description: str = ""
    incremental_catalog: bool = False
    account_setting: str | None = None
    calls_per_second: int | None = None
    identity_settings: tuple[str, ...] = ()
    states_listing_total: bool = True
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Connection:
    """One tenant's configured account at one provider, synchronized into one 360Learning group."""

    name: str
    tenant: str
    provider: str
    group_id: str
    settings: Mapping[str, Any] = field(repr=False)
    max_removal_share: float = 0.2   # the removal guard: at most this share of known courses removed per run
    catalog_complete_days: float = 7.0  # incremental catalog listings in between complete ones (0: always complete)
    progress_lookback_hours: float | None = None  # report lag covered by incremental progress (None: the host's)
    account_calls_per_second: int | None = None   # the provider account's call budget (None: the provider's)
    incarnation: str | None = None   # this life of the connection (hostspec.incarnation); None: keyed by name

    @property
    def state_scope(self) -> str:
        """The key of its sync state: ``tenant/name/incarnation`` (``tenant/name`` without one)."""
        return f"{self.tenant}/{self.name}/{self.incarnation}" if self.incarnation else f"{self.tenant}/{self.name}"

    def __repr__(self) -> str:  # settings may hold secrets: never print them
        return (f"Connection(name={self.name!r}, tenant={self.tenant!r}, "
                f"provider={self.provider!r}, group_id={self.group_id!r})")


@dataclass(frozen=True)
class SyncContext:
    """Per-run facts for hooks.

    :param run_id: unique id of this execution (a redo after a crash gets a new one).
    :param request_id: id of the ``learning.sync.requested.v1`` event that caused the run.
    :param scope: ``"catalog"`` or ``"progress"`` while that part runs.
    :param now: the run's clock reading, fixed at its start; mapping must use it, never the wall clock.
    :param options: request options (mode, date range, subsets), for information.
    :param resume: the cursor of the last page whose records were committed by an earlier
        attempt of this same request (see :class:`PageEnd`); ``None`` means start from the top.
    :param catalog_since: during a catalog fetch, the provider may list only the items changed
        since this instant (an incremental listing: the host then removes nothing); ``None``
        asks for the complete listing.
    :param log: a logger already labelled with run, connection and provider.
    :param calls: the account's call budget for this run, or ``None`` (no budget): call
        ``calls.acquire()`` before each HTTP call, ``calls.done()`` once it ended and
        ``calls.throttled(retry_after_s)`` after a 429; :func:`hostspec.kit.http.gate_session`
        does all three for a ``requests`` session.
    :param state: the provider's own memory in the connection's sync state
        (:class:`hostspec.provider_state.ProviderState`: ``get(key)``, ``put(key, value)``),
        committed with the run's events; outside a sync (tests, checks) a scratch memory.
    """

    run_id: str
    request_id: str
    scope: str
    now: datetime
    options: Mapping[str, Any] = field(default_factory=dict)
    resume: Any = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hostspec.run"))
    catalog_since: datetime | None = None
    calls: Any = None
    state: ProviderState = field(default_factory=ProviderState.scratch, repr=False)


@dataclass(frozen=True)
class CheckResult:
    """Answer of ``check_connection``: whether the credentials and ids work, said for a person."""

    ok: bool
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PageEnd:
    """Yielded by a fetch hook between pages: ``cursor`` is where the next page starts.

    Optional. A provider that yields these lets a long sync resume after a crash: the host
    commits the latest cursor with the events before it, and hands it back as
    ``context.resume`` to the next attempt of the same request. ``cursor`` must be JSON.
    """

    cursor: Any


@dataclass(frozen=True)
class ListingTotal:
    """Yielded by ``fetch_catalog`` (once, anywhere in the stream) when the provider's API states
    how many items its complete listing holds. A listing that ends with another number of items
    removes nothing (it was cut short, or the API glitched): see the host's removal guard."""

    total: int


@dataclass(frozen=True)
class ExpectedCount:
    """Yielded by a fetch hook as soon as the API says how many records the fetch will yield
    (Coursera's ``paging.total`` of the first page); it may come again with a corrected number.
    For people watching: progress bars and the ``expected`` of status events, nothing else."""

    total: int


class SandboxHandle(Protocol):
    """A running local stand-in of a provider's API (hook ``start_sandbox``)."""

    settings: Mapping[str, Any]
    """Connection settings that point at the sandbox (plain strings, secrets included)."""

    url: str

    def describe(self) -> str: ...

    def close(self) -> None: ...


Clock = Callable[[], datetime]

__all__ = ["SCOPES", "CheckResult", "Clock", "Connection", "PageEnd", "ProviderInfo", "SandboxHandle", "SyncContext"]
