"""Sync state: what was last emitted per entity (fingerprints) and where a connection stands
(checkpoints such as the progress watermark or a resumable page cursor).

One store, SQLite, answers look-ups, so state never lives in Python dicts that grow with an
organisation's size. A run works through a :class:`StateSession`: reads see the database plus the
session's own pending writes; writes wait in a buffer bounded by the engine's batch size and are
applied in one short transaction by :meth:`StateSession.commit`, after the batch's events are
durable. The Kafka worker also ships each committed buffer as records of a compacted changelog
topic, in the same transaction as the events (:meth:`StateSession.changelog`); a worker keeps one
database per request partition it owns and restores it from that partition of the changelog
(:func:`apply_changelog`), remembering how far it read (:meth:`StateDB.changelog_position`).

Keys: ``scope`` is ``tenant/connection/incarnation`` (:attr:`Connection.state_scope
<hostspec.provider.Connection.state_scope>`: a connection deleted and created again, or pointed at
another organization, has a state of its own); ``kind`` is ``course`` or ``stat``; ``entity`` is
the provider id (``course``) or ``course/learner/attempt`` (``stat``).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    scope TEXT NOT NULL, kind TEXT NOT NULL, entity TEXT NOT NULL,
    fingerprint TEXT NOT NULL, memo TEXT, seen_run TEXT,
    PRIMARY KEY (scope, kind, entity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    scope TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY, value TEXT NOT NULL
) WITHOUT ROWID;
"""
SEP = "\x1f"  # separates the parts of a changelog key


@dataclass(frozen=True)
class Entry:
    fingerprint: str
    memo: dict[str, Any] | None


