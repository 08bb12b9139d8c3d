"""The delivery ledger: per record, what was sent to 360Learning, when, under which bulk
operation, and what 360Learning answered for that item (SQLite, one file per publisher).

A record is one course or one learner's stat in one course of one connection. ``deliveries``
holds its latest state; ``history`` every attempt. The ledger also remembers the integration of
each connection, the 360Learning ids of courses and learners, and which tags the publisher added
to which course (the only tags it ever removes).

Losing the file is safe: the publisher re-sends (upserts and stat imports are idempotent) and
stops removing provider tags it can no longer prove it added.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, connection TEXT NOT NULL, course TEXT NOT NULL,
    learner TEXT, event_id TEXT NOT NULL, fingerprint TEXT, status TEXT NOT NULL,
    operation_id TEXT, resource_id TEXT, detail TEXT, item TEXT, sends INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_course ON deliveries (course);
CREATE INDEX IF NOT EXISTS deliveries_learner ON deliveries (learner);
CREATE TABLE IF NOT EXISTS history (
    key TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL, operation_id TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS history_key ON history (key);
CREATE TABLE IF NOT EXISTS integrations (
    connection TEXT NOT NULL, group_id TEXT NOT NULL, label TEXT NOT NULL, integration_id TEXT NOT NULL,
    PRIMARY KEY (connection, group_id, label));
CREATE TABLE IF NOT EXISTS courses (
    integration_id TEXT NOT NULL, external_id TEXT NOT NULL, course_id TEXT NOT NULL,
    PRIMARY KEY (integration_id, external_id));
CREATE TABLE IF NOT EXISTS users (
    base_url TEXT NOT NULL, mail TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (base_url, mail));
CREATE TABLE IF NOT EXISTS provider_tags (
    course_id TEXT NOT NULL, tag_id TEXT NOT NULL, PRIMARY KEY (course_id, tag_id));
"""

DELIVERED = "delivered"   # 360Learning answered success for the item
FAILED = "failed"         # 360Learning (or local validation) refused it: on the dead-letter topic
PARKED = "parked"         # waiting for the learner or the course to exist in 360Learning
SENT = "sent"             # in a bulk operation whose results are not known yet


@dataclass(frozen=True)
class Record:
    """One record to deliver, identified across runs."""

    kind: str            # course | removal | stat
    connection: str
    course: str          # provider course id
    learner: str | None  # provider learner id (stats)
    event_id: str
    fingerprint: str | None

    @property
    def key(self) -> str:
        kind = "course" if self.kind == "removal" else self.kind
        return "\x1f".join(x for x in (kind, self.connection, self.course, self.learner) if x)


class Ledger:
    def __init__(self, path: str | Path = ":memory:"):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # -- records ------------------------------------------------------------------------------------
    def already_delivered(self, record: Record, status_wanted: str = DELIVERED) -> bool:
        """True when the same content (fingerprint, and kind for courses) was delivered before."""
        with self._lock:
            row = self._db.execute("SELECT status, fingerprint, kind FROM deliveries WHERE key = ?",
                                   (record.key,)).fetchone()
        return bool(row and row[0] == status_wanted and row[1] == record.fingerprint and row[2] == record.kind)

    def status_of(self, record: Record) -> tuple[str, float] | None:
        """(status, time of the last change) of a record, or None if never seen."""
        with self._lock:
            row = self._db.execute("SELECT status, updated_at FROM deliveries WHERE key = ?", (record.key,)).fetchone()
        return (row[0], row[1]) if row else None

    def mark(self, records: Iterable[tuple[Record, str, str | None, str | None, str | None, Any]]) -> None:
        """Write (record, status, operation id, resource id, detail, item sent) for many records at once."""
        now = time.time()
        rows = [(r.key, r.kind, r.connection, r.course, r.learner, r.event_id, r.fingerprint, status, op,
                 resource, detail, None if item is None else json.dumps(item, separators=(",", ":")),
                 1 if status == SENT else 0, now)
                for r, status, op, resource, detail, item in records]
        with self._lock, self._db:
            self._db.executemany(
                """INSERT INTO deliveries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(key) DO UPDATE SET kind=excluded.kind, event_id=excluded.event_id,
                     fingerprint=excluded.fingerprint, status=excluded.status,
                     operation_id=COALESCE(excluded.operation_id, operation_id),
                     resource_id=COALESCE(excluded.resource_id, resource_id), detail=excluded.detail,
                     item=COALESCE(excluded.item, item), sends=sends + excluded.sends,
                     updated_at=excluded.updated_at""", rows)
            self._db.executemany("INSERT INTO history VALUES (?,?,?,?,?)",
                                 [(row[0], now, row[7], row[8], row[10]) for row in rows])

    def query(self, *, connection: str | None = None, course: str | None = None, learner: str | None = None,
              status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (("connection", connection), ("course", course), ("learner", learner),
                              ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM deliveries" + (" WHERE " + " AND ".join(where) if where else "") + \
              " ORDER BY updated_at DESC, key LIMIT ?"
        with self._lock:
            cursor = self._db.execute(sql, (*args, limit))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
            for row in rows:
                row["item"] = json.loads(row["item"]) if row["item"] else None
                row["history"] = [
                    {"at": at, "status": st, "operation_id": op, "detail": detail}
                    for at, st, op, detail in self._db.execute(
                        "SELECT at, status, operation_id, detail FROM history WHERE key = ? ORDER BY at, rowid",
                        (row["key"],))]
        return rows

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall())

    # -- 360Learning ids ------------------------------------------------------------------------------
    def integration(self, connection: str, group_id: str, label: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT integration_id FROM integrations WHERE connection=? AND group_id=? "
                                   "AND label=?", (connection, group_id, label)).fetchone()
        return row[0] if row else None

    def remember_integration(self, connection: str, group_id: str, label: str, integration_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO integrations VALUES (?,?,?,?)",
                             (connection, group_id, label, integration_id))

    def forget_integration(self, connection: str, group_id: str, label: str) -> None:
        """The integration is gone in 360Learning (and its courses with it): forget it, and mark
        what was delivered through it as stale so that it is sent again when it comes by."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM integrations WHERE connection=? AND group_id=? AND label=?",
                             (connection, group_id, label))
            self._db.execute("UPDATE deliveries SET status='stale' WHERE connection=? AND status=?",
                             (connection, DELIVERED))

    def course_id(self, integration_id: str, external_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT course_id FROM courses WHERE integration_id=? AND external_id=?",
                                   (integration_id, external_id)).fetchone()
        return row[0] if row else None

    def remember_courses(self, integration_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO courses VALUES (?,?,?)",
                                 [(integration_id, ext, cid) for ext, cid in pairs])

    def user_id(self, base_url: str, mail: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT user_id FROM users WHERE base_url=? AND mail=?",
                                   (base_url, mail.casefold())).fetchone()
        return row[0] if row else None

    def remember_user(self, base_url: str, mail: str, user_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO users VALUES (?,?,?)", (base_url, mail.casefold(), user_id))

    def provider_tags(self, course_id: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT tag_id FROM provider_tags WHERE course_id=?", (course_id,))}

    def set_provider_tags(self, course_id: str, tag_ids: Iterable[str]) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM provider_tags WHERE course_id=?", (course_id,))
            self._db.executemany("INSERT INTO provider_tags VALUES (?,?)", [(course_id, t) for t in tag_ids])
