"""Adversarial review of issue 26: a multi-partition fake Kafka (courses, stats and parked topics
of several units) driving the real PublisherService code paths (the reader's take, read,
keep_within_budget, reread and start_round; the committer's commit; the membership's forget,
restore, restored and revoked) with a scripted deliverer.

Ground truth: every (topic, partition, offset) a successful delivery handed to 360Learning. Every
commit is checked against it: no committed offset may pass an offset never delivered."""
from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from hostspec import events as ev
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.routing import Router
from publisher_360learning.delivery import Deliverer, Outcome
from publisher_360learning.errors import TransientError
from publisher_360learning.journal import LedgerJournal
from publisher_360learning.ledger import Ledger
from publisher_360learning.service import PublisherService, ServiceSettings
from tests.hostspec.test_events import stat_data

T = Topics()
UNITS = 2
BASE = datetime(2030, 1, 1, tzinfo=timezone.utc)      # parked_at clock: round r starts at BASE + 100 r s


def stat(topic: str, partition: int, offset: int, connection: str, tenant: str, *, parked_at: float | None = None,
         key: str | None = None) -> InboundMessage:
    key = key or ev.partition_key(tenant, connection, "coursera", f"stat/c{topic[-3:]}{partition}-{offset}/ada")
    data = stat_data(connection=connection, tenant=tenant, course_external_id=f"{topic}:{partition}:{offset}")
    event = ev.make_event(ev.LEARNER_STAT_UPSERTED, data, key=key, source="t", subject=None,
                          time=datetime.now(timezone.utc))
    if parked_at is not None:
        at = BASE + timedelta(seconds=parked_at)
        pdata = {"reason": "learner_unknown", "detail": "x", "attempts": 1, "first_parked_at": ev.isoformat(at),
                 "parked_at": ev.isoformat(at), "tenant": tenant, "connection": connection, "provider": "coursera",
                 "event": event.body}
        event = ev.make_event(ev.STAT_PARKED, pdata, key=key, source="t", subject="s", time=at)
    return InboundMessage(topic, partition, offset, key.encode(), event.to_json().encode())


class Kafka:
    """The logs and the group's committed offsets; every commit is checked against the truth."""

    def __init__(self, logs: dict, truth: "Truth"):
        self.logs, self.truth = logs, truth
        self.committed: dict = {}
        self.violations: list[str] = []

    def commit(self, offsets: dict) -> None:
        for tp, n in offsets.items():
            missing = [o for o in range(n) if o not in self.truth.done.get(tp, set())]
            if missing:
                self.violations.append(f"commit {tp}={n} passes offsets never delivered {missing[:10]}")
            self.committed[tp] = n


class Truth:
    def __init__(self):
        self.done: dict = {}
        self.sequence: list = []          # (connection, tp, offset) in the order delivered

    def delivered(self, connection, items):
        for i in items:
            tp = (i.origin[0], i.origin[1])
            self.done.setdefault(tp, set()).add(i.origin[2])
            self.sequence.append((connection, tp, i.origin[2]))


class Consumer:
    """Like kafka-python for what the service uses: per-partition positions moved by seeks, paused
    partitions, and KeyError/AssertionError for partitions not assigned."""

    def __init__(self, kafka: Kafka, assigned: set, rng: random.Random):
        self.kafka, self.assigned, self.rng = kafka, set(assigned), rng
        self.pos = {tp: kafka.committed.get(tp, 0) for tp in assigned}
        self.paused: set = set()
        self.seeks: list = []

    def assignment(self):
        return set(self.assigned)

    def _check(self, tp):
        if tp not in self.assigned:
            raise AssertionError(f"{tp} not assigned")

    def seek(self, tp, offset):
        self._check(tp)
        self.seeks.append((tp, offset))
        self.pos[tp] = offset or 0

    def pause(self, tp):
        self._check(tp)
        self.paused.add(tp)

    def resume(self, tp):
        self._check(tp)
        self.paused.discard(tp)

    def committed(self, tp):
        return self.kafka.committed.get(tp)

    def commit_many(self, offsets):
        self.kafka.commit(offsets)
        return True

    def group_metadata(self):
        return SimpleNamespace(generation_id=1, member_id="m1", state="stable")

    def heartbeat_silence(self):
        return 0.0

    def poll(self, n: int = 6):
        out = []
        tps = sorted(self.assigned - self.paused)
        self.rng.shuffle(tps)
        for tp in tps:
            log = self.kafka.logs[tp]
            k = self.rng.randint(0, 3)
            batch = log[self.pos[tp]:self.pos[tp] + k]
            self.pos[tp] += len(batch)
            out.extend(batch)
            if len(out) >= n:
                break
        return out

    def give(self, tps):
        self.assigned |= set(tps)
        for tp in tps:
            self.pos[tp] = self.kafka.committed.get(tp, 0)
            self.paused.discard(tp)

    def take_away(self, tps):
        self.assigned -= set(tps)
        self.paused -= set(tps)


