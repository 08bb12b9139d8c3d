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
from .client import LinkedInClient, report_window
from .contract import CALLS_PER_SECOND
from .mapping import course_from_asset, stat_from_report
from .settings import LinkedInSettings, LinkedInSettingsSchema

NAME = "linkedin_learning"


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name=NAME, version=__version__, title="LinkedIn Learning",
        scopes=("catalog", "progress"), settings_schema=LinkedInSettingsSchema, secret_fields=("client_secret",),
        account_setting="client_id", calls_per_second=CALLS_PER_SECOND,
        description="Course catalog (learningAssets) and learner activity reports (learningActivityReports) "
                    "through LinkedIn's Learning APIs (OAuth2 client credentials).")


def _settings(connection: Connection) -> LinkedInSettings:
    assert isinstance(connection.settings, LinkedInSettings), "settings were not validated by the provider schema"
    return connection.settings


@hookimpl
def check_connection(connection: Connection) -> CheckResult:
    try:
        with LinkedInClient(_settings(connection)) as client:
            first = next(client.pages("/v2/learningAssets", {"q": "localeAndType", "assetType": "COURSE"}), ([], None))
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
    settings = _settings(connection)
    started_at, days = report_window(since, until, settings.first_sync_days, context.now)
    start = context.resume if isinstance(context.resume, int) else 0
    with LinkedInClient(settings, calls=context.calls) as client:
        for elements, nxt in client.report_pages(started_at, days, start=start):
            yield from elements
            if nxt is not None:
                yield PageEnd(nxt)


@hookimpl
def map_stat(record: Mapping[str, Any], context: SyncContext) -> dict[str, Any]:
    return stat_from_report(record, now=context.now)


@hookimpl
def record_id(record: Mapping[str, Any], scope: str) -> str | None:
    if scope == "catalog":
        return record.get("urn") if isinstance(record.get("urn"), str) else None
    learner = record.get("learnerDetails") or {}
    content = record.get("contentDetails") or {}
    if isinstance(learner, Mapping) and isinstance(content, Mapping):
        who = learner.get("uniqueUserId") or learner.get("email")
        if isinstance(who, str) and isinstance(content.get("contentUrn"), str):
            return f"{who}~{content['contentUrn']}"
    return None
