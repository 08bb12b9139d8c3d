"""The fleet index (hostspec.control.index): statuses joined into runs and requests whatever order
they are read in, dead letters marked re-driven, pages newest first, memory bounded."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pytest

from hostspec import events as ev, rejections
from hostspec.control import index, redrive
from hostspec.engine.report import Counts
from hostspec.requests import SyncRequest

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def status(request_id: str | None, phase: str, *, run_id: str | None = None, tenant: str | None = "acme",
           connection: str = "acme-c", minute: int = 0, **extra) -> ev.Event:
    at = T0 + timedelta(minutes=minute)
    data = {"request_id": request_id, "run_id": run_id, "tenant": tenant, "connection": connection,
            "provider": "coursera", "scope": "all", "phase": phase, "dry_run": False, "counts": asdict(Counts()),
            "error": None, "started_at": ev.isoformat(at) if phase != "queued" else None,
            "ended_at": ev.isoformat(at) if phase in ("completed", "failed") else None, "worker": None, **extra}
    return ev.make_event(ev.SYNC_STATUS, data, key=f"{tenant}/{connection}", source="/test", subject=connection,
                         time=at, id_content=f"{request_id}/{run_id}/{phase}/{minute}")


def letter(n: int, *, connection: str = "acme-c", tenant: str | None = "acme", stage: str = "mapping",
           request_id: str | None = None) -> ev.Event:
    return rejections.raw_rejection(stage=stage, topic="t", partition=0, offset=n, value=b"{}",
                                    reason=f"refused {n}", errors={"title": ["missing"]},
                                    now=T0 + timedelta(minutes=n), key=f"k{n}", source="/test", id_content=str(n),
                                    request_id=request_id, tenant=tenant, connection=connection, provider="coursera")


def test_a_run_is_its_latest_status_whatever_order_the_topics_are_read_in():
    fleet = index.FleetIndex()
    queued = status("q1", "queued", redrive_of=["dl-1"])
    fleet.add(status("q1", "started", run_id="run-1", minute=1))
    fleet.add(status("q1", "completed", run_id="run-1", minute=2))
    fleet.add(queued)                        # read late (another partition): hides nothing
    fleet.add(status("q1", "started", run_id="run-1", minute=1))      # read again (a retried send)
    assert [(r["run_id"], r["phase"], r["redrive_of"]) for r in fleet.run_page(lambda r: True).items] == [
        ("run-1", "completed", ["dl-1"])]                                 # one item a run, its re-drive said
    assert fleet.request("q1")["status"]["phase"] == "completed"
    # a connection's status lists the queued request beside its run, as it always did
    assert [(r["run_id"], r["phase"]) for r in fleet.runs(lambda r: True)] == [(None, "queued"), ("run-1", "completed")]

    again = index.FleetIndex()               # in topic order: the same
    for event in (queued, status("q1", "started", run_id="run-1", minute=1)):
        again.add(event)
    assert [(r["run_id"], r["phase"]) for r in again.run_page(lambda r: True).items] == [("run-1", "started")]


def test_a_merged_request_names_the_run_it_ran_in_and_leaves_the_run_its_own():
    fleet = index.FleetIndex()
    fleet.add(status("main", "started", run_id="run-9", minute=1))
    fleet.add(status("later", "started", run_id="run-9", minute=1, merged_into="main"))
    fleet.add(status("later", "completed", run_id="run-9", minute=2, merged_into="main"))
    merged = fleet.request("later")
    assert (merged["merged_into"], merged["merged_into_request"], merged["status"]["phase"]) == (
        "run-9", "main", "completed")
    assert [(r["request_id"], r["phase"]) for r in fleet.runs(lambda r: True)] == [("main", "started")]
    assert fleet.request("main")["merged_into"] is None


def test_a_redrive_marks_its_dead_letters_with_who_when_and_into_which_request():
    fleet = index.FleetIndex()
    for n in (1, 2):
        fleet.add(letter(n), partition=0, offset=n)
    request = SyncRequest("rq-1", "acme-c", "coursera", "all", "redrive:api:acme-admin:1 records", mode="full")
    fleet.add(request.to_event(T0), tenant="acme")
    fleet.add(status("rq-1", "queued", minute=5, redrive_of=[letter(1).id]))
    assert fleet.redriven(letter(1).id) == {"by": "api:acme-admin", "at": "2026-03-01T12:05:00.000Z",
                                            "request_id": "rq-1"}
    assert fleet.redriven(letter(2).id) is None
    assert [d.id for d in fleet.dead_letters(lambda d: True, redriven=False)] == [letter(2).id]
    listed = fleet.letter(fleet.dead_letters(lambda d: True, redriven=True)[0])
    assert listed["errors"] == {"title": ["missing"]} and listed["redriven"]["by"] == "api:acme-admin"
    assert "record" not in fleet.dead_letters(lambda d: True)[0].data      # no record kept in memory


@pytest.mark.parametrize("requested_by, actor", [
    ("redrive:api:ops:3 records", "api:ops"), ("redrive:cli:ann of 1f2e", "cli:ann"), ("api:ops", None)])
def test_the_actor_of_a_redrive_request(requested_by, actor):
    assert redrive.actor_of(requested_by) == actor


def test_pages_run_newest_first_with_the_total_and_end_without_a_cursor():
    fleet = index.FleetIndex()
    for n in range(5):
        fleet.add(letter(n), partition=0, offset=n)
    seen, cursor, totals = [], None, set()
    while True:
        got = fleet.dead_letter_page(lambda d: True, limit=2, cursor=cursor)
        seen += [d["offset"] for d in got.items]
        totals.add(got.total)
        cursor = got.next_cursor
        if cursor is None:
            break
    assert seen == [4, 3, 2, 1, 0] and totals == {5}
    with pytest.raises(index.BadCursor):
        fleet.dead_letter_page(lambda d: True, cursor="not-a-cursor")


def test_memory_is_bounded_per_connection_the_oldest_dropped():
    fleet = index.FleetIndex(letters_per_connection=3, runs_per_connection=2)
    for n in range(5):
        fleet.add(letter(n), partition=0, offset=n)
        fleet.add(status(f"r{n}", "completed", run_id=f"run-{n}", minute=n))
    fleet.add(letter(9, connection="beta-c", tenant="beta"), partition=0, offset=9)
    assert [d.offset for d in fleet.dead_letters(lambda d: d.connection == "acme-c")] == [2, 3, 4]
    assert len(fleet.dead_letters(lambda d: d.connection == "beta-c")) == 1     # another connection's own cap
    assert [r["run_id"] for r in fleet.runs(lambda r: True)] == ["run-3", "run-4"]


def test_a_plane_whose_feeder_stopped_restores_the_index_anew(monkeypatch):
    from hostspec.control import plane as plane_module
    from hostspec.control.plane import ControlPlane

    started = []

    class Feeder:
        def __init__(self, _kafka, _topics, fleet, _tenant_of):
            self.index, self.failed, self.closed = fleet, None, False
            started.append(self)

        def start(self, _timeout_s):
            return self

        def catch_up(self, _timeout_s):
            return True

        def close(self):
            self.closed = True

    monkeypatch.setattr(plane_module, "IndexFeeder", Feeder)
    plane = ControlPlane.__new__(ControlPlane)
    plane.kafka = plane.topics = None
    plane.index, plane._feeder = index.FleetIndex(), None
    plane._feeder_lock = __import__("threading").Lock()
    plane._catch_up()
    plane._catch_up()
    assert len(started) == 1
    started[0].failed = RuntimeError("the broker went away for good")
    plane._catch_up()
    assert len(started) == 2 and started[0].closed and started[1].index is plane.index is not started[0].index
