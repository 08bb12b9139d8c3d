"""Conformance checks of fetching and syncing again: every page read, ``since``/``until`` honoured,
a progress fetch resumed from a ``PageEnd`` cursor, nothing emitted by a second sync of unchanged
data, completion dates, golden records, and transient answers (429, 503) retried.

Mixed into :class:`hostspec.kit.testing.ProviderConformance` (``run``: :class:`hostspec.kit.conformance.run.Run`).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import pytest

from hostspec import events as ev
from hostspec.engine.state import StateDB
from hostspec.kit.conformance.explain import explain
from hostspec.kit.conformance.meaning import swapped_activity
from hostspec.kit.conformance.run import OnePlugin, WindowSpy, open_run
from hostspec.kit.golden import check_golden
from hostspec.provider import PageEnd


class FetchChecks:
    """Paging, time windows, resumption, a second sync, and faults the sandbox injects."""

    # -- fetching --------------------------------------------------------------------------------
    def test_every_page_is_read(self, run):
        expected = getattr(run.sandbox, "expected", None)
        if not expected:
            pytest.skip("the sandbox states no expected counts (SandboxServer.expected)")
        for scope in run.provider.info.scopes:
            got = sum(isinstance(r, Mapping) for r in run.fetch(scope))
            assert got == expected[scope], (
                f"fetch_{scope} yielded {got} records, the sandbox serves {expected[scope]}: read every page "
                f"(hostspec.kit.paging.offset_pages or cursor_pages follow them)")

    def test_since_and_until_are_honoured(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        stats = run.stats(run.fetch("progress"))
        moments = sorted(ev_time for s in stats if (ev_time := _moment(s.get("last_activity_at"))) is not None)
        if len({m.date() for m in moments}) < 4:
            pytest.skip("the sandbox's learner activity spans fewer than 4 days")
        middle = moments[len(moments) // 2]
        day = timedelta(days=1)
        after = run.stats(run.fetch("progress", since=middle))
        assert len(after) < len(stats), (
            f"fetch_progress(since={middle.isoformat()}) yielded {len(after)} of the {len(stats)} stats: since "
            f"is ignored (an incremental sync would fetch everything every day)")
        early = [s for s in after if (m := _moment(s.get("last_activity_at"))) is not None and m < middle - day]
        swapped = swapped_activity(stats)
        assert not (early and swapped), swapped
        assert not early, (
            f"fetch_progress(since={middle.isoformat()}) yielded {len(early)} stats with activity before it: since "
            f"is not applied; first: {early[0]}")
        before = run.stats(run.fetch("progress", until=middle))
        late = [s for s in before if (m := _moment(s.get("last_activity_at"))) is not None and m > middle + day]
        assert not late, (
            f"fetch_progress(until={middle.isoformat()}) yielded {len(late)} stats with activity after it: until is "
            f"ignored (a replay of a window would sync everything); first: {late[0]}")

    def test_a_progress_fetch_resumes_from_a_page_cursor(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        everything = run.fetch("progress")
        cut = next((i for i, r in enumerate(everything) if isinstance(r, PageEnd)), None)
        if cut is None:
            pytest.skip("fetch_progress yields no PageEnd: a long progress sync starts over after a crash")
        cursor = everything[cut].cursor
        json.dumps(cursor)                                      # a cursor is committed as JSON
        rest = [_identity(s) for s in run.stats(everything[cut + 1:])]
        resumed = [_identity(s) for s in run.stats(run.fetch("progress", resume=cursor))]
        assert resumed == rest, (
            f"fetch_progress with context.resume={cursor!r} yielded {len(resumed)} stats, the records after that "
            f"cursor are {len(rest)}: start from context.resume (the cursor of the last PageEnd committed)")

    # -- syncing again -----------------------------------------------------------------------------
    def test_a_second_sync_of_unchanged_data_emits_nothing(self, run):
        state = StateDB()
        first, report = run.sync(state=state)
        again, report2 = run.sync(state=state)
        changed = [e for e in again.events if e.type in (ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED)]
        if changed:
            before = {e.key: e.data for e in first.events}
            fields = sorted({k for e in changed for k, v in e.data.items()
                             if k != "fingerprint" and before.get(e.key, {}).get(k) != v})
        assert not changed, (
            f"a second sync of the same data emitted {len(changed)} events again; fields that changed: "
            f"{fields}. Mapping must not depend on the time of the sync (use context.now only for as_of).")

    def test_an_incremental_sync_sees_a_progress_change(self, run):
        """Sync, let one learner study a little more now, sync again: the second sync goes through
        the host's real progress window (since the watermark, less the lookback) and emits that
        change, and only changes. A fresh sandbox: the change must not reach the other checks."""
        if "progress" not in run.provider.info.scopes or run.sandbox is None:
            pytest.skip("no progress scope, or no sandbox to change")
        with open_run(type(self).plugin, name=type(self).provider_name,
                      sandbox_options=type(self).sandbox_options) as fresh:
            state = StateDB()
            first, _ = fresh.sync(state=state)
            at = datetime.now(timezone.utc)
            changed = fresh.sandbox.change_progress(at)
            if changed is None:
                pytest.skip("the sandbox cannot change a learner's progress (SandboxServer.change_progress)")
            spy = WindowSpy(fresh.provider.hooks)
            again, report = fresh.sync(state=state, plugins=OnePlugin(fresh.provider, spy))
        since = spy.windows[-1][0] if spy.windows else None
        assert since is not None, (
            f"the second sync fetched progress with since={since}: the host did not run it incrementally")
        before = {e.key: e.data for e in first.events if e.type == ev.LEARNER_STAT_UPSERTED}
        emitted = [e for e in again.events if e.type == ev.LEARNER_STAT_UPSERTED]
        assert emitted, (
            f"the sandbox changed {dict(changed)} at {at.isoformat()}; the incremental sync that followed "
            f"(fetch_progress since={since.isoformat()}, the host's window) emitted no learner stat. fetch_progress "
            f"must return the activity inside since..until: check which date field the since filter applies to "
            f"and its time zone, and that the sandbox dates its data relative to the clock "
            f"(hostspec.kit.sandbox_epoch)\n{fresh.explain(again, report)}")
        same = [e.key for e in emitted if before.get(e.key, {}).get("fingerprint") == e.data.get("fingerprint")]
        assert not same, (
            f"the incremental sync emitted {len(same)} stats unchanged since the first sync (first: {same[0]}); "
            f"only the change was expected ({dict(changed)})")

    def test_completed_stats_carry_a_completion_date(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        undated = [e for e in run.sink.of_type(ev.RECORD_REJECTED) if "completed_at" in json.dumps(e.data["errors"])]
        assert not undated, (
            f"{len(undated)} completed stats were refused for their completed_at: when the API gives no "
            f"completion date, derive one (the last activity) with provenance 'derived'\n{run.explain()}")
        completed = [e.data for e in run.sink.of_type(ev.LEARNER_STAT_UPSERTED)
                     if e.data["completion_status"] == "completed"]
        if not completed:
            pytest.skip("the sandbox has no completed enrollment")
        assert all(isinstance(s["completed_at"], str) for s in completed)

    def test_golden_records_map_as_expected(self, run):
        golden = type(self).golden
        if golden is None:
            pytest.skip("the provider ships no golden records (provider_test_class(golden=...)); "
                        "add one per unit or scale conversion its mapping does")
        count = check_golden(golden, run.provider.hooks, run.connection, run.context("progress"), run.provider.name)
        assert count, f"no golden records found in {golden}"

    def test_transient_answers_are_retried(self, run):
        if not callable(getattr(run.sandbox, "inject", None)) or getattr(run.sandbox, "faults", None) is None:
            pytest.skip("the sandbox cannot inject faults (SandboxServer.inject)")
        for fault, said in (("429", "429 Too Many Requests (Retry-After: 0)"), ("5xx", "503")):
            run.sandbox.inject(fault, times=2)
            sink, report = run.sync()
            assert report.outcome == run.report.outcome, (
                f"after the sandbox answered {said} twice, the sync ended {report.outcome} instead of "
                f"{run.report.outcome}: retry transient answers with backoff, honouring Retry-After "
                f"(hostspec.kit.retry.retry_policy)\n{explain(sink, report)}")
            assert report.counts.courses_emitted == run.report.counts.courses_emitted
            assert report.counts.stats_emitted == run.report.counts.stats_emitted


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _identity(stat: Mapping[str, Any]) -> tuple[Any, ...]:
    learner = stat.get("learner") or {}
    return stat.get("course_external_id"), learner.get("provider_id") or learner.get("email"), stat.get("attempt_id")
