"""A run's catalog scope: the listing (complete, or the changes since the last one), each
course emitted when it changed, and the removals a complete listing proves, behind the removal
guard."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Mapping

from hostspec import events as ev
from hostspec.engine.emit import Run
from hostspec.engine.report import count
from hostspec.event_schemas import COURSE_FIELDS_WITH_PROVENANCE
from hostspec.ops import metrics
from hostspec.provider import ExpectedCount, ListingTotal, PageEnd, SyncContext

log = logging.getLogger(__name__)
LOCKED_FIELDS = ["title", "description"]
CATALOG_WATERMARK = "catalog.watermark"     # when the last catalog fetch (of any kind) started
CATALOG_COMPLETE = "catalog.complete_at"    # when the last complete catalog listing started
CATALOG_OVERLAP = timedelta(hours=1)        # an incremental listing starts this long before the watermark


def catalog_since(run: Run, now: datetime) -> datetime | None:
    """Where an incremental listing may start, or None for a complete one (a full or subset
    request, a first sync, or the last complete listing older than ``catalog_complete_days``)."""
    request, connection = run.request, run.connection
    if (request.mode == "full" or request.is_subset or connection.catalog_complete_days <= 0
            or not run.provider.info.incremental_catalog):
        return None
    watermark, complete = (run.session.checkpoint(CATALOG_WATERMARK), run.session.checkpoint(CATALOG_COMPLETE))
    if not isinstance(watermark, str) or not isinstance(complete, str):
        return None
    # an hour of slack: a daily slot picked up a few seconds earlier than yesterday's is still "a day"
    if now - datetime.fromisoformat(complete) >= timedelta(days=connection.catalog_complete_days) - CATALOG_OVERLAP:
        return None
    return datetime.fromisoformat(watermark) - CATALOG_OVERLAP


def sync_catalog(run: Run) -> None:
    """List the catalog; emit the courses that changed, then the removals a complete listing proves."""
    counts = run.report.counts
    started = run.engine.clock()
    since = catalog_since(run, started)
    context = replace(run.context("catalog"), catalog_since=since)
    if since is not None:
        log.info("connection %s: catalog changes since %s (complete listing every %g days)", run.connection.name,
                 ev.isoformat(since), run.connection.catalog_complete_days)
    records = run.hooks.fetch_catalog(connection=run.connection, context=context)
    listed: int | None = None
    for record in run.stream(records, "catalog"):
        if isinstance(record, PageEnd):
            run.page_end()  # catalogs are refetched whole (removals need every item seen in one run)
            continue
        if isinstance(record, ExpectedCount):
            run.report.expected["catalog"] = record.total
            continue
        if isinstance(record, ListingTotal):
            listed = record.total
            continue
        counts.catalog_fetched += 1
        data = run.build(record, run.hooks.map_course, {"locked_fields": LOCKED_FIELDS}, context)
        entity = data["external_id"] if data and isinstance(data.get("external_id"), str) else None
        if data is None or entity is None:
            rid = run.rejected_id or run.record_id(record)
            if data is not None:
                rid = run.reject(record, "validation", "the mapped record has no external_id",
                                 {"external_id": ["Missing data for required field."]}) or rid
            if rid:  # present at the provider although unreadable: not a removal
                run.session.mark_seen("course", rid, run.report.run_id)
            elif not run.skipped_last:
                run.unidentified += 1   # listed, unreadable, nameless: no course may be removed this run
        else:
            run.session.mark_seen("course", entity, run.report.run_id)
            if run.courses and entity not in run.courses:
                counts.skipped += 1
            else:
                describe_course(data, context.now)
                outcome = run.emit_entity(record, ev.COURSE_UPSERTED, data, "course", entity,
                                          f"course/{entity}", entity, context,
                                          {"emitted_at": ev.isoformat(context.now)},
                                          run.session.entry("course", entity))
                count(counts, "courses", outcome)
        run.tick(counts.catalog_fetched)
    if since is None and not run.request.is_subset:
        # removals are decided on complete listings only; one the guard did not trust is not one
        if removals(run, context, listed):
            run.session.set_checkpoint(CATALOG_COMPLETE, ev.isoformat(started))
    if not run.request.is_subset:
        run.session.set_checkpoint(CATALOG_WATERMARK, ev.isoformat(started))


def removal_guard(run: Run, listed: int | None) -> str | None:
    """Why the courses absent from this listing must not be removed now, or None.

    A listing cut short (a page without its next link, an entitlement glitch answering an
    empty list) looks exactly like mass removals; the publisher would archive them all. So a
    run removes nothing when the listing disagrees with the provider's own total, when every
    known course is absent, or when more than the connection's ``max_removal_share`` is —
    unless the request says ``allow_mass_removal``."""
    state, scope, counts = run.engine.state, run.session.scope, run.report.counts
    absent = state.count_unseen(scope, "course", run.report.run_id)
    if not absent:
        return None
    known = state.count(scope, "course")
    share = run.connection.max_removal_share
    hint = (f"; if they are really gone: connector-host replay --connection {run.connection.name} "
            f"--scope catalog --allow-mass-removal")
    if run.unidentified:
        # an unreadable item named by no id may be any of the absent courses: removing one
        # would archive a course that is still listed
        why, hint = (f"{run.unidentified} listed items could not be read nor named by an id (record_id "
                     f"hook): {absent} absent courses not removed"), ""
    elif listed is not None and counts.catalog_fetched != listed:
        # a listing that provably disagrees with the provider is never trusted, not even on request
        why, hint = (f"the listing held {counts.catalog_fetched} items but the provider counts {listed}: "
                     f"{absent} absent courses not removed"), ""
    elif run.request.allow_mass_removal:
        return None
    elif absent >= known:
        why = f"all {known} known courses are absent from the listing: none removed"
    elif absent * 1000 > round(share * 1000) * known:     # integers: 29 of 100 at 0.29 is allowed
        why = (f"{absent} of {known} known courses ({absent / known:.0%}) are absent from the listing, more "
               f"than the {share:.0%} a run may remove: none removed")
    else:
        return None
    counts.removals_held = absent
    return why + hint


def removals(run: Run, context: SyncContext, listed: int | None = None) -> bool:
    """Courses emitted before and absent from this complete catalog fetch; False when the
    removal guard held them (the listing is not trusted)."""
    run.checkpoint()  # the seen marks of this fetch must be in the database for the query below
    why = removal_guard(run, listed)
    if why is not None:
        run.report.warning = {"kind": "removals_held", "message": why}
        if not run.request.dry_run:
            metrics.REMOVALS_HELD.labels(run.connection.name).inc(run.report.counts.removals_held)
        log.warning("connection %s: %s", run.connection.name, why)
        return False
    # streamed; deletes applied by checkpoints on the way do not disturb the keyset paging
    for entity, entry in run.engine.state.unseen(run.session.scope, "course", run.report.run_id):
        data = {**run.identity, "external_id": entity, "reason": "not_in_catalog",
                "last_seen_at": (entry.memo or {}).get("emitted_at")}
        run.sink.emit(ev.make_event(ev.COURSE_REMOVED, data, key=run.key(f"course/{entity}"),
                                    source=run.source, subject=entity, time=context.now,
                                    id_content=f"removed/{entry.fingerprint}"))
        run.session.delete("course", entity)
        for stat in run.engine.state.with_prefix(run.session.scope, "stat", f"{entity}/"):
            run.session.delete("stat", stat)   # the state of a removed course goes with it
        run.report.counts.courses_removed += 1
        run.step()
    return True


def describe_course(data: dict[str, Any], now: datetime) -> None:
    """Complete a mapped course with ``as_of`` (when its data was read) and a ``provenance`` for
    every described field: the provider's word where it gave one (``derived`` for a value it
    computed), else ``native``, or ``absent`` for an empty value."""
    data.setdefault("as_of", ev.isoformat(now))
    given = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    data["provenance"] = {f: given.get(f) or ("absent" if data.get(f) in (None, [], "") else "native")
                          for f in COURSE_FIELDS_WITH_PROVENANCE}


__all__ = ["CATALOG_COMPLETE", "CATALOG_WATERMARK", "LOCKED_FIELDS", "describe_course", "removal_guard", "removals",
           "sync_catalog"]
