"""The publisher's loop with a fake consumer and sink: one connection's failure waits in its own
lane while the others are delivered and committed; nothing is committed past an event not
finished; unexpected errors are retried then dead-lettered; a per-company publisher skips the
others' events."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from types import SimpleNamespace

from hostspec import events as ev
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import InboundMessage
from publisher_360learning.delivery import Deliverer, Outcome
from publisher_360learning.errors import TransientError
from publisher_360learning.ledger import Ledger
from publisher_360learning.service import PublisherService, ServiceSettings
from tests.hostspec.test_events import stat_data

TOPIC = "learning.learner-stats"


class FakeConsumer:
    def __init__(self):
        self.seeks, self.commits, self.paused = [], [], set()
        self.committed_offsets = {}

    def committed(self, tp):
        return self.committed_offsets.get(tp)

    def assignment(self):
        return {(TOPIC, 3), (TOPIC, 9)}

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def pause(self, tp):
        self.paused.add(tp)

    def resume(self, tp):
        self.paused.discard(tp)

    def commit_many(self, offsets):
        self.commits.append(dict(offsets))
        return True

    def group_metadata(self):
        return SimpleNamespace(generation_id=1, member_id="m1")

    def heartbeat_silence(self):
        return 0.0


class FakeSink:
    """Keeps what was sent; ``fail_flushes`` flushes fail first (and what they held is lost)."""

    def __init__(self):
        self.records, self.acked, self.fail_flushes = [], [], 0

    def send_raw(self, topic, key, value, partition=None, headers=None):
        self.records.append((topic, key, value))
        self.headers = getattr(self, "headers", []) + [(topic, headers)]

    def flush(self, timeout_s=None):
        from hostspec.errors import DeliveryError
        if self.fail_flushes:
            self.fail_flushes -= 1
            self.records = []
            raise DeliveryError("broker away")
        self.acked.extend(self.records)
        self.records = []

    @property
    def events(self):
        return [ev.parse_event(v) for t, _k, v in self.acked if t != "ledger" and v]

    def journal(self):
        return [(k, v) for t, k, v in self.acked if t == "ledger"]


class Scripted(Deliverer):
    """Delivers every connection, except those in ``failing`` (an exception to raise)."""

    def __init__(self, failing=None):
        super().__init__({}, Ledger())
        self.failing, self.delivered = dict(failing or {}), []

    def deliver_connection(self, connection, items, settle=False, fence=None):
        if connection in self.failing:
            raise self.failing[connection]
        self.delivered.extend((connection, i.data["course_external_id"]) for i in items)
        out = Outcome()
        out.counts["stat_delivered"] = len(items)
        return out


def service(deliverer, **settings) -> PublisherService:
    from hostspec.transport.routing import Router
    from publisher_360learning.journal import LedgerJournal

    svc = PublisherService(deliverer, KafkaConfig(), Topics(),
                           ServiceSettings(**{"batch_seconds": 0, "commit_interval_s": 0, "max_batch_failures": 3,
                                              **settings}))
    svc.shared.consumer, svc.shared.sink = FakeConsumer(), FakeSink()
    svc.shared.pool = ThreadPoolExecutor(4)
    svc.shared.units = 6
    svc.shared.journal = LedgerJournal("ledger", 6)
    deliverer.ledger.journal = svc.shared.journal
    svc.shared.route = Router(lambda topic: range(6))
    svc.shared.ready = {(TOPIC, 3), (TOPIC, 9)}
    svc.shared.ownership.assigned(svc.shared.ready)
    svc.shared.ownership.grant({tp: svc.shared.ownership.assignment(tp) for tp in svc.shared.ready})
    return svc


def message(offset: int, connection: str, partition: int = 3, tenant: str = "acme", *,
            key: str | None = None) -> InboundMessage:
    """A stat event keyed as the worker keys it (``key="k"``: a key that names no connection)."""
    key = key or ev.partition_key(tenant, connection, "coursera", f"stat/c{offset}/ada@acme.test")
    event = ev.make_event(ev.LEARNER_STAT_UPSERTED,
                          stat_data(connection=connection, course_external_id=f"c{offset}", tenant=tenant),
                          key=key, source="t", subject=None, time=datetime.now(timezone.utc))
    return InboundMessage(TOPIC, partition, offset, key.encode(), event.to_json().encode())


def cycle(svc, messages=(), rounds=20):
    svc.reader.take(list(messages))
    for _ in range(rounds):
        svc.dispatcher.dispatch()
        time.sleep(0.01)
        svc.dispatcher.finish_done()
        svc.committer.commit()
        if not svc.dispatcher.running:
            break


def test_a_failing_connection_waits_in_its_lane_and_holds_only_the_commit_behind_it():
    down = Scripted({"globex": TransientError("503 from globex's 360Learning")})
    svc = service(down)
    cycle(svc, [message(0, "acme"), message(1, "globex"), message(2, "acme"), message(3, "initech")])
    assert sorted(down.delivered) == [("acme", "c0"), ("acme", "c2"), ("initech", "c3")]
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 1}          # not past globex's event at offset 1
    lane = svc.shared.lanes["globex"]
    assert lane.state == "retrying" and len(lane.queue) == 1 and lane.not_before > time.monotonic()
    # globex recovers: its event is delivered after its wait, and the commit moves on
    del down.failing["globex"]
    lane.not_before = 0
    cycle(svc)
    assert ("globex", "c1") in down.delivered and svc.shared.consumer.commits[-1] == {(TOPIC, 3): 4}


def test_a_disabled_bulk_api_is_a_configuration_wait_of_that_company():
    svc = service(Scripted({"globex": TransientError("bulk off", status=503, code="bulkAPIDisabled")}))
    cycle(svc, [message(0, "globex"), message(1, "acme")])
    assert svc.shared.lanes["globex"].state == "config" and svc.shared.lanes["globex"].not_before - time.monotonic() > 30
    assert svc.shared.lanes["acme"].state == "ok"


def test_unexpected_errors_are_retried_then_dead_lettered_and_committed():
    svc = service(Scripted({"acme": ZeroDivisionError("bug")}))
    cycle(svc, [message(0, "acme")])
    for _ in range(2):
        svc.shared.lanes["acme"].not_before = 0
        cycle(svc)
    dead = [e for e in svc.shared.sink.events if e.type == ev.RECORD_REJECTED]
    assert len(dead) == 1 and dead[0].data["reason"] == "publisher_error"
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 1}


def test_a_per_company_publisher_skips_other_connections_without_dead_letters():
    deliverer = Scripted()
    svc = service(deliverer, connections=frozenset({"acme"}))
    cycle(svc, [message(0, "acme"), message(1, "globex")])
    assert deliverer.delivered == [("acme", "c0")] and not svc.shared.sink.events
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 2} and svc.totals["skipped_other_publisher"] == 1


def test_a_malformed_event_is_dead_lettered_and_does_not_hold_the_partition():
    deliverer = Scripted()
    svc = service(deliverer)
    cycle(svc, [InboundMessage(TOPIC, 3, 0, b"k", b"{not json"), message(1, "acme")])
    assert [e.data["reason"] for e in svc.shared.sink.events] == ["malformed_event"]
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 2}


def test_revocation_waits_for_the_lane_delivering_those_partitions():
    import threading

    release = threading.Event()

    class Slow(Scripted):
        def deliver_connection(self, connection, items, settle=False, fence=None):
            release.wait(5)
            return super().deliver_connection(connection, items, settle)

    svc = service(Slow())
    svc.reader.take([message(0, "acme")])
    svc.dispatcher.dispatch()
    barrier = svc.membership.revoked({(TOPIC, 3)})
    assert barrier() is False              # the delivery of partition 3 is still running
    release.set()
    deadline = time.monotonic() + 5
    while not barrier() and time.monotonic() < deadline:
        time.sleep(0.01)                   # the poll loop is blocked in the rebalance: no help from it
    assert barrier()


# -- found by the adversarial review (each failed before its fix) ---------------------------------------
class Marking(Scripted):
    """Records each delivered item in the ledger (which journals it), like the real deliverer."""

    def deliver_connection(self, connection, items, settle=False, fence=None):
        from publisher_360learning.ledger import DELIVERED
        out = super().deliver_connection(connection, items, settle)
        self.ledger.mark([(i.record(), DELIVERED, "op", "att", None, None) for i in items])
        return out


def test_journal_records_of_a_delivery_are_sent_again_after_a_failed_flush():
    svc = service(Marking())
    svc.shared.sink.fail_flushes = 1
    cycle(svc, [message(0, "acme")])
    assert not svc.shared.consumer.commits                      # nothing committed while the broker refused
    cycle(svc)
    assert [k.split("\x1f")[0] for k, _v in svc.shared.sink.journal()] == ["d"]
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 1}


def test_records_of_a_partition_being_restored_are_never_taken():
    """The poll that completes a rebalance returns records at once: they must wait for the restore
    and be read again from the committed offset."""
    from concurrent.futures import ThreadPoolExecutor as Pool

    svc = service(Scripted())
    svc.shared.restorer = Pool(1)
    svc.shared.journal.restore = lambda kafka, ledger, units: 0
    svc.shared.consumer.committed_offsets[(TOPIC, 3)] = 4
    svc.membership.revoked({(TOPIC, 3)})
    svc.membership.assigned({(TOPIC, 3)})
    svc.membership.catch_up()
    svc.membership.restores[0][0].result(5)      # the restore ends between the poll and the take (a loaded CI machine)
    svc.reader.take([message(4, "acme"), message(5, "acme")])
    assert not svc.shared.lanes.get("acme") or not svc.shared.lanes["acme"].queue
    deadline = time.monotonic() + 5
    while (TOPIC, 3) not in svc.shared.ready and time.monotonic() < deadline:
        svc.reader.take([])
        time.sleep(0.01)
    assert ((TOPIC, 3), 4) in svc.shared.consumer.seeks and (TOPIC, 3) not in svc.shared.consumer.paused


def test_an_older_restore_does_not_serve_a_partition_a_newer_one_still_restores():
    import threading
    from concurrent.futures import ThreadPoolExecutor as Pool

    svc = service(Scripted())
    svc.shared.restorer = Pool(2)
    gates = [threading.Event(), threading.Event()]
    calls = []

    def restore(kafka, ledger, units):
        gate = gates[len(calls)]
        calls.append(units)
        gate.wait(5)
        return 0

    svc.shared.journal.restore = restore
    svc.shared.ready.clear()
    svc.membership.restore({(TOPIC, 3)})
    svc.membership.forget({(TOPIC, 3)})
    svc.membership.restore({(TOPIC, 3)})
    gates[0].set()
    time.sleep(0.1)
    svc.membership.restored()
    assert (TOPIC, 3) not in svc.shared.ready                    # the second restore has not ended
    gates[1].set()
    time.sleep(0.1)
    svc.membership.restored()
    assert (TOPIC, 3) in svc.shared.ready


def test_a_failed_batch_of_a_partition_given_up_meanwhile_is_not_kept():
    import threading

    release = threading.Event()

    class FailsLate(Scripted):
        def deliver_connection(self, connection, items, settle=False, fence=None):
            release.wait(5)
            raise TransientError("503")

    svc = service(FailsLate())
    svc.reader.take([message(0, "acme"), message(1, "acme")])
    svc.dispatcher.dispatch()
    svc.membership.forget({(TOPIC, 3)})
    release.set()
    deadline = time.monotonic() + 5
    while svc.dispatcher.running and time.monotonic() < deadline:
        svc.dispatcher.finish_done()
        time.sleep(0.01)
    assert not svc.shared.lanes["acme"].queue                   # the next owner delivers them, not us


def test_transient_failures_do_not_count_towards_dead_lettering_a_batch():
    failing = Scripted({"acme": TransientError("503")})
    svc = service(failing, max_batch_failures=2)
    cycle(svc, [message(0, "acme")])
    for _ in range(3):
        svc.shared.lanes["acme"].not_before = 0
        cycle(svc)
    failing.failing["acme"] = ZeroDivisionError("bug")
    svc.shared.lanes["acme"].not_before = 0
    cycle(svc)
    assert not svc.shared.sink.events                            # one bug after three outages: retried, not dead


def test_a_company_waits_as_one_when_one_of_its_connections_fails():
    from publisher_360learning.settings import target_from_settings
    settings = {"base_url": "http://lms.test", "client_id": "c1", "client_secret": "s", "author_id": "a" * 24}
    deliverer = Scripted({"acme-coursera": TransientError("503")})
    deliverer.targets = {name: target_from_settings(name, settings) for name in ("acme-coursera", "acme-linkedin")}
    svc = service(deliverer)
    cycle(svc, [message(0, "acme-coursera")])
    svc.reader.take([message(1, "acme-linkedin")])
    svc.dispatcher.dispatch()
    assert not svc.dispatcher.running and svc.shared.lanes["acme-linkedin"].queue   # waits with its company


def test_the_shared_group_skips_the_tenants_that_have_their_own_publisher():
    deliverer = Scripted()
    svc = service(deliverer, except_tenants=frozenset({"acme"}))
    cycle(svc, [message(0, "acme-coursera"), message(1, "globex-coursera", tenant="globex")])
    assert deliverer.delivered == [("globex-coursera", "c1")] and svc.totals["skipped_other_publisher"] == 1
    assert not svc.shared.sink.events and svc.shared.consumer.commits[-1] == {(TOPIC, 3): 2}


def test_a_small_lane_cap_still_reads_its_records_again():
    deliverer = Scripted()
    svc = service(deliverer, lane_cap=1)
    svc.settings = ServiceSettings(batch_seconds=10, commit_interval_s=0, lane_cap=1)
    svc.reader.take([message(0, "acme"), message(1, "acme"), message(2, "acme")])
    assert len(svc.shared.lanes["acme"].queue) == 1 and svc.shared.lanes["acme"].overflowed
    svc.settings = ServiceSettings(batch_seconds=0, commit_interval_s=0, lane_cap=1)
    cycle(svc)
    assert svc.shared.consumer.seeks == [((TOPIC, 3), 1)]


# -- issue 26: the commit after a rewind, the memory budget, a company's share of the lanes ------------------
class LogConsumer(FakeConsumer):
    """A partition's records served in order from a position that seeks move (a small Kafka log)."""

    def __init__(self, log):
        super().__init__()
        self.log, self.position = log, 0

    def seek(self, tp, offset):
        super().seek(tp, offset)
        self.position = offset

    def poll(self, n=50):
        if (TOPIC, 3) in self.paused:
            return []
        batch = self.log[self.position:self.position + n]
        self.position += len(batch)
        return batch


