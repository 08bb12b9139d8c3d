"""A catalog item the provider cannot map is never a removal, whatever its id type; a mapped
value that is not JSON (a datetime object) rejects its record, not the run."""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema

from hostspec import ProviderInfo, RecordRejected, hookimpl
from hostspec import events as ev
from hostspec.config.connections import ConnectionStore
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import scalar_id
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB

from .test_engine import T0


class IntCatalog:
    """Items with integer ids (Go1, Udemy…); ``broken`` ones fail to map, raising ``RecordRejected``
    with ``give`` as their id; ``nameless`` ones have no id at all."""

    def __init__(self):
        self.ids, self.broken, self.give, self.nameless, self.when = list(range(1, 21)), set(), "id", 0, None

    @hookimpl
    def provider_info(self):
        return ProviderInfo("ints", "0.0.1", "Ints", ("catalog",), Schema)

    @hookimpl
    def fetch_catalog(self):
        yield from ({"id": i, "title": f"Course {i}"} for i in self.ids)
        yield from ({"title": "no id"} for _ in range(self.nameless))

    @hookimpl
    def map_course(self, record):
        if "id" not in record:
            raise RecordRejected(None, {"id": ["missing"]})
        if record["id"] in self.broken:
            raise RecordRejected(record["id"] if self.give == "id" else None, {"title": ["unreadable"]})
        return {"external_id": str(record["id"]), "title": record["title"], "description": None, "language": "en",
                "content_type": "course", "launch_url": f"https://ints.test/{record['id']}", "image_url": None,
                "duration_minutes": None, "difficulty_level": None, "sources": [], "subjects": [], "skills": [],
                "provider_updated_at": self.when}


class World:
    def __init__(self):
        self.toy = IntCatalog()
        self.pm = get_plugin_manager(load_entry_points=False, plugins=[("ints", self.toy)])
        self.conn = ConnectionStore({"c": {"tenant": "acme", "provider": "ints", "group_id": "g1", "settings": {},
                                          "catalog_complete_days": 0}}, source="<test>").get("c", self.pm)
        self.state, self.n = StateDB(), 0

    def sync(self):
        self.n += 1
        sink = MemorySink()
        report = SyncEngine(self.pm, sink, state=self.state, clock=lambda: T0).run(
            SyncRequest(f"r{self.n}", "c", "ints", "catalog"), self.conn)
        return report, sink


def test_scalar_ids_are_kept_as_text():
    assert [scalar_id(v) for v in ("a", 7, 7.0, 0, "", None, True, 7.5, [1])] == \
        ["a", "7", "7", "0", None, None, None, None, None]


def test_an_integer_id_given_to_record_rejected_names_the_dead_letter_and_is_not_removed():
    w = World()
    w.sync()
    w.toy.broken = {3, 4, 5}
    report, sink = w.sync()
    assert report.counts.rejected == 3 and sink.of_type(ev.COURSE_REMOVED) == []
    assert sorted(e.data["record_id"] for e in sink.of_type(ev.RECORD_REJECTED)) == ["3", "4", "5"]


def test_without_an_id_in_the_rejection_the_default_record_id_names_integer_ids():
    w = World()
    w.sync()
    w.toy.broken, w.toy.give = {3, 4, 5}, None
    report, sink = w.sync()
    assert sink.of_type(ev.COURSE_REMOVED) == []
    assert sorted(e.data["record_id"] for e in sink.of_type(ev.RECORD_REJECTED)) == ["3", "4", "5"]


def test_a_listed_item_without_any_id_holds_every_removal_of_the_run():
    w = World()
    w.sync()
    w.toy.ids, w.toy.nameless = list(range(1, 20)), 1       # course 20 gone, and one unreadable nameless item
    report, sink = w.sync()
    assert sink.of_type(ev.COURSE_REMOVED) == [] and report.counts.removals_held == 1
    assert "could not be read nor named by an id" in report.warning["message"]
    w.toy.nameless = 0                                       # the next clean listing removes it
    _report, sink = w.sync()
    assert [e.data["external_id"] for e in sink.of_type(ev.COURSE_REMOVED)] == ["20"]


def test_a_datetime_object_rejects_its_record_with_a_message_that_says_so():
    w = World()
    w.toy.when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    report, sink = w.sync()
    assert report.outcome == "partial" and report.counts.rejected == 20
    letter = sink.of_type(ev.RECORD_REJECTED)[0].data
    assert letter["record_id"] == "1"
    assert "provider_updated_at" in str(letter["errors"]) and "ISO 8601" in str(letter["errors"])
