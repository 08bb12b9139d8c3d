"""The transport on the real broker: pausing and resuming loses nothing, a stale generation commits
nothing, a restore reads past an open transaction, a committed offset is read once stable, and a
consumer started before its topic reads it within seconds."""
from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer, TopicPartition

from hostspec.transport.admin import ensure_topics
from hostspec.transport.config import CLIENTS, KafkaConfig, TopicSpec
from hostspec.transport.consumers import RequestConsumer

pytestmark = pytest.mark.kafka


def test_regression_pause_resume_never_stalls_a_partition(bootstrap, prefix):
    """kafka-python 3.0 kept records parked after resume() and never fetched the partition again;
    the worker then left requests unprocessed (found by the reliability load test)."""
    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic = f"{prefix}pause"
    ensure_topics(config, [TopicSpec(topic, 2, {})])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(600):
        producer.send(topic, key=str(i % 7).encode(), value=str(i).encode())
    producer.flush()
    producer.close()
    consumer = RequestConsumer(config, topic, f"{prefix}g", on_assigned=lambda _: None, on_revoked=lambda _: None)
    pending: dict = {}
    got: list[tuple] = []
    deadline = time.monotonic() + 60
    while len(got) < 600 and time.monotonic() < deadline:
        for msg in consumer.poll(0 if pending else 200):  # the worker's pattern: pause while busy
            if msg.tp not in pending:
                pending[msg.tp] = []
                consumer.pause(msg.tp)
            pending[msg.tp].append(msg)
        for tp in list(pending):
            got.append((tp, pending[tp].pop(0).offset))
            if not pending[tp]:
                del pending[tp]
                consumer.resume(tp)
    consumer.close()
    assert len(got) == 600 and len(set(got)) == 600


def _txn_producer(bootstrap: str, txn_id: str, timeout_ms: int = 60_000) -> KafkaProducer:
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id, enable_idempotence=True,
                             acks="all", transaction_timeout_ms=timeout_ms)
    producer.init_transactions()
    return producer


def _pooled_producer(bootstrap: str, txn_prefix: str, client: str):
    """A transactional producer as the worker gets it, on ``client``."""
    from hostspec.transport.producer_pool import ProducerPool

    _slot, producer = ProducerPool(KafkaConfig(bootstrap_servers=bootstrap, client=client), txn_prefix, 1).take()
    assert type(producer).__module__.startswith("kafka." if client == "kafka-python" else "hostspec.transport.librdkafka")
    return producer


def _member(bootstrap: str, topic: str, group: str):
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                             isolation_level="read_committed", session_timeout_ms=6000,
                             partition_assignment_strategy=[CooperativeStickyAssignor])
    consumer.subscribe([topic])
    return consumer


