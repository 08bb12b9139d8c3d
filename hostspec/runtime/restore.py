"""Restoring a partition task's state when the worker is assigned its partition.

A few background threads restore assigned partitions, so the poll loop keeps serving the
partitions it already holds, and a partition that waits for a dead worker's transaction delays
no other. For partition *p*:

1. wait until the group's committed offset of requests partition *p* is stable: the previous
   owner's last transaction (every transaction carries that offset) has ended. The worker reads
   the partition's requests from that offset once the restore is done;
2. open the local database of *p* (``<state_dir>/<group>.<worker>.<state topic>.<p>.sqlite``). A file
   left by this worker's previous process is reused when it records a changelog position of the
   same topic (its name *and* its topic id: a topic deleted and created again under the same
   name is another topic, and its offsets say nothing of the file's records) and partition, not
   older than ``reuse_s`` and not beyond the partition's end: only the records written since are
   read again (an *incremental* restore). Anything else is cleared and read from the start, also
   when the topic id cannot be known (kafka-python before 3, brokers before 2.8);
3. apply partition *p* of the state topic to its high-water mark, waiting for transactions left
   open by a dead worker to end (:class:`hostspec.transport.changelog.ChangelogReader`);
4. record the position reached and hand the database to the task.

A revoked partition stops its restore at the next batch. A failed restore (the broker away) is
tried again every few seconds for as long as the partition is ours: a request waits, it is never
refused for it.
"""
from __future__ import annotations

import logging
import queue
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from hostspec.ops import metrics
from hostspec.errors import HostError
from hostspec.engine.state import SEP, StateDB, apply_changelog
from hostspec.runtime.tasks import PartitionTask
from hostspec.topics import Topics
from hostspec.transport.changelog import ChangelogReader
from hostspec.transport.config import KafkaConfig

log = logging.getLogger(__name__)
REUSE_S = 12 * 3600     # a local file this old is not trusted: compaction may have removed tombstones since
RETRY_S = 3.0
THREADS = 3             # partitions restored at once: one waiting for a dead worker's transaction delays no other