def run_loop(svc, rounds=400, until=lambda: False):
    for _ in range(rounds):
        svc.reader.take(svc.shared.consumer.poll())
        svc.dispatcher.finish_done()
        svc.dispatcher.dispatch()
        time.sleep(0.002)
        svc.dispatcher.finish_done()
        svc.committer.commit()
        if until():
            return


def test_the_commit_after_a_rewind_holds_what_is_still_to_be_read_again():
    """The review's High finding: lane cap 1, and the commit in the same pass as the rewind. A
    stop right after that commit must leave c1 and c2 to the next instance."""
    svc = service(Scripted(), lane_cap=1)
    svc.reader.take([message(0, "acme"), message(1, "acme"), message(2, "acme")])
    cycle(svc)
    assert svc.shared.consumer.seeks == [((TOPIC, 3), 1)]
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 1}


def test_the_memory_budget_gives_back_the_biggest_lanes_and_keeps_the_small_ones_flowing():
    from publisher_360learning.budget import event_size

    down = {f"down{i}": TransientError("503") for i in range(4)}
    failing = Scripted(down)
    log = [message(i, f"down{i % 4}") for i in range(160)] + [message(160 + i, "acme") for i in range(5)]
    per_event = event_size(log[0].value)
    budget = 40 * per_event
    svc = service(failing, memory_budget=budget, batch_size=5)
    svc.shared.consumer = LogConsumer(log)
    peak = 0

    def watch():
        nonlocal peak
        peak = max(peak, svc.shared.budget.held(svc.shared.lanes.values()))
        return len([d for d in failing.delivered if d[0] == "acme"]) == 5
    run_loop(svc, until=watch)
    assert [c for c, _ in failing.delivered] == ["acme"] * 5          # the healthy company went through
    assert peak <= budget + 50 * per_event                              # one poll's worth above at most
    assert all(svc.shared.lanes[c].queue for c in down)                       # each failing lane kept its oldest
    assert svc.shared.consumer.commits[-1][(TOPIC, 3)] == 0                   # nothing past down0's first event
    # the failing companies recover: every one of their events is read again and delivered, in order
    failing.failing.clear()
    for c in down:
        svc.shared.lanes[c].not_before = 0
    run_loop(svc, rounds=3000, until=lambda: svc.shared.committed.get((TOPIC, 3)) == 165)
    for c in down:
        got = [int(x[1][1:]) for x in failing.delivered if x[0] == c]
        assert got == [i for i in range(160) if i % 4 == int(c[-1])], c
    assert svc.shared.committed[(TOPIC, 3)] == 165


