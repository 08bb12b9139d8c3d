"""Coursera provider hooks: thin glue between the host's hook spec and the client and mapping."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

from marshmallow import Schema, ValidationError

from hostspec import (
    CheckResult,
    Connection,
    ExpectedCount,
    ListingTotal,
    PageEnd,
    ProviderError,
    ProviderInfo,
    RecordRejected,
    SyncContext,
    hookimpl,
)

from . import __version__, contract, grade_scale
from .api_schemas import CONTENT, ENROLLMENT_REPORT, fast_report, has_activity
from .client import CourseraClient
from .mapping import course_from_content, stat_from_report
from .report_window import ACTIVITY, ENROLLMENT, Window
from .settings import CourseraSettings, CourseraSettingsSchema

NAME = "coursera"


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name=NAME, version=__version__, title="Coursera for Business",
        scopes=("catalog", "progress"), settings_schema=CourseraSettingsSchema,
        secret_fields=("client_secret",), incremental_catalog=True, hosts=("api.coursera.com",),
        account_setting="client_id", calls_per_second=contract.CALLS_PER_SECOND,
        identity_settings=("org_id",),    # the organization read; the client id may change (a new app key)
        description="Catalog of the organisation's programs and learner enrollment reports, "
                    "through Coursera's Business API (OAuth2 client credentials).")


def _settings(connection: Connection) -> CourseraSettings:
    settings = connection.settings
    assert isinstance(settings, CourseraSettings), "settings were not validated by CourseraSettingsSchema"
    return settings


@hookimpl
def check_connection(connection: Connection) -> CheckResult:
    settings = _settings(connection)
    try:
        with CourseraClient(settings) as client:
            org = client.organization()
    except (ProviderError, LookupError) as exc:
        return CheckResult(False, str(exc), {"org_id": settings.org_id})
    return CheckResult(True, f"connected to Coursera organisation {org.get('name')!r} ({settings.org_id})",
                       {"org_id": settings.org_id, "org_name": org.get("name")})


@hookimpl
def start_sandbox(options: Mapping[str, Any]):
    from .sandbox import CourseraSandbox, OrgSpec

    known = {f for f in OrgSpec.__dataclass_fields__}
    spec = OrgSpec(**{k: v for k, v in options.items() if k in known})
    return CourseraSandbox(spec).start()


@hookimpl
def fetch_catalog(connection: Connection, context: SyncContext) -> Iterator[Mapping[str, Any] | ListingTotal]:
    """Every content item, then the listing's total as the API states it (the host's removal
    guard removes nothing when the two disagree). With ``context.catalog_since``, only the items
    changed since (``modifiedSinceTimestamp``); items marked REMOVED are left to the next complete
    listing, where their absence removes them under the guard."""
    totals: list[int] = []
    told = False
    with CourseraClient(_settings(connection), calls=context.calls) as client:
        for item in client.iter_contents(modified_since=context.catalog_since, on_total=totals.append):
            if totals and not told:
                told = True
                yield ExpectedCount(totals[0])      # the first page said: for progress displays
            if context.catalog_since is not None and _removed_change(item):
                continue
            yield item
    if totals:
        yield ListingTotal(totals[-1])


def _removed_change(item: Any) -> bool:
    changes = item.get("changes") if isinstance(item, Mapping) else None
    return isinstance(changes, list) and any(isinstance(c, Mapping) and c.get("changeType") == "REMOVED"
                                             for c in changes)


@hookimpl
def map_course(record: Mapping[str, Any], connection: Connection, context: SyncContext) -> dict[str, Any] | None:
    kind = record.get("contentType") if isinstance(record, Mapping) else None
    if isinstance(kind, str) and kind in contract.SKIPPED_CONTENT_TYPES:
        context.log.info("content %s skipped: %s", record.get("contentId"), contract.SKIPPED_CONTENT_TYPES[kind])
        return None   # counted as skipped by the host
    return course_from_content(_load(CONTENT, record), program_id=_settings(connection).program_id)


@hookimpl
def fetch_progress(connection: Connection, context: SyncContext, since: datetime | None,
                   until: datetime | None) -> Iterator[Mapping[str, Any] | PageEnd]:
    """Report rows with activity in the window; with a window, then the rows of learners enrolled
    in it, which an activity filter leaves out while they have no activity at all (the rows of
    both passes that overlap are the same records: the host emits only what changed). The window
    is half-open, [since, until): consecutive windows share no row and miss none.

    Cursors: an int is a page of the first pass, ``"enrolled:<start>"`` one of the second.
    """
    resume = context.resume if isinstance(context.resume, (int, str)) else 0
    enrolled_start = _enrolled_cursor(resume)
    expected = _Expected()
    with CourseraClient(_settings(connection), calls=context.calls) as client:
        if enrolled_start is None:
            pages = client.report_pages(Window(ACTIVITY, since, until), start=resume, on_total=expected.first)
            yield from _with_page_ends(pages, lambda start: start, expected)
            if since is None and until is None:
                return      # every row was listed
            enrolled_start = 0
            yield PageEnd(f"{_ENROLLED}{enrolled_start}")
        pages = client.report_pages(Window(ENROLLMENT, since, until), start=enrolled_start,
                                    on_total=expected.second)
        # the second pass is for rows without activity: a row with activity was in the first pass
        # when its activity lies in the window, and is not the window's when it lies outside
        pages = (([r for r in rows if not has_activity(r)], nxt) for rows, nxt in pages)
        yield from _with_page_ends(pages, lambda start: f"{_ENROLLED}{start}", expected)


class _Expected:
    """The rows the two passes will list, as their first pages say (for progress displays)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.told: int | None = None

    def first(self, total: int) -> None:
        self.totals.setdefault("first", total)

    def second(self, total: int) -> None:
        self.totals.setdefault("second", total)

    def news(self) -> ExpectedCount | None:
        total = sum(self.totals.values())
        if self.totals and total != self.told:
            self.told = total
            return ExpectedCount(total)
        return None


