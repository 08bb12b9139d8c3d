"""Restoring a partition task's state when the worker is assigned its partition.

One background thread restores assigned partitions one after another, so the poll loop keeps
serving the partitions it already holds. For partition *p*:

1. wait until the group's committed offset of requests partition *p* is stable: the previous
   owner's last transaction (every transaction carries that offset) has ended;
2. open the local database of *p* (``<state_dir>/<group>.<state topic>.<p>.sqlite``). A file
   left by this worker's previous process is reused when it records a changelog position of the
   same topic and partition, not older than ``reuse_s`` and not beyond the partition's end:
   only the records written since are read again (an *incremental* restore). Anything else is
   cleared and read from the start;
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
import threading
import time
from pathlib import Path
from typing import Callable

from . import metrics
from .errors import HostError
from .state import StateDB, apply_changelog
from .tasks import PartitionTask
from .topics import Topics
from .transport.changelog import ChangelogReader
from .transport.config import KafkaConfig

log = logging.getLogger(__name__)
REUSE_S = 12 * 3600     # a local file this old is not trusted: compaction may have removed tombstones since
RETRY_S = 3.0


def store_path(folder: Path, group_id: str, state_topic: str, partition: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{group_id}.{state_topic}.{partition}")
    return folder / f"{safe}.sqlite"


class Restorer:
    def __init__(self, kafka: KafkaConfig, topics: Topics, group_id: str, folder: Path,
                 on_done: Callable[[PartitionTask], None], *, reuse_s: float = REUSE_S):
        self.kafka, self.topics, self.group_id, self.folder = kafka, topics, group_id, folder
        self.on_done, self.reuse_s = on_done, reuse_s
        self._jobs: queue.Queue[PartitionTask | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="restore", daemon=True)
        self._thread.start()

    def submit(self, task: PartitionTask) -> None:
        self._jobs.put(task)

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        reader: ChangelogReader | None = None
        try:
            while not self._stop.is_set():
                task = self._jobs.get()
                if task is None:
                    break
                while not (task.revoked.is_set() or self._stop.is_set()):
                    try:
                        if reader is None:
                            reader = ChangelogReader(self.kafka, self.topics.state, group_id=self.group_id)
                        if self._restore(reader, task):
                            self.on_done(task)
                        break
                    except HostError as exc:
                        log.warning("state of partition %d not restored (%s); trying again in %.0fs",
                                    task.partition, exc, RETRY_S)
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
        assert task.state_partition == p
        if reader.stable_offset((self.topics.requests, p), should_stop=self._stopped(task)) is None \
                and self._stopped(task)():
            return False
        store = StateDB(store_path(self.folder, self.group_id, self.topics.state, p))
        try:
            start = self._reusable(store, reader, p)
            applied = 0

            def apply(records: list[tuple[str, bytes | None]]) -> None:
                nonlocal applied
                apply_changelog(store, records)
                applied += len(records)

            reached = reader.read({p: start}, apply, should_stop=self._stopped(task))
        except BaseException:
            store.close()
            raise
        if reached is None:
            store.destroy() if task.revoked.is_set() else store.close()
            return False
        store.set_changelog_position({"topic": self.topics.state, "partition": p, "offset": reached[p],
                                      "at": time.time()})
        task.store = store
        took = time.monotonic() - started
        metrics.RESTORE_SECONDS.observe(took)
        metrics.RESTORED_RECORDS.inc(applied)
        log.info("state of partition %d restored: %d records read (%s), %d entities, in %.1fs", p, applied,
                 "from the start" if start is None else f"from offset {start}", store.count(), took)
        return True

    def _reusable(self, store: StateDB, reader: ChangelogReader, p: int) -> int | None:
        """Where to start reading: the position recorded in a trustworthy local file, else None."""
        position = store.changelog_position()
        if position is None:
            store.clear()
            return None
        end = reader.high_water([p])[p]
        fresh = time.time() - float(position.get("at", 0)) <= self.reuse_s
        same = position.get("topic") == self.topics.state and position.get("partition") == p
        offset = position.get("offset")
        if fresh and same and isinstance(offset, int) and 0 <= offset <= end:
            return offset
        log.info("local state of partition %d not reused (%s); reading it from the start", p,
                 "too old" if not fresh else "another topic or partition" if not same else "beyond the topic's end")
        store.clear()
        return None


__all__ = ["Restorer", "store_path"]
