"""A run's progress scope: learner stats in the request's window (since the watermark, less
the lookback), resumable at a page's cursor, each stat emitted when it changed."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from hostspec import events as ev
from hostspec import rules
from hostspec.engine.emit import Run
from hostspec.engine.report import count
from hostspec.provider import ExpectedCount, ListingTotal, PageEnd, SyncContext

log = logging.getLogger(__name__)
WATERMARK = "progress.watermark"
RESUME = "progress.resume"


def window(run: Run) -> tuple[datetime | None, datetime | None, bool]:
    """(since, until, moves_watermark) for this request."""
    request = run.request
    if request.since or request.until:
        return request.since, request.until, False       # a replay of a date range
    if request.mode == "full":
        return None, None, not request.is_subset
    watermark = run.session.checkpoint(WATERMARK)
    hours = run.connection.progress_lookback_hours
    lookback = run.engine.lookback if hours is None else timedelta(hours=hours)
    since = datetime.fromisoformat(watermark) - lookback if watermark else None
    return since, None, not request.is_subset


def sync_progress(run: Run) -> None:
    """Fetch the request's window of learner stats; emit those that changed, checkpoint at pages."""
    counts = run.report.counts
    since, until, moves_watermark = window(run)
    # a cursor resumes the same fetch only: same request, window and filters (a retry that
    # merged more requests in reads again from the top)
    fetch = {"request_id": run.request.request_id, "since": since and ev.isoformat(since),
              "until": until and ev.isoformat(until), "learners": _listed(run.request.learners),
              "courses": _listed(run.request.courses)}
    saved = run.session.checkpoint(RESUME)
    resume = saved.get("cursor") if saved and {k: saved.get(k) for k in fetch} == fetch else None
    if resume is not None:
        log.info("resuming request %s at cursor %r", run.request.request_id, resume)
    context = run.context("progress", resume)
    fetch_started = context.now
    records = run.hooks.fetch_progress(connection=run.connection, context=context, since=since, until=until)
    for record in run.stream(records, "progress"):
        if isinstance(record, PageEnd):
            run.session.set_checkpoint(RESUME, {**fetch, "cursor": record.cursor})
            run.page_end()
            continue
        if isinstance(record, ExpectedCount):
            run.report.expected["progress"] = record.total
            continue
        if isinstance(record, ListingTotal):
            continue        # a paging helper's count of a progress listing: nothing to guard
        counts.progress_fetched += 1
        data = run.build(record, run.hooks.map_stat, {}, context)
        if data is not None:
            emit_stat(run, record, data, context)
        run.tick(counts.progress_fetched)
    run.session.set_checkpoint(RESUME, None)
    if moves_watermark:
        run.session.set_checkpoint(WATERMARK, ev.isoformat(fetch_started))


def emit_stat(run: Run, record: Any, data: dict[str, Any], context: SyncContext) -> None:
    counts = run.report.counts
    try:
        course, learner = data["course_external_id"], data["learner"]
        entity = f"{course}/{learner['provider_id']}/{data['attempt_id']}"
    except (KeyError, TypeError):
        run.reject(record, "validation", "the mapped stat lacks course, learner or attempt ids",
                   {"_schema": ["course_external_id, learner.provider_id and attempt_id are required"]})
        return
    if (run.courses and course not in run.courses) or (
            run.learners and not run.learners & {learner.get("provider_id"), learner.get("email")}):
        counts.skipped += 1
        return
    previous = run.session.entry("stat", entity)
    data = rules.keep_completion(previous.memo if previous else None, data)
    outcome = run.emit_entity(record, ev.LEARNER_STAT_UPSERTED, data, "stat", entity,
                              f"stat/{course}/{learner['provider_id']}", f"{course}/{learner['provider_id']}",
                              context, rules.completion_memo(data), previous)
    count(counts, "stats", outcome)


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return sorted(names) if names else None


__all__ = ["RESUME", "WATERMARK", "emit_stat", "sync_progress", "window"]