@pytest.mark.parametrize("client", CLIENTS)
def test_a_transaction_with_a_stale_generation_commits_nothing(bootstrap, prefix, client):
    """Why every transaction carries its input offset: the group coordinator checks the member's
    generation there, and refuses the whole transaction once the group has moved on (KIP-447).
    Without the offsets the same transaction commits: nothing would fence it. On both clients
    of the worker's transactions (librdkafka takes kafka-python's group metadata re-encoded)."""
    import threading

    from hostspec.transport.transactions import OutRecord, transact
    from tests.integration.conftest import read_topic

    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic, out = f"{prefix}in", f"{prefix}out"
    ensure_topics(config, [TopicSpec(topic, 2, {}), TopicSpec(out, 1, {})])
    first = _member(bootstrap, topic, f"{prefix}g")
    deadline = time.monotonic() + 30
    while len(first.assignment()) < 2 and time.monotonic() < deadline:
        first.poll(100)
    stale = first.group_metadata()
    stop = threading.Event()

    def keep_polling() -> None:     # the first member stays in the group while the second joins
        while not stop.is_set():
            first.poll(100)

    spinner = threading.Thread(target=keep_polling, daemon=True)   # daemon: a failed assertion must not hang pytest
    spinner.start()
    second = _member(bootstrap, topic, f"{prefix}g")
    while not second.assignment() and time.monotonic() < deadline:     # the group moves on: generation + 1
        second.poll(100)
    producer = _pooled_producer(bootstrap, f"{prefix}txn", client)
    with pytest.raises(Exception) as refused:
        transact(producer, [OutRecord(out, 0, b"k", b"zombie")], {(topic, 0): 1}, stale)
    # the coordinator fences the stale member by its generation, or, when the member's session
    # lapsed meanwhile (a loaded CI machine: a clean-clone run saw it), by its unknown member id:
    # either way the transaction commits nothing (checked below)
    refusal = f"{type(refused.value).__name__} {refused.value}"
    assert "IllegalGeneration" in refusal or "UnknownMemberId" in refusal, refusal
    transact(producer, [OutRecord(out, 0, b"k", b"no fence")], None, stale)       # no offsets: not checked
    transact(producer, [OutRecord(out, 0, b"k", b"fresh")], {(topic, 0): 1}, first.group_metadata())
    stop.set()
    spinner.join(10)
    values = [v for _k, v in read_topic(bootstrap, out, raw=True)]
    producer.close()
    second.close()
    first.close()
    assert values == [b"no fence", b"fresh"]


def test_restore_reads_what_was_committed_behind_an_open_transaction(bootstrap, prefix):
    """A transaction left open (a worker that died mid-commit) pins the last stable offset; the
    restore waits for it to end and reads what other writers committed after it began."""
    from hostspec.transport.changelog import ChangelogReader

    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic = f"{prefix}state"
    ensure_topics(config, [TopicSpec(topic, 1, {})])
    dead = _txn_producer(bootstrap, f"{prefix}dead", timeout_ms=5_000)
    dead.begin_transaction()
    dead.send(topic, key=b"open", value=b"x", partition=0).get(10)
    alive = _txn_producer(bootstrap, f"{prefix}alive")
    alive.begin_transaction()
    alive.send(topic, key=b"k", value=b"committed after", partition=0)
    alive.commit_transaction()
    reader = ChangelogReader(config, topic)
    lso = reader._reader.end_offsets([TopicPartition(topic, 0)])
    assert list(lso.values()) == [0]                     # a read to the last stable offset sees nothing
    seen: dict[str, bytes] = {}
    started = time.monotonic()
    reached = reader.read({0: None}, lambda records: seen.update(dict(records)), timeout_s=120)
    waited = time.monotonic() - started
    reader.close()
    alive.close()
    dead.close(timeout=1)
    assert seen == {"k": b"committed after"} and reached[0] >= 3 and waited >= 3   # "open" aborted, not applied


def test_the_committed_offset_is_read_only_once_no_transaction_carries_one(bootstrap, prefix):
    import threading

    from kafka.structs import OffsetAndMetadata

    from hostspec.transport.changelog import ChangelogReader

    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic = f"{prefix}req"
    ensure_topics(config, [TopicSpec(topic, 1, {})])
    member = _member(bootstrap, topic, f"{prefix}g")
    deadline = time.monotonic() + 30
    while not member.assignment() and time.monotonic() < deadline:
        member.poll(100)
    owner = _txn_producer(bootstrap, f"{prefix}owner")
    owner.begin_transaction()
    owner.send_offsets_to_transaction({TopicPartition(topic, 0): OffsetAndMetadata(42, "", -1)},
                                      member.group_metadata())
    threading.Timer(3, owner.commit_transaction).start()
    reader = ChangelogReader(config, topic, group_id=f"{prefix}g")
    started = time.monotonic()
    offset = reader.stable_offset((topic, 0))
    waited = time.monotonic() - started
    reader.close()
    owner.close()
    member.close()
    assert offset == 42 and waited >= 2.5


