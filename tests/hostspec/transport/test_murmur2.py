"""Our murmur2 picks the same partitions as kafka-python's (and the Java client's) default."""
from __future__ import annotations

import random

from kafka.partitioner.default import murmur2 as kafka_murmur2

from hostspec.transport.murmur2 import murmur2, partition_for


def test_identical_to_kafka_python_for_every_length_and_many_bytes():
    rng = random.Random(11)
    for length in range(0, 130):
        for _ in range(25):
            data = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(data) == kafka_murmur2(data)


def test_known_java_client_values():
    # Values from the Java client's own test (Utils.murmur2 of these strings, as unsigned 32 bit)
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF


def test_partition_for_matches_the_default_partitioner_rule():
    for key in (b"acme", b"tenant/conn/coursera/stat/c1/jane@acme.test", b"x" * 77):
        assert partition_for(key, 12) == (kafka_murmur2(key) & 0x7FFFFFFF) % 12
