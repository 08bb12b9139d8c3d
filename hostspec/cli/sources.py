"""Where a command finds its connections, its settings policy and its Kafka: the connections
file or the control topic (``--connections kafka``), ``--policy``, ``--bootstrap-servers`` and
``--topic-prefix``."""
from __future__ import annotations

import argparse
import os

from hostspec.config.connections import ConnectionStore
from hostspec.config.control_topic import ConnectionLog
from hostspec.config.policy import SettingsPolicy
from hostspec.runtime.worker import ConnectionsFile
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig, topics_from_env

DEFAULT_CONNECTIONS = "connections.toml"
CONTROL_TOPIC = "kafka"      # --connections kafka: the control topic instead of a file


def kafka_config(args: argparse.Namespace) -> KafkaConfig:
    return KafkaConfig.from_env(bootstrap_servers=getattr(args, "bootstrap_servers", None))


def topics(args: argparse.Namespace) -> Topics:
    return topics_from_env(getattr(args, "topic_prefix", None))


def connections_path(args: argparse.Namespace) -> str:
    return args.connections or os.environ.get("CONNECTOR_HOST_CONNECTIONS") or DEFAULT_CONNECTIONS


def settings_policy(args: argparse.Namespace) -> SettingsPolicy:
    """The deployment's settings policy: ``--policy FILE`` (or $CONNECTOR_HOST_POLICY), with
    the development switch ``--allow-sandboxes`` (or $CONNECTOR_HOST_ALLOW_SANDBOXES=1)."""
    return SettingsPolicy.from_env(args.policy, allow_sandboxes=True if args.allow_sandboxes else None)


def connection_source(args: argparse.Namespace) -> ConnectionsFile | ConnectionLog:
    """The connections file, or with ``--connections kafka`` the control topic (followed live,
    every connection held to the settings policy). A file is the operator's own and trusted: the
    policy applies to it only when ``--policy`` is given."""
    if connections_path(args) != CONTROL_TOPIC:
        return ConnectionsFile(connections_path(args), policy=settings_policy(args) if args.policy else None)
    return ConnectionLog.open(kafka_config(args), topics(args), policy=settings_policy(args))


def connection_store(args: argparse.Namespace) -> ConnectionStore:
    """The connections as they are now (one-shot commands: check, sync, replay)."""
    if connections_path(args) != CONTROL_TOPIC:
        return ConnectionStore.from_file(connections_path(args))
    source = connection_source(args)
    try:
        return source.store()
    finally:
        source.close()
