"""The one outcome both transactional producers share (kafka-python's in :mod:`.transactions`,
librdkafka's in :mod:`.librdkafka`): a call that did not finish in time."""
from __future__ import annotations


class Stuck(Exception):
    """A transactional call did not finish in time (the broker away): the outcome is unknown and the
    producer is abandoned."""


__all__ = ["Stuck"]