_ENROLLED = "enrolled:"


def _enrolled_cursor(resume: int | str) -> int | None:
    """The start of the second pass named by a resume cursor, or None for the first pass."""
    if isinstance(resume, str) and resume.startswith(_ENROLLED) and resume[len(_ENROLLED):].isdigit():
        return int(resume[len(_ENROLLED):])
    return None


def _with_page_ends(pages: Iterator[tuple[list[Any], Any]], cursor: Callable[[Any], Any],
                    expected: _Expected) -> Iterator[Mapping[str, Any] | PageEnd | ExpectedCount]:
    """Each page's rows (their grades' scale read per page) and a page end after each page."""
    for elements, next_start in pages:
        news = expected.news()
        if news is not None:
            yield news
        yield from grade_scale.mark_page(elements)
        if next_start is not None:
            yield PageEnd(cursor(next_start))


@hookimpl
def record_id(record: Mapping[str, Any], scope: str) -> str | None:
    """Catalog records are named by contentId (their external_id); report rows by their id."""
    value = record.get("contentId" if scope == "catalog" else "id") if isinstance(record, Mapping) else None
    return value if isinstance(value, str) and value else None


@hookimpl
def map_stat(record: Mapping[str, Any], context: SyncContext) -> dict[str, Any]:
    report = fast_report(record) or _load(ENROLLMENT_REPORT, record)
    return stat_from_report(report, now=context.now)


def _load(schema: Schema, record: Mapping[str, Any]) -> Any:
    """The record loaded by ``schema``, or RecordRejected carrying marshmallow's messages."""
    try:
        return schema.load(record)
    except ValidationError as exc:
        record_id = record.get("id") if isinstance(record, Mapping) else None
        raise RecordRejected(record_id if isinstance(record_id, str) else None, exc.messages) from None
