"""The delivery ledger: per record, what was sent to 360Learning, when, under which bulk
operation, and what 360Learning answered for that item.

A record is one course, or one attempt of one learner in one course, of one connection.
``deliveries`` holds its latest state (with the *recency* of the content delivered, see
:func:`.items.recency`); ``history`` every attempt. The ledger also remembers the integration of
each connection, which tags the publisher added to which course (the only tags it ever removes),
the tags still to merge, and the 360Learning ids of courses and learners (caches).

Local and shared at once. The rows live in SQLite (``--ledger``, one file per instance); every
fact another instance would need after a take-over — deliveries, integrations, tags — is also
written to a journal (:class:`.journal.LedgerJournal`: a compacted Kafka topic, partitioned
like the events), from which an instance rebuilds the rows of the partitions it is assigned.
Caches (course and user ids) are not journaled: the API answers them again.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from hostspec import ledger_records

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, connection TEXT NOT NULL, course TEXT NOT NULL,
    learner TEXT, event_id TEXT NOT NULL, fingerprint TEXT, status TEXT NOT NULL,
    operation_id TEXT, resource_id TEXT, detail TEXT, item TEXT, sends INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL, attempt TEXT, recency TEXT, tenant TEXT);
CREATE INDEX IF NOT EXISTS deliveries_course ON deliveries (course);
CREATE INDEX IF NOT EXISTS deliveries_learner ON deliveries (learner);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status);
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
CREATE TABLE IF NOT EXISTS tags_pending (
    course_id TEXT PRIMARY KEY, connection TEXT NOT NULL, tenant TEXT, names TEXT NOT NULL);
"""
_ADDED_COLUMNS = {"deliveries": ("attempt TEXT", "recency TEXT", "tenant TEXT"),   # ledgers of earlier versions
                  "integrations": ("tenant TEXT",), "provider_tags": ("tenant TEXT",)}

DELIVERED = ledger_records.DELIVERED   # 360Learning answered success for the item
FAILED = ledger_records.FAILED         # 360Learning (or local validation) refused it: on the dead-letter topic
PARKED = "parked"         # waiting for the learner or the course to exist in 360Learning
SENT = "sent"             # in a bulk operation whose results are not known yet
SEP = ledger_records.SEP

# journal keys: what kind of fact a journal record holds; a delivery fact keeps to the shape the
# host reads (:mod:`hostspec.ledger_records`: the admin API counts deliveries from it)
J_DELIVERY, J_INTEGRATION, J_TAGS = ledger_records.DELIVERY, "i", "t"
Journal = Callable[[str | None, str, "dict[str, Any] | None"], None]   # (tenant, key, value or None)


@dataclass(frozen=True)
class Record:
    """One record to deliver, identified across runs."""

    kind: str            # course | removal | stat
    connection: str
    course: str          # provider course id
    learner: str | None  # provider learner id (stats)
    event_id: str
    fingerprint: str | None
    attempt: str | None = None   # provider attempt id (stats): attempts are never merged
    recency: str | None = None   # how recent the content is (stats, :func:`.items.recency`)
    tenant: str | None = None

    @property
    def key(self) -> str:
        kind = "course" if self.kind == "removal" else self.kind
        return SEP.join(x for x in (kind, self.connection, self.course, self.learner, self.attempt) if x)