def test_one_company_takes_at_most_its_bulk_slots_of_the_lanes():
    import threading

    from publisher_360learning.settings import target_from_settings

    release = threading.Event()

    class SlowCompany(Scripted):
        def deliver_connection(self, connection, items, settle=False, fence=None):
            if connection.startswith("k"):
                release.wait(5)
            return super().deliver_connection(connection, items, settle)

    deliverer = SlowCompany()
    k = {"base_url": "http://k.test", "client_id": "k", "client_secret": "s", "author_id": "a" * 24}
    ell = {"base_url": "http://l.test", "client_id": "l", "client_secret": "s", "author_id": "b" * 24}
    deliverer.targets = {**{f"k{i}": target_from_settings(f"k{i}", k) for i in range(4)},
                         "l0": target_from_settings("l0", ell)}
    svc = service(deliverer, concurrency=4)
    svc.reader.take([message(i, f"k{i}") for i in range(4)] + [message(4, "l0", tenant="ell")])
    svc.dispatcher.dispatch()
    try:
        running = sorted(lane.connection for lane, _b, _e in svc.dispatcher.running.values())
        assert running == ["k0", "k1", "k2", "l0"]                     # k3 waits for one of k's slots
        deadline = time.monotonic() + 5
        while ("l0", "c4") not in deliverer.delivered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ("l0", "c4") in deliverer.delivered
    finally:
        release.set()


