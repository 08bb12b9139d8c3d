"""The control plane from a shell (:mod:`hostspec.control.plane`), as ``connector-host api``,
``connections ...`` and ``deadletters ...`` (:mod:`.api`, :mod:`.connections`, :mod:`.deadletters`)
open it."""
from __future__ import annotations

import argparse
import getpass
import os
from hostspec.cli import sources
from hostspec.config import documents as docs
from hostspec.config.control_topic import ConnectionLog, ConnectionWriter
from hostspec.config.targets import target_check
from hostspec.control.plane import ControlPlane
from hostspec.engine.plugins import HostPluginManager


def actor(args: argparse.Namespace) -> str:
    return f"cli:{os.environ.get('USER') or getpass.getuser()}"


def control_plane(args: argparse.Namespace, plugins: HostPluginManager):
    """The control plane on the configured Kafka (the control topic read to its end)."""
    config, topics = sources.kafka_config(args), sources.topics(args)
    policy = sources.settings_policy(args)
    writer = ConnectionWriter(config, topics.connections)    # first: it ends what a killed writer left open
    log = ConnectionLog.open(config, topics, policy=policy)
    writer.attach(log)
    return ControlPlane(plugins, config, topics, policy, log=log, writer=writer, target_check=target_check(policy))


__all__ = ["actor", "control_plane"]