class Deliver(Deliverer):
    def __init__(self, truth: Truth, failing: set, slow: float = 0.0):
        super().__init__({}, Ledger())
        self.truth, self.failing, self.slow = truth, failing, slow

    def deliver_connection(self, connection, items, settle=False, fence=None):
        if self.slow:
            time.sleep(random.random() * self.slow)
        if connection in self.failing:
            raise TransientError("503")
        if items and fence is not None:
            with fence.writing("POST bulk"):
                self.truth.delivered(connection, items)
        else:
            self.truth.delivered(connection, items)
        out = Outcome()
        out.counts["stat_delivered"] = len(items)
        return out


def make_service(kafka: Kafka, truth: Truth, failing: set, assigned: set, rng: random.Random, slow: float = 0.0,
                 **settings):
    svc = PublisherService(Deliver(truth, failing, slow), KafkaConfig(), T,
                           ServiceSettings(**{"batch_seconds": 0, "commit_interval_s": 0, "concurrency": 2,
                                              **settings}))
    svc.shared.consumer = Consumer(kafka, set(), rng)
    svc.shared.sink = SimpleNamespace(send_raw=lambda *a, **k: None, flush=lambda timeout_s=None: None)
    svc.shared.pool = ThreadPoolExecutor(2)
    svc.shared.restorer = ThreadPoolExecutor(1)
    svc.shared.units = UNITS
    svc.shared.journal = LedgerJournal("ledger", UNITS)
    svc.shared.journal.restore = lambda kafka_, ledger, units: 0
    svc.deliverer.ledger.journal = svc.shared.journal
    svc.shared.route = Router(lambda topic: range(UNITS))
    svc.reader.start_round()
    svc.reader.round_start = BASE.timestamp()
    assign(svc, assigned)
    return svc


def assign(svc, tps):
    svc.shared.consumer.give(tps)
    svc.membership.assigned(set(tps))
    svc.membership.catch_up()


def revoke(svc, tps, wait=True):
    barrier = svc.membership.revoked(set(tps))
    deadline = time.monotonic() + (5 if wait else 0)
    while barrier is not None and not barrier() and time.monotonic() < deadline:
        time.sleep(0.002)
    svc.shared.consumer.take_away(tps)
    svc.membership.catch_up()


def tick(svc):
    svc.reader.take(svc.shared.consumer.poll())
    svc.dispatcher.finish_done()
    svc.dispatcher.dispatch()
    time.sleep(0.001)
    svc.dispatcher.finish_done()
    svc.committer.commit()


def stop(svc):
    deadline = time.monotonic() + 5
    while svc.dispatcher.running and time.monotonic() < deadline:
        time.sleep(0.002)
        svc.dispatcher.finish_done()
    svc.committer.commit(force=True)
    svc.shared.pool.shutdown(wait=True)
    svc.shared.restorer.shutdown(wait=True)


def unit_tps(u):
    return {(t, p) for t in (T.courses, T.learner_stats, T.parked) for p in range(u, 2 * UNITS, UNITS)}


def build_logs(rng, n_per_tp=12, connections_per_unit=3, parked=True):
    logs = {}
    for t in (T.courses, T.learner_stats, T.parked):
        for p in range(2 * UNITS):
            u = p % UNITS
            log = []
            for o in range(n_per_tp):
                c = rng.randrange(connections_per_unit)
                kw = {"parked_at": rng.uniform(-50, 350)} if (t == T.parked and parked) else {}
                log.append(stat(t, p, o, f"t{u}-c{c}", f"t{u}", **kw))
            logs[(t, p)] = log
    return logs