def store_path(folder: Path, group_id: str, worker_id: str, state_topic: str, partition: int) -> Path:
    """One file per group, worker, topic and partition: two workers sharing a folder never meet."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{group_id}.{worker_id}.{state_topic}.{partition}")
    return folder / f"{safe}.sqlite"


class Restorer:
    def __init__(self, kafka: KafkaConfig, topics: Topics, group_id: str, folder: Path,
                 on_done: Callable[[PartitionTask], None], *, worker_id: str = "worker", reuse_s: float = REUSE_S,
                 threads: int = THREADS):
        self.kafka, self.topics, self.group_id, self.folder = kafka, topics, group_id, folder
        self.on_done, self.reuse_s, self.worker_id = on_done, reuse_s, worker_id
        self._jobs: queue.Queue[tuple[PartitionTask, tuple[str, Callable[[], None]] | None] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"restore-{n}", daemon=True) for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, task: PartitionTask) -> None:
        self._jobs.put((task, None))

    def read_back(self, task: PartitionTask, scope: str, on_done: Callable[[], None]) -> None:
        """Re-read one connection's state records from the changelog into the task's database.

        Used before a request runs again after a commit whose outcome is not known: the local
        database then holds exactly what the changelog holds for that connection.
        """
        self._jobs.put((task, (scope, on_done)))

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self) -> None:
        reader: ChangelogReader | None = None
        try:
            while not self._stop.is_set():
                job = self._jobs.get()
                if job is None:
                    break
                task, read_back = job
                while not (task.revoked.is_set() or self._stop.is_set()):
                    try:
                        if reader is None:
                            reader = ChangelogReader(self.kafka, self.topics.state, group_id=self.group_id)
                        if read_back is not None:
                            self._read_back(reader, task, *read_back)
                        elif self._restore(reader, task):
                            self.on_done(task)
                        break
                    except Exception as exc:   # the broker away, a disk error: never let this thread die
                        log.warning("state of partition %d not restored (%s: %s); trying again in %.0fs",
                                    task.partition, type(exc).__name__, exc, RETRY_S,
                                    exc_info=not isinstance(exc, HostError))
                        if reader is not None:
                            reader.close()
                            reader = None
                        self._stop.wait(RETRY_S)
        finally:
            if reader is not None:
                reader.close()

    def _stopped(self, task: PartitionTask) -> Callable[[], bool]:
        return lambda: task.revoked.is_set() or self._stop.is_set()

    def _restore(self, reader: ChangelogReader, task: PartitionTask) -> bool:
        started = time.monotonic()
        p = task.partition
        task.start_offset = reader.stable_offset((self.topics.requests, p), should_stop=self._stopped(task))
        if self._stopped(task)():
            return False
        if not task.serves_runs:     # a forwarding partition: no state, only where to start reading
            return True
        assert task.state_partition == p
        path = store_path(self.folder, self.group_id, self.worker_id, self.topics.state, p)
        try:
            store = StateDB(path)
        except sqlite3.DatabaseError:
            StateDB.remove_files(path)      # unreadable (a crash during an earlier restore): start afresh
            raise
        try:
            topic_id = reader.topic_id()
            start = self._reusable(store, reader, p, topic_id)
            applied = 0

            def apply(records: list[tuple[str, bytes | None]]) -> None:
                nonlocal applied
                apply_changelog(store, records)
                applied += len(records)

            with store.bulk():
                reached = reader.read({p: start}, apply, should_stop=self._stopped(task))
        except sqlite3.DatabaseError:
            store.destroy()
            raise
        except BaseException:
            store.close()
            raise
        if reached is None:
            store.destroy() if task.revoked.is_set() else store.close()
            return False
        store.set_changelog_position({"topic": self.topics.state, "topic_id": topic_id, "partition": p,
                                      "offset": reached[p], "at": time.time()})
        task.restored_to = reached[p]
        task.store = store
        took = time.monotonic() - started
        metrics.RESTORE_SECONDS.observe(took)
        metrics.RESTORED_RECORDS.inc(applied)
        log.info("state of partition %d restored: %d records read (%s), %d entities, in %.1fs", p, applied,
                 "from the start" if start is None else f"from offset {start}", store.count(), took)
        return True

    def _read_back(self, reader: ChangelogReader, task: PartitionTask, scope: str, on_done: Callable[[], None]) -> None:
        started = time.monotonic()
        p = task.partition
        start = task.read_back_from(scope)
        store = task.store
        assert store is not None
        applied = 0

        def apply(records: list[tuple[str, bytes | None]]) -> None:
            nonlocal applied
            mine = [(k, v) for k, v in records if k.split(SEP, 2)[1:2] == [scope]]
            apply_changelog(store, mine)
            applied += len(mine)

        if reader.read({p: start}, apply, should_stop=self._stopped(task)) is not None:
            log.info("state of %s read back from partition %d (from %s): %d records in %.1fs", scope, p,
                     "the start" if start is None else f"offset {start}", applied, time.monotonic() - started)
            on_done()

    def _reusable(self, store: StateDB, reader: ChangelogReader, p: int, topic_id: str | None) -> int | None:
        """Where to start reading: the position recorded in a trustworthy local file, else None."""
        position = store.changelog_position()
        if position is None:
            store.clear()
            return None
        end = reader.high_water([p])[p]
        fresh = time.time() - float(position.get("at", 0)) <= self.reuse_s
        same = position.get("topic") == self.topics.state and position.get("partition") == p
        same_topic = topic_id is not None and position.get("topic_id") == topic_id
        offset = position.get("offset")
        if fresh and same and same_topic and isinstance(offset, int) and 0 <= offset <= end:
            return offset
        log.info("local state of partition %d not reused (%s); reading it from the start", p,
                 "too old" if not fresh else "another topic or partition" if not same else
                 "the topic's id is not known" if topic_id is None else
                 "the topic was created again since" if not same_topic else "beyond the topic's end")
        store.clear()
        return None


__all__ = ["Restorer", "store_path"]
