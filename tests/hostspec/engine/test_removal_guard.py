"""The removal guard: a short, empty or disagreeing listing removes nothing; a real removal passes."""
from __future__ import annotations

from marshmallow import Schema

from hostspec import ListingTotal, ProviderInfo, hookimpl
from hostspec import events as ev
from hostspec.config.connections import ConnectionStore
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB

from .test_engine import T0


class Catalog:
    """A provider listing ``ids``, optionally stating a total."""

    def __init__(self):
        self.ids, self.total = [], None

    @hookimpl
    def provider_info(self):
        return ProviderInfo("toy", "0.0.1", "Toy", ("catalog", "progress"), Schema)

    @hookimpl
    def fetch_catalog(self):
        if self.total is not None:
            yield ListingTotal(self.total)
        for i in self.ids:
            yield {"id": i}

    @hookimpl
    def map_course(self, record):
        return {"external_id": record["id"], "title": f"Course {record['id']}", "description": None, "language": "en",
                "content_type": "course", "launch_url": f"https://toy.test/{record['id']}", "image_url": None,
                "duration_minutes": None, "difficulty_level": None, "sources": [], "subjects": [], "skills": [],
                "provider_updated_at": None}

    @hookimpl
    def fetch_progress(self):
        return iter(())


class World:
    def __init__(self, **connection):
        self.toy = Catalog()
        self.pm = get_plugin_manager(load_entry_points=False, plugins=[("toy", self.toy)])
        self.conn = ConnectionStore({"t1": {"tenant": "acme", "provider": "toy", "group_id": "g1", "settings": {},
                                           "catalog_complete_days": 0, **connection}},
                                    source="<test>").get("t1", self.pm)
        self.state = StateDB()
        self.n = 0

    def sync(self, ids, *, total=None, allow=False):
        self.toy.ids, self.toy.total = list(ids), total
        self.n += 1
        sink = MemorySink()
        report = SyncEngine(self.pm, sink, state=self.state, clock=lambda: T0).run(
            SyncRequest(f"r{self.n}", "t1", "toy", "catalog", allow_mass_removal=allow), self.conn)
        return report, [e.data["external_id"] for e in sink.of_type(ev.COURSE_REMOVED)], sink


FIFTY = [f"c{i:02d}" for i in range(50)]


def test_a_real_removal_of_ten_percent_passes():
    w = World()
    w.sync(FIFTY)
    report, removed, _ = w.sync(FIFTY[5:])
    assert report.outcome == "completed" and removed == FIFTY[:5] and report.counts.removals_held == 0


def test_a_truncated_listing_removes_nothing_and_says_why():
    w = World()
    w.sync(FIFTY)
    report, removed, sink = w.sync(FIFTY[:20])          # a page without its next link: 30 absent
    assert removed == [] and report.outcome == "partial" and report.counts.removals_held == 30
    status = sink.of_type(ev.SYNC_STATUS)[-1].data
    assert status["phase"] == "partial" and status["error"]["kind"] == "removals_held"
    assert "30 of 50" in status["error"]["message"] and "--allow-mass-removal" in status["error"]["message"]
    # the next listing that agrees removes nothing that is still there, and finds them all back
    report, removed, _ = w.sync(FIFTY)
    assert report.outcome == "completed" and removed == []


def test_an_empty_listing_never_removes_everything():
    w = World(max_removal_share=0.99)
    w.sync(FIFTY)
    report, removed, _ = w.sync([])
    assert removed == [] and report.counts.removals_held == 50 and "all 50" in report.warning["message"]


def test_a_listing_that_disagrees_with_the_providers_total_removes_nothing():
    w = World()
    w.sync(FIFTY, total=50)
    report, removed, _ = w.sync(FIFTY[1:], total=50)    # one item missing, the total says 50
    assert removed == [] and "counts 50" in report.warning["message"]
    report, removed, _ = w.sync(FIFTY[1:], total=49)    # the total agrees: a real removal
    assert removed == [FIFTY[0]] and report.outcome == "completed"


def test_an_explicit_replay_lifts_the_guard():
    w = World()
    w.sync(FIFTY)
    report, removed, _ = w.sync(FIFTY[:10], allow=True)
    assert len(removed) == 40 and report.outcome == "completed"


def test_the_share_is_configurable_per_connection():
    w = World(max_removal_share=0.5)
    w.sync(FIFTY)
    _report, removed, _ = w.sync(FIFTY[20:])            # 40 % absent: within 50 %
    assert len(removed) == 20


def test_a_bad_share_is_a_clear_configuration_error():
    import pytest

    from hostspec.errors import ConfigError
    for bad in (1, 1.5, -0.1, "20%", True):
        with pytest.raises(ConfigError, match="max_removal_share"):
            World(max_removal_share=bad)


# -- found by review ---------------------------------------------------------------------------------
def test_an_explicit_replay_never_trusts_a_listing_that_disagrees_with_the_total():
    w = World()
    w.sync(FIFTY, total=50)
    report, removed, _ = w.sync(FIFTY[:10], total=50, allow=True)
    assert removed == [] and "--allow-mass-removal" not in report.warning["message"]


def test_the_share_is_compared_in_whole_numbers():
    w = World(max_removal_share=0.29)
    hundred = [f"c{i:03d}" for i in range(100)]
    w.sync(hundred)
    _report, removed, _ = w.sync(hundred[29:])                      # exactly 29 %: allowed
    assert len(removed) == 29


def test_a_dry_run_holding_removals_raises_no_alert():
    from hostspec.ops import metrics
    w = World()
    w.sync(FIFTY)
    before = metrics.REMOVALS_HELD.labels("t1")._value.get()
    w.toy.ids = FIFTY[:10]
    w.n += 1
    SyncEngine(w.pm, MemorySink(), state=w.state, clock=lambda: T0).run(
        SyncRequest("dry", "t1", "toy", "catalog", dry_run=True), w.conn)
    assert metrics.REMOVALS_HELD.labels("t1")._value.get() == before


def test_a_provider_without_incremental_listings_always_lists_everything():
    w = World(catalog_complete_days=7)                              # the toy does not declare incremental_catalog
    w.sync(FIFTY)
    report, removed, _ = w.sync(FIFTY[1:])
    assert removed == [FIFTY[0]] and report.outcome == "completed"


def test_events_stay_readable_by_consumers_of_the_first_v1_schema():
    """Defaults are left out: an old worker reads a new request, an old follower a new status."""
    req = SyncRequest("r", "t1", "toy", "catalog").to_event(T0)
    assert "allow_mass_removal" not in req.data
    w = World()
    _report, _removed, sink = w.sync(FIFTY)
    assert all("removals_held" not in s.data["counts"] for s in sink.of_type(ev.SYNC_STATUS))
