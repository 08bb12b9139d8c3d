"""The librdkafka transaction client without a broker: the group metadata it is given is the one
librdkafka itself would write, and its errors mean to :mod:`hostspec.transport.transactions` what
kafka-python's mean. (On the broker: tests/integration/test_transport.py runs the fencing and
partitioning tests on both clients; dev/test runs the worker's broker tests again with
KAFKA_CLIENT=confluent.)"""
from __future__ import annotations

import pytest
from kafka import errors as kerr
from kafka.structs import ConsumerGroupMetadata

from hostspec.transport import transactions as tx
from hostspec.transport.config import KafkaConfig
from hostspec.transport.producer_pool import ProducerPool

ck = pytest.importorskip("confluent_kafka")
from hostspec.transport.librdkafka import group_metadata_bytes, translate  # noqa: E402  (needs confluent-kafka)


@pytest.mark.parametrize("instance", [None, "worker-7"])
def test_group_metadata_is_written_as_librdkafka_writes_it(instance):
    """Compared with what a librdkafka consumer serializes for the same group (unjoined: the only
    state one reaches without a broker; the generation's place and byte order are checked with
    the joined state on the broker)."""
    settings = {"group.id": "workers", "bootstrap.servers": "127.0.0.1:1", "log_level": 0}
    if instance:
        settings["group.instance.id"] = instance
    consumer = ck.Consumer(settings)
    try:
        theirs = consumer.consumer_group_metadata()
    finally:
        consumer.close()
    ours = group_metadata_bytes(ConsumerGroupMetadata("workers", -1, "", instance))
    assert ours == theirs
    joined = group_metadata_bytes(ConsumerGroupMetadata("workers", 258, "m-1", instance))
    assert joined.startswith(b"CGMDv2:\x02\x01\x00\x00workers\x00m-1\x00")


@pytest.mark.parametrize("error, kind, stale", [
    (ck.KafkaError(ck.KafkaError.ILLEGAL_GENERATION, "generation gone", txn_requires_abort=True), "membership", True),
    (ck.KafkaError(ck.KafkaError.UNKNOWN_MEMBER_ID, "who", txn_requires_abort=True), "membership", True),
    (ck.KafkaError(ck.KafkaError.REBALANCE_IN_PROGRESS, "wait"), "membership", False),
    (ck.KafkaError(ck.KafkaError.CONCURRENT_TRANSACTIONS, "busy", retriable=True), "membership", False),
    (ck.KafkaError(ck.KafkaError.FENCED_INSTANCE_ID, "replaced"), "evicted", True),
    (ck.KafkaError(ck.KafkaError._FENCED, "another producer with this id"), "fatal", False),
    (ck.KafkaError(ck.KafkaError.PRODUCER_FENCED, "fenced", fatal=True), "fatal", False),
    (ck.KafkaError(ck.KafkaError._TRANSPORT, "anything", fatal=True), "fatal", False),
    (ck.KafkaError(ck.KafkaError._TIMED_OUT, "no answer", retriable=True), "fatal", False),
    (ck.KafkaError(ck.KafkaError._STATE, "wrong state"), "fatal", False),
    (ck.KafkaError(ck.KafkaError.MSG_SIZE_TOO_LARGE, "too big", txn_requires_abort=True), "permanent", False),
    (ck.KafkaError(ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, "no"), "permanent", False),
    (ck.KafkaError(ck.KafkaError._TRANSPORT, "broker gone", retriable=True), "retriable", False),
    (ck.KafkaError(ck.KafkaError._MSG_TIMED_OUT, "not delivered"), "retriable", False),
    (ck.KafkaError(ck.KafkaError.NOT_ENOUGH_REPLICAS, "later", retriable=True), "retriable", False),
])
def test_librdkafka_errors_mean_what_kafka_pythons_mean(error, kind, stale):
    """A step that timed out has an unknown outcome (fatal: the producer is replaced and the state
    read back), as on kafka-python; a stale member is refused, not retried as a transient error."""
    exc = translate(error)
    assert tx._kind(exc) == kind, (error, exc)
    assert isinstance(exc, tx._STALE) == stale