class StateDB:
    """A SQLite file (or ``:memory:``) shared by the runs of one process."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()   # closing twice is harmless

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Faster writes for a restore: no fsync and a 64 MB page cache while it lasts.

        A crash meanwhile may leave the file unusable; the restore then deletes it and reads the
        partition from the start (the file only caches the changelog).
        """
        with self._lock:
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("PRAGMA cache_size=-65536")
        try:
            yield
        finally:
            with self._lock:
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA cache_size=-2000")
                self._db.execute("PRAGMA shrink_memory")

    def destroy(self) -> None:
        """Close and delete the database files (a partition given up)."""
        self.close()
        if self.path != ":memory:":
            self.remove_files(self.path)

    @staticmethod
    def remove_files(path: str | Path) -> None:
        for name in (str(path), f"{path}-wal", f"{path}-shm"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass

    # -- where the database stands in its changelog -----------------------------------------------
    def changelog_position(self) -> dict[str, Any] | None:
        """``{"topic", "partition", "offset", "at"}`` recorded by :meth:`set_changelog_position`."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name='changelog'").fetchone()
        return json.loads(row[0]) if row else None

    def set_changelog_position(self, position: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta (name, value) VALUES ('changelog', ?) "
                             "ON CONFLICT(name) DO UPDATE SET value=excluded.value", (json.dumps(position),))

    def clear(self) -> None:
        """Forget everything (a restore from the start of the changelog follows)."""
        with self._lock:
            self._db.executescript("DELETE FROM entities; DELETE FROM checkpoints; DELETE FROM meta;")

    # -- reads ---------------------------------------------------------------------------------
    def entry(self, scope: str, kind: str, entity: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT fingerprint, memo FROM entities WHERE scope=? AND kind=? AND entity=?",
                                   (scope, kind, entity)).fetchone()
        return Entry(row[0], json.loads(row[1]) if row[1] else None) if row else None

    def checkpoint(self, scope: str, name: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM checkpoints WHERE scope=? AND name=?", (scope, name)).fetchone()
        return json.loads(row[0]) if row else None

    def unseen(self, scope: str, kind: str, run_id: str, *, batch: int = 1000) -> Iterator[tuple[str, Entry]]:
        """Entities of ``kind`` not marked seen by ``run_id`` (streamed in batches)."""
        after = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT entity, fingerprint, memo FROM entities WHERE scope=? AND kind=? AND entity>? "
                    "AND (seen_run IS NULL OR seen_run != ?) ORDER BY entity LIMIT ?",
                    (scope, kind, after, run_id, batch)).fetchall()
            if not rows:
                return
            for entity, fp, memo in rows:
                yield entity, Entry(fp, json.loads(memo) if memo else None)
            after = rows[-1][0]

    def with_prefix(self, scope: str, kind: str, prefix: str) -> list[str]:
        """Entities of ``kind`` whose id starts with ``prefix`` (e.g. the stats of one course)."""
        with self._lock:
            rows = self._db.execute("SELECT entity FROM entities WHERE scope=? AND kind=? AND entity>=? AND entity<?",
                                    (scope, kind, prefix, prefix + "\U0010ffff")).fetchall()
        return [r[0] for r in rows]

    def checkpoints_with_prefix(self, scope: str, prefix: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM checkpoints WHERE scope=? AND name>=? AND name<?",
                                    (scope, prefix, prefix + "\U0010ffff")).fetchall()
        return {name: json.loads(value) for name, value in rows}

    def scopes_from(self, prefix: str) -> list[str]:
        """The scopes holding anything whose name starts with ``prefix``."""
        end = prefix + "\U0010ffff"
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT scope FROM entities WHERE scope>=? AND scope<? UNION "
                                    "SELECT DISTINCT scope FROM checkpoints WHERE scope>=? AND scope<?",
                                    (prefix, end, prefix, end)).fetchall()
        return sorted(r[0] for r in rows)

    def keys(self, scope: str, *, batch: int = 1000) -> Iterator[tuple[str, str | None]]:
        """Everything ``scope`` holds, streamed in batches: ``(kind, entity)`` of entities, then
        ``(name, None)`` of checkpoints."""
        after: tuple[str, str] = ("", "")
        while True:
            with self._lock:
                rows = self._db.execute("SELECT kind, entity FROM entities WHERE scope=? AND (kind, entity) > (?, ?) "
                                        "ORDER BY kind, entity LIMIT ?", (scope, *after, batch)).fetchall()
            if not rows:
                break
            yield from ((kind, entity) for kind, entity in rows)
            after = rows[-1]
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT name FROM checkpoints WHERE scope=?", (scope,))]
        yield from ((name, None) for name in names)

    def count_unseen(self, scope: str, kind: str, run_id: str) -> int:
        """How many entities of ``kind`` ``run_id`` did not mark seen."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM entities WHERE scope=? AND kind=? AND "
                                    "(seen_run IS NULL OR seen_run != ?)", (scope, kind, run_id)).fetchone()[0]

    def count(self, scope: str | None = None, kind: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM entities WHERE 1=1", []
        if scope is not None:
            sql, args = sql + " AND scope=?", [*args, scope]
        if kind is not None:
            sql, args = sql + " AND kind=?", [*args, kind]
        with self._lock:
            return self._db.execute(sql, args).fetchone()[0]

    # -- writes --------------------------------------------------------------------------------
    def apply(self, puts: dict[tuple[str, str, str], Entry | None], checkpoints: dict[tuple[str, str], Any],
              seen: dict[tuple[str, str, str], str]) -> None:
        """Apply one batch atomically (``None`` entry = delete, ``None`` checkpoint = delete)."""
        deletes = [key for key, entry in puts.items() if entry is None]
        upserts = [(*key, entry.fingerprint, json.dumps(entry.memo) if entry.memo else None)
                   for key, entry in puts.items() if entry is not None]
        gone = [key for key, value in checkpoints.items() if value is None]
        kept = [(*key, json.dumps(value)) for key, value in checkpoints.items() if value is not None]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("DELETE FROM entities WHERE scope=? AND kind=? AND entity=?", deletes)
                self._db.executemany(
                    "INSERT INTO entities (scope, kind, entity, fingerprint, memo) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(scope, kind, entity) DO UPDATE SET fingerprint=excluded.fingerprint, "
                    "memo=excluded.memo", upserts)
                self._db.executemany("UPDATE entities SET seen_run=? WHERE scope=? AND kind=? AND entity=?",
                                     [(run_id, *key) for key, run_id in seen.items()])
                self._db.executemany("DELETE FROM checkpoints WHERE scope=? AND name=?", gone)
                self._db.executemany("INSERT INTO checkpoints (scope, name, value) VALUES (?,?,?) "
                                     "ON CONFLICT(scope, name) DO UPDATE SET value=excluded.value", kept)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


class StateSession:
    """One run's view of the state: reads through a pending buffer, writes on :meth:`commit`."""

    def __init__(self, db: StateDB, scope: str):
        self.db, self.scope = db, scope
        self._puts: dict[tuple[str, str, str], Entry | None] = {}
        self._checkpoints: dict[tuple[str, str], Any] = {}
        self._seen: dict[tuple[str, str, str], str] = {}

    def entry(self, kind: str, entity: str) -> Entry | None:
        key = (self.scope, kind, entity)
        if key in self._puts:
            return self._puts[key]
        return self.db.entry(*key)

    def put(self, kind: str, entity: str, fingerprint: str, memo: dict[str, Any] | None = None) -> None:
        self._puts[(self.scope, kind, entity)] = Entry(fingerprint, memo)

    def delete(self, kind: str, entity: str) -> None:
        self._puts[(self.scope, kind, entity)] = None

    def forget(self, scope: str, kind_or_name: str, entity: str | None) -> None:
        """Delete one key of another scope, as :meth:`StateDB.keys` names it (the state of an
        earlier incarnation of the connection)."""
        if entity is None:
            self._checkpoints[(scope, kind_or_name)] = None
        else:
            self._puts[(scope, kind_or_name, entity)] = None

    def mark_seen(self, kind: str, entity: str, run_id: str) -> None:
        self._seen[(self.scope, kind, entity)] = run_id

    def checkpoint(self, name: str) -> Any:
        key = (self.scope, name)
        return self._checkpoints[key] if key in self._checkpoints else self.db.checkpoint(*key)

    def set_checkpoint(self, name: str, value: Any) -> None:
        self._checkpoints[(self.scope, name)] = value

    @property
    def pending(self) -> int:
        return len(self._puts) + len(self._checkpoints)

    def changelog(self) -> list[tuple[str, bytes | None]]:
        """The pending writes as compacted-topic records: (key, value or None for a tombstone)."""
        out: list[tuple[str, bytes | None]] = []
        for (scope, kind, entity), entry in self._puts.items():
            value = None if entry is None else json.dumps({"fp": entry.fingerprint, "memo": entry.memo}).encode()
            out.append((SEP.join(("e", scope, kind, entity)), value))
        for (scope, name), value in self._checkpoints.items():
            out.append((SEP.join(("c", scope, name)), None if value is None else json.dumps(value).encode()))
        return out

    def keep_only(self, prefix: str) -> None:
        """Forget the pending writes but the checkpoints named ``prefix...`` and the seen marks."""
        self._puts = {}
        self._checkpoints = {k: v for k, v in self._checkpoints.items() if k[1].startswith(prefix)}

    def commit(self) -> None:
        if self._puts or self._checkpoints or self._seen:
            self.db.apply(self._puts, self._checkpoints, self._seen)
        self.rollback()

    def rollback(self) -> None:
        self._puts, self._checkpoints, self._seen = {}, {}, {}


def apply_changelog(db: StateDB, records: list[tuple[str, bytes | None]]) -> int:
    """Apply changelog records (from the compacted topic) to a local database, in order.

    A record this version cannot read (not JSON, an unknown key shape) is skipped and counted,
    never fatal: one bad record must not stop every worker from restoring its partition.
    Returns how many records were skipped.
    """
    puts: dict[tuple[str, str, str], Entry | None] = {}
    checkpoints: dict[tuple[str, str], Any] = {}
    skipped = 0
    for key, value in records:
        parts = key.split(SEP, 3)
        try:
            if parts[0] == "e" and len(parts) == 4:
                doc = json.loads(value) if value is not None else None
                puts[(parts[1], parts[2], parts[3])] = Entry(doc["fp"], doc.get("memo")) if doc else None
            elif parts[0] == "c" and len(parts) == 3:
                checkpoints[(parts[1], parts[2])] = json.loads(value) if value is not None else None
            else:
                skipped += 1
        except (ValueError, TypeError, KeyError):
            skipped += 1
    if skipped:
        log.warning("%d unreadable state records skipped", skipped)
    db.apply(puts, checkpoints, {})
    return skipped
