"""The poll loop: the main thread reads requests, applies membership changes and advances the
worker, until it stops; then it lets running syncs finish within the grace period.

* **Bounded backlogs.** A partition with ``MAX_BACKLOG`` (500) requests read and not ended is
  paused, and read on once half of them have ended (:mod:`hostspec.runtime.admission` keeps one
  connection or tenant from filling it).
* **Handed over twice.** A request read again after a partition came back (before its task was
  restored, or twice in one assignment) is handled once: a restored task reads from the
  committed offset, whatever was read before.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from hostspec.ops import metrics
from hostspec.runtime.membership import Membership
from hostspec.runtime.resources import Resources
from hostspec.runtime.runner import Runner
from hostspec.runtime.settings import MAX_BACKLOG, WorkerSettings
from hostspec.runtime.tasks import READY, PartitionTask
from hostspec.transport.consumers import InboundMessage

log = logging.getLogger("hostspec.runtime.worker")   # the worker's lines, whichever part says them


class PollLoop:
    """The main thread's loop; ``advance`` is the worker's step after each poll."""

    def __init__(self, settings: WorkerSettings, resources: Resources, membership: Membership, runner: Runner,
                 stopping: threading.Event):
        self._settings, self._resources, self._membership, self._runner = settings, resources, membership, runner
        self._stopping = stopping
        self.last_poll = 0.0

    def run(self, advance: Callable[[], None]) -> None:
        consumer = self._resources.consumer
        assert consumer is not None
        probe = metrics.LagProbe(consumer, self._settings.group_id)
        while not self._stopping.is_set():
            messages = consumer.poll(200)
            self.last_poll = time.monotonic()
            self._membership.apply()
            self.take(messages)
            advance()
            probe()
        self.drain(advance)

    def take(self, messages: list[InboundMessage]) -> None:
        consumer = self._resources.consumer
        assert consumer is not None
        for msg in messages:
            with self._membership.lock:
                task = self._membership.tasks.get(msg.tp)
            if task is None or task.revoked.is_set() or task.phase != READY:
                continue    # given up meanwhile (its new owner reads it again), or read again once restored
            if not task.fetched(msg.offset):
                continue    # read before (handed over twice): handled once
            task.backlog.append(msg)
            if task.unfinished >= MAX_BACKLOG and not task.paused:   # read, not yet ended: bounded
                consumer.pause(msg.tp)
                task.paused = True

    def resume(self, tasks: list[PartitionTask]) -> None:
        """Read on from the partitions paused whose backlog is half gone."""
        consumer = self._resources.consumer
        assert consumer is not None
        for task in tasks:
            if task.paused and task.unfinished < MAX_BACKLOG // 2 and not task.revoked.is_set():
                if task.tp in consumer.assignment():
                    consumer.resume(task.tp)
                task.paused = False

    def drain(self, advance: Callable[[], None]) -> None:
        """Let running syncs finish within the grace period, commit them, abandon the rest."""
        consumer = self._resources.consumer
        assert consumer is not None
        deadline = time.monotonic() + self._settings.grace_s
        log.info("stopping: waiting up to %.0fs for %d running syncs", self._settings.grace_s, self._runner.running)
        while self._runner.running:
            if time.monotonic() >= deadline:
                if not self._runner.abandoning:
                    log.warning("grace period over: abandoning running syncs (their requests stay uncommitted)")
                    self._runner.abandon(self._membership.all_tasks())
                elif time.monotonic() >= deadline + 10:
                    log.warning("%d runs still blocked (in a provider call); leaving them", self._runner.running)
                    return
            if consumer.group_metadata().generation_id >= 0:
                consumer.poll(100)  # stay a group member so the commits below are accepted
            else:                   # evicted: rejoining now would only move partitions twice
                time.sleep(0.1)
            self._membership.apply()
            advance()


__all__ = ["PollLoop"]