def test_a_consumer_started_before_its_topic_exists_reads_it_within_seconds(bootstrap, prefix):
    """Start-up order: a publisher or worker that joins before the topics exist used to be
    assigned nothing until kafka-python's next metadata refresh, five minutes later."""
    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic = f"{prefix}later"
    consumer = RequestConsumer(config, topic, f"{prefix}g", on_assigned=lambda _: None, on_revoked=lambda _: None,
                               topic_wait_s=1)
    assert consumer.partition_counts == {topic: 0}
    ensure_topics(config, [TopicSpec(topic, 2, {})])
    created = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=b"k", value=b"hello").get(10)
    producer.close()
    got = []
    while not got and time.monotonic() - created < 60:
        got = consumer.poll(200)
    took = time.monotonic() - created
    consumer.close()
    assert [m.value for m in got] == [b"hello"] and took < 20


def test_regression_a_join_completed_between_polls_is_not_lost(bootstrap, prefix):
    """kafka-python 3.0 dropped a rejoin that completed between two polls (after a metadata
    change): the member stayed "rebalancing" with heartbeats off until the broker evicted it,
    still believing it owned its partitions (found by the adversarial review: a worker that
    started first sometimes never served anything)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewPartitions

    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic = f"{prefix}grow"
    ensure_topics(config, [TopicSpec(topic, 2, {})])
    consumer = RequestConsumer(config, topic, f"{prefix}g", on_assigned=lambda _: None, on_revoked=lambda _: None,
                               session_timeout_ms=6000)
    deadline = time.monotonic() + 30
    while (consumer.group_metadata().state != "<stable>" or len(consumer.assignment()) < 2) \
            and time.monotonic() < deadline:
        consumer.poll(100)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_partitions({topic: NewPartitions(4)})           # the leader must rejoin
    admin.close()
    while consumer.group_metadata().state == "<stable>" and time.monotonic() < deadline:
        consumer._consumer.poll(timeout_ms=1)                    # a busy loop: the join is left in flight
    assert consumer.group_metadata().state == "<rebalancing>"
    time.sleep(3)                                                # ... and completes while nobody polls
    while time.monotonic() < deadline + 15 and not (consumer.group_metadata().state == "<stable>"
                                                     and len(consumer.assignment()) == 4):
        consumer.poll(100)
    state, owned = consumer.group_metadata().state, len(consumer.assignment())
    time.sleep(7)                                                # past the session timeout: still a member?
    consumer.poll(100)
    alive = consumer.group_metadata().generation_id > 0
    consumer.close()
    assert state == "<stable>" and owned == 4 and alive


def test_both_clients_put_the_same_records_in_the_same_partitions(bootstrap, prefix):
    """A record's partition does not depend on the worker's client: keyed records without a
    partition go by murmur2 of the key on both (librdkafka's default would be CRC32), and each
    transaction reports where its records end the same way."""
    from kafka import KafkaConsumer

    from hostspec.transport.cloudevents import STRUCTURED
    from hostspec.transport.transactions import OutRecord, transact

    def read(topic: str) -> list:
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000)
        rows = [(m.partition, m.offset, m.key, m.value, tuple(m.headers)) for m in consumer]
        consumer.close()
        return sorted(rows)

    config = KafkaConfig(bootstrap_servers=bootstrap)
    written = {}
    for client in CLIENTS:
        out = f"{prefix}{client}"
        ensure_topics(config, [TopicSpec(out, 6, {})])
        records = [OutRecord(out, None, f"tenant-{i}/course-{i * 7}".encode(), b"v%d" % i, STRUCTURED)
                   for i in range(60)] + [OutRecord(out, i % 6, b"state-%d" % i, None) for i in range(6)]
        producer = _pooled_producer(bootstrap, f"{prefix}{client}", client)
        ends = transact(producer, records, None, None)
        producer.close()
        written[client] = (ends, read(out))
    assert written["kafka-python"] == written["confluent"]
    assert len(written["confluent"][1]) == 66 and len({row[0] for row in written["confluent"][1]}) == 6
