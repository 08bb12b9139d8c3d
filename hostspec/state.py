"""Sync state: what was last emitted per entity (fingerprints) and where a connection stands
(checkpoints such as the progress watermark or a resumable page cursor).

One store, SQLite, answers look-ups, so state never lives in Python dicts that grow with an
organisation's size. A run works through a :class:`StateSession`: reads see the database plus the
session's own pending writes; writes wait in a buffer bounded by the engine's batch size and are
applied in one short transaction by :meth:`StateSession.commit`, after the batch's events are
durable. The Kafka worker also ships each committed buffer as records of a compacted changelog
topic, in the same transaction as the events (:meth:`StateSession.changelog`); a worker rebuilds
its local database from that topic (:func:`apply_changelog`).

Keys: ``scope`` is ``tenant/connection``; ``kind`` is ``course`` or ``stat``; ``entity`` is the
provider id (``course``) or ``course/learner/attempt`` (``stat``).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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
            self._db.close()

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
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for (scope, kind, entity), entry in puts.items():
                    if entry is None:
                        self._db.execute("DELETE FROM entities WHERE scope=? AND kind=? AND entity=?",
                                         (scope, kind, entity))
                    else:
                        self._db.execute(
                            "INSERT INTO entities (scope, kind, entity, fingerprint, memo) VALUES (?,?,?,?,?) "
                            "ON CONFLICT(scope, kind, entity) DO UPDATE SET fingerprint=excluded.fingerprint, "
                            "memo=excluded.memo",
                            (scope, kind, entity, entry.fingerprint, json.dumps(entry.memo) if entry.memo else None))
                for (scope, kind, entity), run_id in seen.items():
                    self._db.execute("UPDATE entities SET seen_run=? WHERE scope=? AND kind=? AND entity=?",
                                     (run_id, scope, kind, entity))
                for (scope, name), value in checkpoints.items():
                    if value is None:
                        self._db.execute("DELETE FROM checkpoints WHERE scope=? AND name=?", (scope, name))
                    else:
                        self._db.execute("INSERT INTO checkpoints (scope, name, value) VALUES (?,?,?) "
                                         "ON CONFLICT(scope, name) DO UPDATE SET value=excluded.value",
                                         (scope, name, json.dumps(value)))
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

    def commit(self) -> None:
        if self._puts or self._checkpoints or self._seen:
            self.db.apply(self._puts, self._checkpoints, self._seen)
        self.rollback()

    def rollback(self) -> None:
        self._puts, self._checkpoints, self._seen = {}, {}, {}


def apply_changelog(db: StateDB, records: list[tuple[str, bytes | None]]) -> None:
    """Apply changelog records (from the compacted topic) to a local database."""
    puts: dict[tuple[str, str, str], Entry | None] = {}
    checkpoints: dict[tuple[str, str], Any] = {}
    for key, value in records:
        parts = key.split(SEP)
        if parts[0] == "e" and len(parts) == 4:
            doc = json.loads(value) if value is not None else None
            puts[(parts[1], parts[2], parts[3])] = Entry(doc["fp"], doc.get("memo")) if doc else None
        elif parts[0] == "c" and len(parts) == 3:
            checkpoints[(parts[1], parts[2])] = json.loads(value) if value is not None else None
    db.apply(puts, checkpoints, {})