def test_a_delivery_stopped_by_its_fence_is_let_go_not_retried_or_dead_lettered():
    from publisher_360learning.ownership import LaneRevoked

    svc = service(Scripted({"acme": LaneRevoked("partition given up")}))
    cycle(svc, [message(0, "acme")])
    lane = svc.shared.lanes["acme"]
    assert not lane.running and lane.bugs == 0 and lane.failures == 0 and not svc.shared.sink.events


def test_records_are_kept_by_the_connection_their_key_names_and_a_lying_key_is_dead_lettered():
    deliverer = Scripted()
    svc = service(deliverer)
    lying = message(1, "globex", key=ev.partition_key("acme", "acme", "coursera", "stat/c1/x"))
    cycle(svc, [message(0, "acme", key="k"), lying, message(2, "acme")])
    assert deliverer.delivered == [("acme", "c0"), ("acme", "c2")]
    assert [(e.data["reason"], e.data["errors"]) for e in svc.shared.sink.events] == [
        ("malformed_event", {"key": ["names connection 'acme', the event another one"]})]
    assert svc.shared.consumer.commits[-1] == {(TOPIC, 3): 3}


def test_a_record_its_full_lane_leaves_in_kafka_is_not_parsed(monkeypatch):
    from publisher_360learning import reading as reading_module

    parsed = []
    parse = reading_module._parse
    monkeypatch.setattr(reading_module, "_parse", lambda msg: parsed.append(msg.offset) or parse(msg))
    svc = service(Scripted(), lane_cap=1)
    svc.settings = ServiceSettings(batch_seconds=10, commit_interval_s=0, lane_cap=1)
    svc.reader.take([message(i, "acme") for i in range(5)])
    assert parsed == [0] and svc.shared.lanes["acme"].overflowed