def test_a_refusal_is_named_even_when_librdkafka_makes_it_fatal():
    """A transactional id not granted makes librdkafka's producer fatal; the pool still names the
    missing right (not 'fenced'), and a refused login is a refusal, not an unreachable broker."""
    refused = translate(ck.KafkaError(ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "not yours", fatal=True))
    assert isinstance(refused, kerr.TransactionalIdAuthorizationFailedError) and tx._kind(refused) == "fatal"
    login = translate(ck.KafkaError(ck.KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    assert isinstance(login, kerr.SaslAuthenticationFailedError)


def test_the_pool_builds_the_configured_client(monkeypatch):
    built = []

    class Stand:
        def __init__(self, config, *, transactional_id, transaction_timeout_ms):
            built.append((config.client, transactional_id, transaction_timeout_ms))

        def init_transactions(self):
            pass

    import hostspec.transport.librdkafka as rd
    monkeypatch.setattr(rd, "TransactionalProducer", Stand)
    pool = ProducerPool(KafkaConfig(client="confluent"), "g.w", 2, transaction_timeout_ms=9_000)
    assert sorted(built) == [("confluent", "g.w-0", 9_000), ("confluent", "g.w-1", 9_000)]
    assert isinstance(pool.take()[1], Stand)


def test_an_unknown_client_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown Kafka client 'librdkafka'.*kafka-python, confluent"):
        KafkaConfig.from_env({"KAFKA_CLIENT": "librdkafka"})
    assert KafkaConfig.from_env({}).client == "kafka-python"
    assert KafkaConfig.from_env({"KAFKA_CLIENT": "confluent"}).client == "confluent"


def test_librdkafka_settings_carry_the_secret_only_where_it_is_needed():
    from hostspec.secrets import Secret

    config = KafkaConfig(bootstrap_servers="a:1,b:2", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                         sasl_username="svc", sasl_password=Secret("s3cret-value"), ssl_cafile="/ca.pem")
    settings = config.librdkafka_settings()
    assert settings["bootstrap.servers"] == "a:1,b:2" and settings["sasl.password"] == "s3cret-value"
    assert settings["ssl.ca.location"] == "/ca.pem" and settings["security.protocol"] == "SASL_SSL"
    assert "s3cret" not in repr(config)


class _Refusing:
    """A confluent-kafka Producer whose broker refused the first record: librdkafka then takes no
    more records (``_STATE``) and its commit raises the refusal, which requires an abort."""

    def __init__(self, settings, logger=None):
        self.calls = []

    def begin_transaction(self):
        self.calls.append("begin")

    def produce(self, topic, **kwargs):
        self.calls.append("produce")
        if self.calls.count("produce") > 1:
            raise ck.KafkaException(ck.KafkaError(ck.KafkaError._STATE, "Erroneous state"))

    def commit_transaction(self, timeout):
        self.calls.append("commit")
        raise ck.KafkaException(ck.KafkaError(ck.KafkaError.MSG_SIZE_TOO_LARGE, "too large", txn_requires_abort=True))

    def abort_transaction(self, timeout):
        self.calls.append("abort")

    def poll(self, timeout):
        return 0


def test_a_record_refused_while_others_are_sent_ends_in_the_refusal_not_a_broken_producer(monkeypatch):
    """librdkafka refuses further records once one was refused; that is not a broken producer
    (which would be replaced, and the refusal's meaning lost) but the transaction's refusal,
    which its commit reports: the transaction is aborted and judged by it (found by review)."""
    from hostspec.transport.librdkafka import TransactionalProducer

    monkeypatch.setattr(ck, "Producer", _Refusing)
    producer = TransactionalProducer(KafkaConfig(), transactional_id="t")
    records = [tx.OutRecord("events", None, b"k%d" % i, b"v") for i in range(5)]
    with pytest.raises(kerr.MessageSizeTooLargeError) as refused:
        tx.transact(producer, records, None, None)
    assert tx._kind(refused.value) == "permanent"
    assert producer._producer.calls == ["begin", "produce", "produce", "commit", "abort"]
