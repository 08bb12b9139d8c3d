"""The state store: sessions buffer writes, commit atomically, and round-trip through a changelog."""
from __future__ import annotations

from hostspec.engine.state import StateDB, StateSession, apply_changelog


def test_session_reads_its_own_pending_writes_and_commits_them(tmp_path):
    db = StateDB(tmp_path / "s.sqlite")
    s = StateSession(db, "acme/c1")
    s.put("course", "x", "f1", {"emitted_at": "t"})
    s.set_checkpoint("progress.watermark", "2026-01-01T00:00:00.000Z")
    assert s.entry("course", "x").fingerprint == "f1" and db.entry("acme/c1", "course", "x") is None
    s.commit()
    assert db.entry("acme/c1", "course", "x").memo == {"emitted_at": "t"}
    assert StateDB(tmp_path / "s.sqlite").checkpoint("acme/c1", "progress.watermark") == "2026-01-01T00:00:00.000Z"


def test_rollback_forgets_the_batch():
    db = StateDB()
    s = StateSession(db, "a/b")
    s.put("stat", "k", "f")
    s.rollback()
    s.commit()
    assert db.entry("a/b", "stat", "k") is None


def test_unseen_lists_entities_not_marked_by_the_run():
    db = StateDB()
    s = StateSession(db, "a/b")
    for n in range(2500):
        s.put("course", f"c{n:04d}", "f")
    s.commit()
    for n in range(0, 2500, 2):
        s.mark_seen("course", f"c{n:04d}", "run-2")
    s.commit()
    unseen = [e for e, _ in db.unseen("a/b", "course", "run-2")]
    assert len(unseen) == 1250 and all(int(e[1:]) % 2 == 1 for e in unseen)


def test_scopes_are_isolated():
    db = StateDB()
    StateSession(db, "t/one").put("course", "x", "f")
    s = StateSession(db, "t/one")
    s.put("course", "x", "f")
    s.commit()
    assert StateSession(db, "t/two").entry("course", "x") is None


def test_changelog_rebuilds_the_same_state():
    source = StateDB()
    s = StateSession(source, "a/b")
    s.put("course", "x", "f1", {"emitted_at": "t"})
    s.put("stat", "y", "f2")
    s.set_checkpoint("progress.watermark", "w")
    first = s.changelog()
    s.commit()
    s.delete("stat", "y")
    s.set_checkpoint("progress.resume", None)
    second = s.changelog()
    s.commit()
    replica = StateDB()
    apply_changelog(replica, first)
    apply_changelog(replica, second)
    assert replica.entry("a/b", "course", "x").memo == {"emitted_at": "t"}
    assert replica.entry("a/b", "stat", "y") is None
    assert replica.checkpoint("a/b", "progress.watermark") == "w"
    assert replica.count() == source.count() == 1
