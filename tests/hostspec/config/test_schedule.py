"""Which sync requests are due: one per job and slot, a missed slot caught up once."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from hostspec.errors import ConfigError
from hostspec.config.schedule import due, jobs_of
from hostspec.transport.murmur2 import partition_for

ENTRY = {"tenant": "acme", "provider": "coursera", "group_id": "g"}


def at(day, hour=12, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def test_defaults_are_spread_catalog_then_statistics_on_cet_and_a_weekly_full_sync():
    jobs = jobs_of("acme", ENTRY)
    m, h = divmod(7 * 60 + partition_for(b"acme", 120), 60)[::-1]
    pm, ph = divmod(7 * 60 + partition_for(b"acme", 120) + 20, 60)[::-1]
    assert [(j.name, j.scope, j.mode, j.cron.expression, j.cron.tz.key) for j in jobs] == [
        ("catalog", "catalog", "incremental", f"{m} {h} * * *", "Europe/Paris"),
        ("progress", "progress", "incremental", f"{pm} {ph} * * 1-6", "Europe/Paris"),
        ("full", "all", "full", f"{pm} {ph} * * 0", "Europe/Paris")]
    assert [j.cron.expression for j in jobs_of("acme", ENTRY)] == [j.cron.expression for j in jobs]   # stable


def test_a_thousand_connections_spread_over_the_window():
    per_minute = Counter(jobs_of(f"tenant-{i:04d}-coursera", ENTRY)[0].cron.expression for i in range(1000))
    assert len(per_minute) > 100 and max(per_minute.values()) <= 20     # 08:45 for all of them, before


def test_progress_follows_a_catalog_time_the_connection_sets():
    jobs = jobs_of("acme", {**ENTRY, "schedule": {"catalog": "45 8 * * *"}})
    assert [j.cron.expression for j in jobs] == ["45 8 * * *", "5 9 * * 1-6", "5 9 * * 0"]


def test_custom_schedule_weekly_full_and_jobs_off():
    jobs = jobs_of("acme", {**ENTRY, "schedule": {"timezone": "UTC", "catalog": "off", "full": "0 6 * * 0"}})
    assert [(j.name, j.mode) for j in jobs] == [("progress", "incremental"), ("full", "full")]
    assert jobs_of("acme", {**ENTRY, "enabled": False}) == []


@pytest.mark.parametrize("schedule, message", [
    ({"catalog": "every day"}, "schedule.catalog"), ({"timezone": "Nowhere/Land"}, "time zone"),
    ({"weekly": "0 0 * * 0"}, "unknown schedule keys weekly"), ({"window": "9-10"}, "window"),
    ({"window": "23:00-23:59", "progress_delay": 30}, "before midnight"), ({"progress_delay": "soon"}, "minutes")])
def test_bad_schedules_name_the_connection_and_key(schedule, message):
    with pytest.raises(ConfigError, match=message) as info:
        jobs_of("acme", {**ENTRY, "schedule": schedule})
    assert "'acme'" in str(info.value)


def test_one_request_per_slot_and_deterministic_ids():
    jobs = jobs_of("acme", {**ENTRY, "schedule": {"catalog": "45 8 * * *", "progress": "0 9 * * *", "full": "off"}})
    first = due(jobs, {}, at(28, 8, 30))
    assert [(s.job.name, s.at.isoformat()) for s in first] == [
        ("catalog", "2026-11-28T07:45:00+00:00"), ("progress", "2026-11-28T08:00:00+00:00")]
    last = {s.job.key: s.at.isoformat() for s in first}
    assert due(jobs, last, at(28, 20)) == []                           # same slots: nothing more today
    assert [s.request_id for s in due(jobs, {}, at(28, 8, 40))] == [s.request_id for s in first]
    assert len({s.request_id for s in first}) == 2


def test_a_scheduler_down_for_days_catches_up_once():
    jobs = jobs_of("acme", {**ENTRY, "schedule": {"catalog": "45 8 * * *", "progress": "0 9 * * *", "full": "off"}})
    last = {s.job.key: s.at.isoformat() for s in due(jobs, {}, at(24, 8, 30))}
    after_outage = due(jobs, last, at(28))
    assert [s.at.date().day for s in after_outage] == [28, 28]        # the latest slots, not four days' worth
    assert due(jobs, last, at(28, 7, 50)) != [] and len(due(jobs, last, at(28, 7, 50))) == 2
    assert [s.at for s in due(jobs, last, at(24, 8, 30) + timedelta(hours=1))] == []


def test_a_job_never_published_catches_up_only_a_recent_daily_slot_and_never_a_full_one():
    """Deploying the weekly full default must not fire every connection's last Sunday slot at the
    first tick (found by review); a new connection still gets today's syncs at once."""
    jobs = jobs_of("acme", {**ENTRY, "schedule": {"catalog": "45 8 * * *", "progress": "0 9 * * *",
                                                  "full": "0 9 * * 0"}})
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
    assert [s.job.name for s in due(jobs, {}, sunday)] == ["catalog", "progress"]
    assert [s.job.name for s in due(jobs, {"acme/full": "2026-11-22T08:00:00+00:00"}, sunday)] == [
        "catalog", "progress", "full"]                                 # published before: caught up
    slots_28 = {s.job.key: s.at.isoformat() for s in due(jobs, {}, at(28, 12))}
    assert due(jobs, {}, at(28, 12) + timedelta(days=2)) != [] and slots_28


