"""Kafka settings from the environment: security options passed through, password never shown."""
from __future__ import annotations

from hostspec.transport.config import KafkaConfig, topic_specs, topics_from_env
from hostspec.topics import Topics


def test_plain_defaults():
    kw = KafkaConfig.from_env({}).client_kwargs()
    assert kw["bootstrap_servers"] == ["127.0.0.1:9092"] and kw["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in kw


def test_sasl_ssl_settings_pass_through_and_hide_the_password(monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-pass-123")
    env = {"KAFKA_BOOTSTRAP": "b1:9093,b2:9093", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "svc",
           "KAFKA_SASL_PASSWORD": "kafka-pass-123", "KAFKA_SSL_CAFILE": "/etc/ca.pem"}
    config = KafkaConfig.from_env(env)
    kw = config.client_kwargs()
    assert kw["bootstrap_servers"] == ["b1:9093", "b2:9093"] and kw["security_protocol"] == "SASL_SSL"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["sasl_plain_username"] == "svc"
    assert kw["sasl_plain_password"] == "kafka-pass-123" and kw["ssl_cafile"] == "/etc/ca.pem"
    assert "kafka-pass-123" not in repr(config)


def test_flags_override_env():
    assert KafkaConfig.from_env({"KAFKA_BOOTSTRAP": "a:1"}, bootstrap_servers="b:2").bootstrap_servers == "b:2"


def test_topics_prefix_and_specs(monkeypatch):
    monkeypatch.setenv("CONNECTOR_HOST_TOPIC_PREFIX", "prod.")
    topics = topics_from_env()
    assert topics.requests == "prod.learning.sync.requests"
    specs = {s.name: s for s in topic_specs(Topics())}
    assert set(specs) == set(Topics().all())
    state = specs.pop(Topics().state)
    assert state.configs["cleanup.policy"] == "compact"  # latest fingerprint per key, kept forever
    lease = specs.pop(Topics().scheduler)
    assert (lease.partitions, lease.configs["cleanup.policy"]) == (1, "compact")  # one holder, last slots
    control = specs.pop(Topics().connections)
    assert (control.partitions, control.configs["cleanup.policy"]) == (1, "compact")  # latest document each
    assert all(int(s.configs["retention.ms"]) > 0 and s.partitions >= 1 for s in specs.values())


def test_mutual_tls_settings_reach_both_clients_and_the_key_password_stays_hidden(tmp_path):
    password = tmp_path / "key.pass"
    password.write_text("key-pass-4711\n")
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/s/ca.pem", "KAFKA_SSL_CERTFILE": "/s/worker.pem",
           "KAFKA_SSL_KEYFILE": "/s/worker.key", "KAFKA_SSL_KEY_PASSWORD_FILE": str(password),
           "KAFKA_SSL_CHECK_HOSTNAME": "false"}
    config = KafkaConfig.from_env(env)
    kw, rd = config.client_kwargs(), config.librdkafka_settings()
    assert (kw["ssl_cafile"], kw["ssl_certfile"], kw["ssl_keyfile"]) == ("/s/ca.pem", "/s/worker.pem", "/s/worker.key")
    assert kw["ssl_password"] == "key-pass-4711" and kw["ssl_check_hostname"] is False
    assert (rd["ssl.ca.location"], rd["ssl.certificate.location"], rd["ssl.key.location"]) == (
        "/s/ca.pem", "/s/worker.pem", "/s/worker.key")
    assert rd["ssl.key.password"] == "key-pass-4711" and rd["ssl.endpoint.identification.algorithm"] == "none"
    assert "key-pass-4711" not in repr(config) and config.principal == "the client certificate /s/worker.pem"
    # verified by default, on both clients
    checked = KafkaConfig.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    assert checked.client_kwargs()["ssl_check_hostname"] is True
    assert checked.librdkafka_settings()["ssl.endpoint.identification.algorithm"] == "https"


def test_a_sasl_password_from_a_file_is_read_when_connecting_not_kept_in_the_config(tmp_path):
    password = tmp_path / "scram.pass"
    password.write_text("scram-pass-0815\n")
    config = KafkaConfig.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                   "KAFKA_SASL_USERNAME": "worker", "KAFKA_SASL_PASSWORD_FILE": str(password)})
    assert "scram-pass-0815" not in repr(config) and config.principal == "SASL user 'worker'"
    assert config.client_kwargs()["sasl_plain_password"] == "scram-pass-0815"
    assert config.librdkafka_settings()["sasl.password"] == "scram-pass-0815"
