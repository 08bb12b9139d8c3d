"""Topics: created when missing (:func:`ensure_topics`), and awaited in a consumer's metadata
(:func:`await_topics`: a process may start right before another one creates its topics)."""
from __future__ import annotations

import logging
import time
from typing import Iterable

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka import errors as kerr
from kafka.errors import KafkaError, TopicAlreadyExistsError

from hostspec.errors import TransportError
from hostspec.transport.config import KafkaConfig, TopicSpec
from hostspec.transport.kafka import REFUSALS, kafka_client, refusal

log = logging.getLogger(__name__)


def ensure_topics(config: KafkaConfig, specs: Iterable[TopicSpec], *, replication_factor: int = 1,
                  timeout_s: float = 30) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    specs = list(specs)
    admin = kafka_client(config, KafkaAdminClient, request_timeout_ms=int(timeout_s * 1000))
    try:
        existing = set(admin.list_topics())    # the topics this principal may see
        missing = [s for s in specs if s.name not in existing]
        created, forbidden = [], []
        for spec in missing:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, replication_factor,
                                              topic_configs=dict(spec.configs))], timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:  # another worker created it meanwhile
                pass
            except (kerr.TopicAuthorizationFailedError, kerr.ClusterAuthorizationFailedError):
                # a secured cluster: the operator creates the topics, and a topic this principal
                # may not see is not one it uses (a missing one it uses is reported where it is used)
                forbidden.append(spec.name)
        if created:
            log.info("created topics %s", ", ".join(created))
        if forbidden:
            log.info("not allowed to create or see topics %s as %s: left to the operator", ", ".join(forbidden),
                     config.principal)
        return created
    except KafkaError as exc:
        raise TransportError(f"cannot create topics: {type(exc).__name__}: {exc}") from None
    finally:
        admin.close()


def await_topics(consumer: KafkaConsumer, topics: Iterable[str], *, timeout_s: float = 30,
                 config: KafkaConfig | None = None) -> dict[str, int]:
    """Wait until ``consumer`` knows the partitions of every topic; returns their counts.

    Topics another process has just created take a moment to appear in metadata; a consumer
    that joins its group before then is assigned nothing until its next metadata refresh.
    Topics still unknown after ``timeout_s`` are returned with 0 partitions (the consumer then
    picks them up within ``METADATA_MAX_AGE_MS`` of their creation).

    A topic this principal may not even describe is invisible, as a missing one is: with
    ``config``, a topic not seen at once is asked about, and one Kafka refuses raises
    :class:`TransportError` at once instead of being waited for.
    """
    counts: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    for topic in topics:
        asked = config is None
        while True:
            try:
                partitions = consumer.partitions_for_topic(topic) or set()
            except KafkaError:
                partitions = set()
            if partitions or time.monotonic() >= deadline:
                counts[topic] = len(partitions)
                break
            if not asked:
                asked = True
                _check_describable(config, topic)
            time.sleep(0.2)
    return counts


def _check_describable(config: KafkaConfig, topic: str) -> None:
    """Raise :class:`TransportError` when Kafka refuses ``config``'s principal the topic's metadata
    (a missing topic passes: it may be created in a moment)."""
    try:
        admin = KafkaAdminClient(**config.client_kwargs(), request_timeout_ms=5_000)
    except (KafkaError, ValueError, OSError):
        return                      # not reachable now: the caller goes on waiting
    try:
        found = admin.describe_topics([topic])
    except KafkaError as exc:
        if isinstance(exc, REFUSALS):
            raise refusal(config, exc) from None
        return
    finally:
        admin.close()
    for entry in found:
        if entry.get("error_code") == kerr.TopicAuthorizationFailedError.errno:
            raise refusal(config, kerr.TopicAuthorizationFailedError(topic))
