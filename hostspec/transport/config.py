"""Kafka connection settings and topic layout, read from the environment or flags.

Environment (all optional):

==========================  ===================================================================
KAFKA_BOOTSTRAP             bootstrap servers, comma separated (default ``127.0.0.1:9092``)
KAFKA_SECURITY_PROTOCOL     PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
KAFKA_SASL_MECHANISM        PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 ...
KAFKA_SASL_USERNAME         SASL user
KAFKA_SASL_PASSWORD         SASL password (a secret: never logged)
KAFKA_SASL_PASSWORD_FILE    or a file holding it (read at connection time)
KAFKA_SSL_CAFILE            CA bundle to verify brokers
KAFKA_SSL_CERTFILE          client certificate (mutual TLS)
KAFKA_SSL_KEYFILE           client key (mutual TLS), PEM; may be encrypted
KAFKA_SSL_KEY_PASSWORD      the password of an encrypted client key (a secret: never logged)
KAFKA_SSL_KEY_PASSWORD_FILE or a file holding it
KAFKA_SSL_CHECK_HOSTNAME    ``false`` to accept a broker certificate not naming the broker's
                            host (default ``true``)
KAFKA_MAX_REQUEST_BYTES     largest produce request (default 1048576, the broker default)
KAFKA_CONNECT_TIMEOUT_MS    how long to try reaching the cluster before giving up (default 6000)
KAFKA_CLIENT                the worker's transactional producer: ``kafka-python`` (default) or
                            ``confluent`` (librdkafka, :mod:`.librdkafka`; needs confluent-kafka)
CONNECTOR_HOST_TOPIC_PREFIX prefix of every topic name (default none)
==========================  ===================================================================
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from hostspec.secrets import Secret
from hostspec.topics import Topics

DAY_MS = 86_400_000


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: Secret | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    max_request_bytes: int = 1_048_576
    connect_timeout_ms: int = 6_000
    client_id: str = "connector-host"
    client: str = "kafka-python"     # the worker's transactional producer (CLIENTS)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "KafkaConfig":
        env = os.environ if env is None else env
        config = cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP", cls.bootstrap_servers),
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", cls.security_protocol),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM"),
            sasl_username=env.get("KAFKA_SASL_USERNAME"),
            sasl_password=_secret(env, "KAFKA_SASL_PASSWORD"),
            ssl_cafile=env.get("KAFKA_SSL_CAFILE"), ssl_certfile=env.get("KAFKA_SSL_CERTFILE"),
            ssl_keyfile=env.get("KAFKA_SSL_KEYFILE"), ssl_key_password=_secret(env, "KAFKA_SSL_KEY_PASSWORD"),
            ssl_check_hostname=env.get("KAFKA_SSL_CHECK_HOSTNAME", "true").strip().lower() not in FALSE,
            max_request_bytes=int(env.get("KAFKA_MAX_REQUEST_BYTES", cls.max_request_bytes)),
            connect_timeout_ms=int(env.get("KAFKA_CONNECT_TIMEOUT_MS", cls.connect_timeout_ms)),
            client=env.get("KAFKA_CLIENT") or cls.client)
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        if config.client not in CLIENTS:
            raise ValueError(f"unknown Kafka client {config.client!r} (KAFKA_CLIENT): choose one of {', '.join(CLIENTS)}")
        return config

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python's producer, consumer and admin client."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers.split(","),
                              "security_protocol": self.security_protocol, "client_id": self.client_id,
                              "bootstrap_timeout_ms": self.connect_timeout_ms,
                              # try again within a second (kafka-python's default backs off up to 30 s, so
                              # a broker that is a moment late costs half a minute)
                              "reconnect_backoff_ms": 100, "reconnect_backoff_max_ms": 1000}
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password.reveal() if self.sasl_password else None
        if self.uses_tls:
            kw["ssl_check_hostname"] = self.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                kw[name] = getattr(self, name)
        if self.ssl_key_password:
            kw["ssl_password"] = self.ssl_key_password.reveal()
        return kw

    def librdkafka_settings(self) -> dict[str, Any]:
        """The same settings under librdkafka's names (confluent-kafka's clients)."""
        kw: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol,
                              "client.id": self.client_id, "message.max.bytes": self.max_request_bytes,
                              "socket.connection.setup.timeout.ms": max(1_000, self.connect_timeout_ms),
                              "socket.nagle.disable": True,
                              "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000}
        if self.sasl_mechanism:
            kw["sasl.mechanism"] = self.sasl_mechanism
            kw["sasl.username"] = self.sasl_username
            kw["sasl.password"] = self.sasl_password.reveal() if self.sasl_password else None
        for ours, theirs in (("ssl_cafile", "ssl.ca.location"), ("ssl_certfile", "ssl.certificate.location"),
                             ("ssl_keyfile", "ssl.key.location")):
            if getattr(self, ours):
                kw[theirs] = getattr(self, ours)
        if self.uses_tls:
            kw["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
        if self.ssl_key_password:
            kw["ssl.key.password"] = self.ssl_key_password.reveal()
        return kw

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.upper() in ("SSL", "SASL_SSL")

    @property
    def principal(self) -> str:
        """Who this configuration connects as, for messages (never a secret)."""
        return principal_of({"security_protocol": self.security_protocol, "sasl_mechanism": self.sasl_mechanism,
                             "sasl_plain_username": self.sasl_username, "ssl_certfile": self.ssl_certfile})


def principal_of(settings: Mapping[str, Any]) -> str:
    """Who a kafka-python client with these settings connects as: its SASL user, its client
    certificate, or an anonymous client (for messages; never a secret)."""
    if settings.get("sasl_mechanism") and settings.get("sasl_plain_username"):
        return f"SASL user {settings['sasl_plain_username']!r}"
    if settings.get("ssl_certfile") and str(settings.get("security_protocol", "")).upper() in ("SSL", "SASL_SSL"):
        return f"the client certificate {settings['ssl_certfile']}"
    return "an anonymous client"


FALSE = ("0", "false", "no", "off")


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    """``NAME`` or ``NAME_FILE`` as a :class:`Secret`, read when used (never kept in a repr)."""
    if env.get(f"{name}_FILE"):
        return Secret(file=env[f"{name}_FILE"])
    if env.get(name):
        return Secret(env=name) if env is os.environ else Secret(env[name])
    return None


CLIENTS = ("kafka-python", "confluent")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def topic_specs(topics: Topics) -> list[TopicSpec]:
    """Topics the host creates when missing, with partitions and retention.

    * requests: 6 partitions (the unit of assignment across workers), 7 days;
    * courses: 6 partitions, 14 days (upserts and removals of a course share a key and partition);
    * learner stats: 12 partitions, 14 days (the largest stream);
    * status: 3 partitions, 30 days (run history for ``status`` views);
    * dead letter: 3 partitions, 30 days (time to inspect and replay);
    * state: 6 partitions, compacted (the latest fingerprint and checkpoint per key), co-partitioned
      with the requests: partition *p* holds the state of the connections whose home is *p*
      (:func:`hostspec.runtime.tasks.home_partition`). Its partition count is fixed for good: homes
      depend on it. The requests topic may have more partitions (the extra ones only forward),
      never fewer. Tombstones are kept a day (``delete.retention.ms``), twice the age up to which
      a worker reuses a local copy of a partition (:mod:`hostspec.runtime.restore`);
    * parked stats: 6 partitions, 45 days (the publisher keeps a stat parked 30 days at most);
    * scheduler: 1 partition (a lease: its holder is the scheduler that publishes), compacted;
    * rate: 1 partition, an hour (workers tell each other of 429s: :mod:`hostspec.runtime.ratebudget`);
    * connections: 1 partition, compacted (the control topic: the latest document per connection,
      read whole by every worker, scheduler, publisher and admin API, :mod:`hostspec.control.plane`);
    * audit: 1 partition (one order of every write to the admin API), a year (:mod:`hostspec.control.audit`).
    """
    def delete(days: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}

    return [TopicSpec(topics.requests, 6, delete(7)), TopicSpec(topics.courses, 6, delete(14)),
            TopicSpec(topics.learner_stats, 12, delete(14)), TopicSpec(topics.status, 3, delete(30)),
            TopicSpec(topics.dead_letter, 3, delete(30)),
            TopicSpec(topics.state, 6, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                                        "delete.retention.ms": str(DAY_MS)}),
            TopicSpec(topics.parked, 6, delete(45)),
            TopicSpec(topics.scheduler, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
            TopicSpec(topics.rate, 1, {"cleanup.policy": "delete", "retention.ms": str(3_600_000)}),
            TopicSpec(topics.connections, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}),
            TopicSpec(topics.audit, 1, delete(365))]


def topics_from_env(prefix: str | None = None) -> Topics:
    prefix = os.environ.get("CONNECTOR_HOST_TOPIC_PREFIX", "") if prefix is None else prefix
    return Topics().with_prefix(prefix) if prefix else Topics()
