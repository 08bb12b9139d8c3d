"""LinkedIn Learning provider hooks: glue between the host's hook spec, the client and mapping."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Mapping

from hostspec import (
    CheckResult,
    Connection,
    PageEnd,
    ProviderError,
    ProviderInfo,
    SyncContext,
    hookimpl,
)

from . import __version__
from .client import LinkedInClient
from .contract import ASSETS_PATH, CALLS_PER_SECOND
from .lifetime import HORIZON, lifetime_row, pair_key, remember, total, window_values
from .mapping import course_from_asset, row_identity, stat_from_report
from .report_windows import Window, plan
from .settings import LinkedInSettings, LinkedInSettingsSchema

NAME = "linkedin_learning"


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name=NAME, version=__version__, title="LinkedIn Learning",
        scopes=("catalog", "progress"), settings_schema=LinkedInSettingsSchema, secret_fields=("client_secret",),
        account_setting="client_id", calls_per_second=CALLS_PER_SECOND,
        hosts=("api.linkedin.com", "www.linkedin.com"),
        description="Course catalog (learningAssets) and learner activity reports (learningActivityReports) "
                    "through LinkedIn's Learning APIs (OAuth2 client credentials).")


def _settings(connection: Connection) -> LinkedInSettings:
    assert isinstance(connection.settings, LinkedInSettings), "settings were not validated by the provider schema"
    return connection.settings


@hookimpl
def check_connection(connection: Connection) -> CheckResult:
    try:
        with LinkedInClient(_settings(connection)) as client:
            first = next(client.pages(ASSETS_PATH, client.asset_params()), ([], None))
    except (ProviderError, LookupError) as exc:
        return CheckResult(False, str(exc))
    return CheckResult(True, f"connected to LinkedIn Learning ({len(first[0])} courses on the first page)")


@hookimpl
def start_sandbox(options: Mapping[str, Any]):
    from .sandbox import LinkedInSandbox, LinkedInSpec

    known = set(LinkedInSpec.__dataclass_fields__)
    return LinkedInSandbox(LinkedInSpec(**{k: v for k, v in options.items() if k in known})).start()


@hookimpl
def fetch_catalog(connection: Connection, context: SyncContext) -> Iterator[Mapping[str, Any]]:
    with LinkedInClient(_settings(connection), calls=context.calls) as client:
        yield from client.assets()


@hookimpl
def map_course(record: Mapping[str, Any]) -> dict[str, Any]:
    return course_from_asset(record)


@hookimpl
def fetch_progress(connection: Connection, context: SyncContext, since: datetime | None,
                   until: datetime | None) -> Iterator[Mapping[str, Any] | PageEnd]:
    """Report rows with lifetime values (lifetime.py), window after window (report_windows.py);
    a ``PageEnd`` cursor ``{"at": window start, "start": page start}`` between pages."""
    settings, memory = _settings(connection), context.state
    horizon = memory.get(HORIZON)
    windows, new_horizon = plan(since, until, context.now, settings.first_sync_days, horizon)
    resume = context.resume if isinstance(context.resume, Mapping) else {}
    at, first_page = resume.get("at"), resume.get("start", 0)
    windows = [w for w in windows if not isinstance(at, int) or w.end_ms > at]
    with LinkedInClient(settings, calls=context.calls) as client:
        for n, window in enumerate(windows):
            if window.kind != "history" and new_horizon != horizon:
                memory.put(HORIZON, horizon := new_horizon)     # the history is read: day windows follow
            start = first_page if window.start_ms == at else 0
            for elements, nxt in client.report_pages(window.start_ms, window.days, start=start):
                for row in elements:
                    yield _with_lifetime(row, window, memory)
                if nxt is not None:
                    yield PageEnd({"at": window.start_ms, "start": nxt})
            if n + 1 < len(windows):
                yield PageEnd({"at": windows[n + 1].start_ms, "start": 0})
        if new_horizon != horizon:
            memory.put(HORIZON, new_horizon)


def _with_lifetime(row: Any, window: Window, memory: Any) -> Any:
    """``row`` with lifetime values, its window's remembered (a row without ids goes as it is)."""
    identity = row_identity(row) if isinstance(row, Mapping) else None
    if identity is None:
        return row
    key = pair_key(identity)
    remembered = remember(memory.get(key), window, window_values(row))
    values = total(remembered)
    memory.put(key, {**remembered, "sent": {k: values[k] for k in ("s", "c", "d")}})
    return lifetime_row(row, values)


@hookimpl
def map_stat(record: Mapping[str, Any], context: SyncContext) -> dict[str, Any]:
    return stat_from_report(record, now=context.now)


@hookimpl
def record_id(record: Mapping[str, Any], scope: str) -> str | None:
    if scope == "catalog":
        return record.get("urn") if isinstance(record.get("urn"), str) else None
    return row_identity(record)