class Ledger:
    def __init__(self, path: str | Path = ":memory:", *, journal: Journal | None = None):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        self._lock = threading.RLock()
        self.journal: Journal = journal or (lambda tenant, key, value: None)

    def close(self) -> None:
        self._db.close()

    # -- records ------------------------------------------------------------------------------------
    def already_delivered(self, record: Record, status_wanted: str = DELIVERED) -> bool:
        """True when the same content (fingerprint, and kind for courses) was delivered before."""
        with self._lock:
            row = self._db.execute("SELECT status, fingerprint, kind FROM deliveries WHERE key = ?",
                                   (record.key,)).fetchone()
        return bool(row and row[0] == status_wanted and row[1] == record.fingerprint and row[2] == record.kind)

    def delivered_recency(self, record: Record) -> str | None:
        """The recency of the newest content 360Learning took for this record, if any (whatever
        happened to the record since: a newer stat parked or refused does not lower it)."""
        with self._lock:
            row = self._db.execute("SELECT recency FROM deliveries WHERE key = ?", (record.key,)).fetchone()
        return row[0] if row else None

    def status_of(self, record: Record) -> tuple[str, float] | None:
        """(status, time of the last change) of a record, or None if never seen."""
        with self._lock:
            row = self._db.execute("SELECT status, updated_at FROM deliveries WHERE key = ?", (record.key,)).fetchone()
        return (row[0], row[1]) if row else None

    def mark(self, records: Iterable[tuple[Record, str, str | None, str | None, str | None, Any]]) -> None:
        """Write (record, status, operation id, resource id, detail, item sent) for many records at once.

        A delivered or failed record goes to the journal too (a sent or parked one is only a
        step: if this instance is lost, the next owner sends it again)."""
        now = time.time()
        rows = [(r.key, r.kind, r.connection, r.course, r.learner, r.event_id, r.fingerprint, status, op,
                 resource, detail, None if item is None else json.dumps(item, separators=(",", ":")),
                 1 if status == SENT else 0, now, r.attempt, r.recency if status == DELIVERED else None, r.tenant)
                for r, status, op, resource, detail, item in records]
        with self._lock, self._db:
            self._upsert(rows)
            self._db.executemany("INSERT INTO history VALUES (?,?,?,?,?)",
                                 [(row[0], now, row[7], row[8], row[10]) for row in rows])
        for r, status, op, resource, detail, _item in records:
            if status in (DELIVERED, FAILED):
                self.journal(r.tenant, ledger_records.delivery_key(r.key), ledger_records.delivery_value(
                    connection=r.connection, tenant=r.tenant, status=status, at=now,
                    kind=r.kind, course=r.course, learner=r.learner, attempt=r.attempt, event_id=r.event_id,
                    fingerprint=r.fingerprint, recency=self.delivered_recency(r), operation_id=op,
                    resource_id=resource, detail=(detail or "")[:500] or None))

    def _upsert(self, rows: list[tuple]) -> None:
        self._db.executemany(
            """INSERT INTO deliveries (key, kind, connection, course, learner, event_id, fingerprint, status,
                 operation_id, resource_id, detail, item, sends, updated_at, attempt, recency, tenant)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(key) DO UPDATE SET kind=excluded.kind, event_id=excluded.event_id,
                 fingerprint=excluded.fingerprint, status=excluded.status,
                 operation_id=COALESCE(excluded.operation_id, operation_id),
                 resource_id=COALESCE(excluded.resource_id, resource_id), detail=excluded.detail,
                 item=COALESCE(excluded.item, item), sends=sends + excluded.sends,
                 updated_at=excluded.updated_at, attempt=excluded.attempt,
                 recency=COALESCE(excluded.recency, recency),
                 tenant=COALESCE(excluded.tenant, tenant)""", rows)

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

    def parked_by_connection(self) -> dict[str, int]:
        """Stats parked now, per connection."""
        with self._lock:
            return dict(self._db.execute("SELECT connection, COUNT(*) FROM deliveries WHERE status = ? "
                                         "GROUP BY connection", (PARKED,)).fetchall())

    # -- 360Learning ids ------------------------------------------------------------------------------
    def integration(self, connection: str, group_id: str, label: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT integration_id FROM integrations WHERE connection=? AND group_id=? "
                                   "AND label=?", (connection, group_id, label)).fetchone()
        return row[0] if row else None

    def remember_integration(self, connection: str, group_id: str, label: str, integration_id: str, *,
                             tenant: str | None = None) -> None:
        if self.integration(connection, group_id, label) == integration_id:
            return
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO integrations (connection, group_id, label, integration_id, "
                             "tenant) VALUES (?,?,?,?,?)", (connection, group_id, label, integration_id, tenant))
        self.journal(tenant, SEP.join((J_INTEGRATION, connection, group_id, label)),
                     {"integration_id": integration_id, "tenant": tenant})

    def forget_integration(self, connection: str, group_id: str, label: str, *, tenant: str | None = None) -> None:
        """The integration is gone in 360Learning (and its courses with it): forget it, and mark
        what was delivered through it as stale so that it is sent again when it comes by."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM integrations WHERE connection=? AND group_id=? AND label=?",
                             (connection, group_id, label))
            stale = [r[0] for r in self._db.execute("SELECT key FROM deliveries WHERE connection=? AND status=?",
                                                    (connection, DELIVERED))]
            self._db.execute("UPDATE deliveries SET status='stale', recency=NULL WHERE connection=? AND status=?",
                             (connection, DELIVERED))
        self.journal(tenant, SEP.join((J_INTEGRATION, connection, group_id, label)), None)
        for key in stale:
            self.journal(tenant, J_DELIVERY + SEP + key, None)

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

    def forget_user(self, base_url: str, mail: str) -> None:
        """A cached user id 360Learning no longer knows (the user was deleted, maybe re-created)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM users WHERE base_url=? AND mail=?", (base_url, mail.casefold()))

    # -- tags -----------------------------------------------------------------------------------------------
    def provider_tags(self, course_id: str) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT tag_id FROM provider_tags WHERE course_id=?", (course_id,))}

    def tags_to_merge(self, course_id: str, connection: str, names: list[str], *, tenant: str | None = None) -> None:
        """The provider's tags of a course just delivered: merged by a step of their own."""
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO tags_pending VALUES (?,?,?,?)",
                             (course_id, connection, tenant, json.dumps(names)))
        self._journal_tags(course_id, tenant)

    def pending_tags(self, connection: str) -> dict[str, list[str]]:
        with self._lock:
            return {cid: json.loads(names) for cid, names in self._db.execute(
                "SELECT course_id, names FROM tags_pending WHERE connection=? ORDER BY course_id", (connection,))}

    def tags_merged(self, course_id: str, tag_ids: Iterable[str], *, tenant: str | None = None) -> None:
        """The merge is done: remember the tags the provider owns on the course."""
        if tenant is None:
            with self._lock:
                row = self._db.execute("SELECT tenant FROM tags_pending WHERE course_id=?", (course_id,)).fetchone()
            tenant = row[0] if row else None
        with self._lock, self._db:
            self._db.execute("DELETE FROM provider_tags WHERE course_id=?", (course_id,))
            self._db.executemany("INSERT INTO provider_tags (course_id, tag_id, tenant) VALUES (?,?,?)",
                                 [(course_id, t, tenant) for t in tag_ids])
            self._db.execute("DELETE FROM tags_pending WHERE course_id=?", (course_id,))
        self._journal_tags(course_id, tenant)

    def _journal_tags(self, course_id: str, tenant: str | None) -> None:
        with self._lock:
            pending = self._db.execute("SELECT connection, names FROM tags_pending WHERE course_id=?",
                                       (course_id,)).fetchone()
        self.journal(tenant, J_TAGS + SEP + course_id, {
            "provider_tags": sorted(self.provider_tags(course_id)), "tenant": tenant,
            "pending": None if pending is None else {"connection": pending[0], "names": json.loads(pending[1])}})

    # -- rebuilding from the journal -------------------------------------------------------------------------
    def apply_journal(self, records: Iterable[tuple[str, dict[str, Any] | None]]) -> int:
        """Apply journal records (key, value or None for a deletion), in log order; returns how many."""
        n = 0
        with self._lock, self._db:
            for key, value in records:
                n += 1
                kind, _, rest = key.partition(SEP)
                if kind == J_DELIVERY:
                    if value is None:
                        self._db.execute("DELETE FROM deliveries WHERE key=?", (rest,))
                        continue
                    v = value
                    self._upsert([(rest, v["kind"], v["connection"], v["course"], v.get("learner"), v["event_id"],
                                   v.get("fingerprint"), v["status"], v.get("operation_id"), v.get("resource_id"),
                                   v.get("detail"), None, 0, float(v.get("at") or time.time()), v.get("attempt"),
                                   v.get("recency"), v.get("tenant"))])
                elif kind == J_INTEGRATION:
                    connection, group_id, label = rest.split(SEP)
                    self._db.execute("DELETE FROM integrations WHERE connection=? AND group_id=? AND label=?",
                                     (connection, group_id, label))
                    if value is not None:
                        self._db.execute("INSERT INTO integrations (connection, group_id, label, integration_id, "
                                         "tenant) VALUES (?,?,?,?,?)",
                                         (connection, group_id, label, value["integration_id"], value.get("tenant")))
                elif kind == J_TAGS:
                    self._db.execute("DELETE FROM provider_tags WHERE course_id=?", (rest,))
                    self._db.execute("DELETE FROM tags_pending WHERE course_id=?", (rest,))
                    if value is not None:
                        self._db.executemany("INSERT INTO provider_tags (course_id, tag_id, tenant) VALUES (?,?,?)",
                                             [(rest, t, value.get("tenant")) for t in value.get("provider_tags") or []])
                        if value.get("pending"):
                            p = value["pending"]
                            self._db.execute("INSERT INTO tags_pending VALUES (?,?,?,?)",
                                             (rest, p["connection"], value.get("tenant"), json.dumps(p["names"])))
        return n

    def forget_units(self, unit_of: Callable[[str | None], int], units: set[int]) -> None:
        """Drop the journaled rows of the tenants of ``units`` before rebuilding them from the
        journal: what another instance changed meanwhile, or a fact deleted since, must not survive
        in this instance's file. (Caches and history stay.)"""
        with self._lock, self._db:
            for table in ("deliveries", "integrations", "provider_tags", "tags_pending"):
                tenants = [r[0] for r in self._db.execute(f"SELECT DISTINCT tenant FROM {table}")]
                for tenant in tenants:
                    if unit_of(tenant) in units:
                        self._db.execute(f"DELETE FROM {table} WHERE tenant IS ?", (tenant,))

    def connections_with_pending_tags(self) -> list[tuple[str, str | None]]:
        """(connection, tenant) of every course whose tags still wait to be merged."""
        with self._lock:
            return [(c, t) for c, t in self._db.execute("SELECT DISTINCT connection, tenant FROM tags_pending")]

    def attempts_of_others(self, record: Record) -> set[str]:
        """The 360Learning attempts other provider attempts of this learner and course were delivered to."""
        with self._lock:
            rows = self._db.execute("SELECT resource_id FROM deliveries WHERE connection=? AND course=? AND learner=? "
                                    "AND key != ? AND resource_id IS NOT NULL",
                                    (record.connection, record.course, record.learner, record.key))
            return {r[0] for r in rows}
