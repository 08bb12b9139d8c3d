"""Issue 32 item 2: LinkedIn's reports count their window only; time spent and completions sent
to 360Learning are lifetime values, whatever windows the syncs read."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connector_linkedin import contract
from connector_linkedin.lifetime import remember, total, window_values
from connector_linkedin.report_windows import DAY_MS, Window
from connector_linkedin.sandbox import NOW_MS, LinkedInSandbox, LinkedInSpec
from hostspec import events as ev
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB

NOW = datetime.fromtimestamp(NOW_MS / 1000, timezone.utc)
START = NOW - timedelta(days=31) + timedelta(hours=7)          # not at midnight: runs read partial days
END = START + timedelta(days=30)
FIELDS = ("time_spent_seconds", "completion_status", "completed_at", "progress_percent",
          "first_activity_at", "last_activity_at")
# sessions of a learner in a course spread over up to two weeks, within the 30 days
SPEC = LinkedInSpec(courses=5, learners=6, activities=24, history_days=19, spread_days=14, sessions=6)


class Clock:
    def __init__(self, sandbox: LinkedInSandbox, at: datetime):
        self.sandbox, self.at = sandbox, at
        self.set(at)

    def set(self, at: datetime) -> None:
        self.at = at
        self.sandbox.clock_ms = int(at.timestamp() * 1000)     # LinkedIn reports nothing that has not happened

    def __call__(self) -> datetime:
        return self.at


def stats(sink: MemorySink) -> dict[str, dict]:
    """The last stat sent per learner and course."""
    out: dict[str, dict] = {}
    for event in sink.of_type(ev.LEARNER_STAT_UPSERTED):
        out[event.data["attempt_id"]] = {f: event.data[f] for f in FIELDS}
    return out


def sync(plugins, sb, clock, sink, state, *, name, first_sync_days, runs, step=timedelta(days=2), **request):
    connection = connection_from_settings(name, "linkedin_learning", {**sb.settings, "page_size": 5,
                                                                     "first_sync_days": first_sync_days}, plugins)
    engine = SyncEngine(plugins, sink, state=state, clock=clock)
    for n, at in enumerate(runs):
        clock.set(at)
        report = engine.run(SyncRequest(f"{name}-{n}-{at.isoformat()}", name, "linkedin_learning", "progress",
                                        **request), connection)
        assert report.outcome == "completed", report
    return connection, engine


def truth(sb: LinkedInSandbox) -> dict[str, tuple[int, bool]]:
    """Each learner's lifetime seconds and completion, straight from the sandbox's sessions."""
    out = {}
    for i in range(sb.spec.activities):
        row = sb.row(i)
        if row is not None:
            by_type = {a["engagementType"]: a["engagementValue"] for a in row["activities"]}
            out[f"{row['learnerDetails']['uniqueUserId']}~{row['contentDetails']['contentUrn']}"] = (
                by_type[contract.SECONDS_VIEWED], contract.COMPLETIONS in by_type)
    return out


def test_fifteen_incremental_syncs_give_the_lifetime_of_one_full_sync(plugins):
    with LinkedInSandbox(SPEC) as sb:
        clock = Clock(sb, START)
        chained, chain_state = MemorySink(), StateDB()
        runs = [START + timedelta(days=2 * k) for k in range(1, 16)]           # 15 runs, 2 days apart
        connection, engine = sync(plugins, sb, clock, chained, chain_state, name="li-chain", first_sync_days=2,
                                  runs=runs)
        assert clock() == END
        whole = MemorySink()
        sync(plugins, sb, clock, whole, StateDB(), name="li-full", first_sync_days=31, runs=[END], mode="full")
        expected = truth(sb)                                                   # what happened before END

        incremental, full = stats(chained), stats(whole)
        assert set(incremental) == set(full) == set(expected) and len(full) > 10
        spread = [k for k in full if sum(1 for e in chained.of_type(ev.LEARNER_STAT_UPSERTED)
                                         if e.data["attempt_id"] == k) > 1]
        assert len(spread) > 5, "too few learners whose activity spans several runs: the test proves little"
        assert incremental == full
        assert {k: (s["time_spent_seconds"], s["completion_status"] == "completed") for k, s in full.items()} \
            == expected

        # the same window again (a retry, a replay of the whole range) counts nothing twice
        again = MemorySink()
        engine.sink = again
        engine.run(SyncRequest("li-retry", connection.name, "linkedin_learning", "progress"), connection)
        engine.run(SyncRequest("li-replay", connection.name, "linkedin_learning", "progress",
                               since=START - timedelta(days=1), until=END), connection)
        assert not again.of_type(ev.LEARNER_STAT_UPSERTED), [e.data for e in again.events][:2]


def test_a_replayed_day_replaces_its_value_and_a_total_never_goes_back():
    day = Window(NOW_MS - 5 * DAY_MS, 1, "day")
    row = {"activities": [
        {"engagementType": contract.SECONDS_VIEWED, "engagementValue": 600, "engagementMetricQualifier": "TOTAL",
         "firstEngagedAt": day.start_ms + 10, "lastEngagedAt": day.start_ms + 20},
        {"engagementType": contract.COMPLETIONS, "engagementValue": 1, "engagementMetricQualifier": "TOTAL",
         "firstEngagedAt": day.start_ms + 20, "lastEngagedAt": day.start_ms + 20}]}
    memory = remember(None, day, window_values(row))
    memory = remember(memory, day, window_values(row))                          # the same day read twice
    assert total(memory)["s"] == 600 and total(memory)["c"] == 1
    memory = remember(memory, Window(day.end_ms, 1, "day"), window_values({"activities": row["activities"][:1]}))
    done = total(memory)
    assert (done["s"], done["c"], done["d"]) == (1200, 1, day.start_ms + 20)   # a later day adds, completion stays
    memory["sent"] = {k: done[k] for k in ("s", "c", "d")}
    shrunk = remember(memory, day, {"s": 100, "c": None, "p": None, "f": None, "l": None, "d": None})
    assert (total(shrunk)["s"], total(shrunk)["c"], total(shrunk)["d"]) == (1200, 1, day.start_ms + 20)


def test_history_counts_once_and_its_days_are_not_added_again():
    history = Window(NOW_MS - 40 * DAY_MS, 37, "history")
    day_inside = Window(NOW_MS - 10 * DAY_MS, 1, "day")
    values = {"s": 500, "c": 1, "p": 100, "f": history.start_ms, "l": day_inside.start_ms, "d": day_inside.start_ms}
    memory = remember(remember(None, day_inside, {**values, "s": 50}), history, values)   # days inside: dropped
    assert total(memory)["s"] == 500
    assert total(remember(memory, day_inside, {**values, "s": 70}))["s"] == 500          # inside the base: skipped
    assert total(remember(memory, history, values))["s"] == 500                          # history read again
    assert total(remember(memory, Window(history.start_ms, 10, "listing"), values))["s"] == 500
    after = Window(history.end_ms, 1, "day")
    assert total(remember(memory, after, {**values, "s": 30}))["s"] == 530


@pytest.mark.parametrize("days", [1, 3])
def test_the_sandbox_reports_summarize_their_window(days):
    with LinkedInSandbox(SPEC) as sb:
        begin = NOW_MS - 32 * DAY_MS
        whole = {r["learnerDetails"]["uniqueUserId"] + r["contentDetails"]["contentUrn"]:
                 r["activities"][0]["engagementValue"] for r in sb.rows_between(begin, NOW_MS + 20 * DAY_MS)}
        summed: dict[str, int] = {}
        for start in range(begin, NOW_MS + 20 * DAY_MS, days * DAY_MS):
            for r in sb.rows_between(start, start + days * DAY_MS):
                key = r["learnerDetails"]["uniqueUserId"] + r["contentDetails"]["contentUrn"]
                summed[key] = summed.get(key, 0) + r["activities"][0]["engagementValue"]
        assert summed == whole
        assert any(len([1 for s in range(begin, NOW_MS, DAY_MS) if sb.row(i, s, s + DAY_MS)]) > 1
                   for i in range(SPEC.activities)), "every learner active on one day only"