def test_next_slots_are_what_previous_finds_when_their_time_comes():
    job = jobs_of("acme", ENTRY)[1]
    moment = at(27)
    for _ in range(5):
        nxt = job.cron.next(moment)
        assert nxt > moment and job.cron.previous(nxt) == nxt and job.cron.previous(nxt - timedelta(seconds=1)) < nxt
        moment = nxt


def test_schedule_show_lists_every_connections_next_slots(tmp_path, capsys):
    from hostspec.cli.main import main
    from tests.conftest import connections_toml

    path = tmp_path / "c.toml"
    path.write_text(connections_toml("http://127.0.0.1:9", secret_env="X", names=("acme", "globex")))
    assert main(["--connections", str(path), "schedule", "--show", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [(line.split()[0], line.split()[1]) for line in lines] == [
        (c, j) for c in ("acme", "globex") for j in ("catalog", "progress", "full")]
    assert all(line.count("Europe/Paris") == 1 and line.count(", ") == 1 for line in lines)


def test_the_scheduler_follows_the_control_topic_live(caplog):
    from datetime import datetime, timezone

    from hostspec.config import documents as docs
    from hostspec.config.policy import SettingsPolicy
    from hostspec.runtime.scheduler import Scheduler
    from hostspec.topics import Topics
    from hostspec.transport.config import KafkaConfig
    from hostspec.config.control_topic import MemoryControl

    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    control = MemoryControl(SettingsPolicy())
    scheduler = Scheduler(control, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics())
    entry = {"tenant": "acme", "provider": "coursera", "group_id": "g1",
             "settings": {"org_id": "o", "client_id": "c", "client_secret": {"env": "CONNECTOR_SECRET_A"}}}

    def write(name, revision, **changes):
        control.write({**docs.document(name, {**entry, **changes}, revision=revision, changed_by="t", now=now)}, now)

    assert scheduler.jobs() == []
    write("acme", 1)
    assert sorted(j.name for j in scheduler.jobs()) == ["catalog", "full", "progress"]
    write("acme", 2, enabled=False)                    # paused through the API
    assert scheduler.jobs() == []
    write("acme", 3)
    write("broken", 1, schedule={"catalog": "99 * * * *"})   # written past the API's check
    assert sorted(j.connection for j in scheduler.jobs()) == ["acme"] * 3
    assert "broken" in caplog.text and "schedule.catalog" in caplog.text
    control.write(docs.tombstone("acme", revision=4, changed_by="t", now=now), now)
    assert scheduler.jobs() == []
    assert scheduler.readiness() == {"kafka": False, "connections": True}   # not polling: not started
