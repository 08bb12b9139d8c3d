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


def control_plane(args: argparse.Namespace, plugins: HostPluginManager, *, create_topics: bool = False):
    """The control plane on the configured Kafka (the control topic read to its end).

    Its writer connects on the first write only: a command that only reads writes nothing to
    Kafka and takes no API's turn to write (:class:`ConnectionWriter`). ``create_topics``: create
    the host's topics where missing first (``api``, ``connections import``); otherwise a missing
    control topic holds no connection yet."""
    config, topics = sources.kafka_config(args), sources.topics(args)
    policy = sources.settings_policy(args)
    if create_topics:
        log = ConnectionLog.open(config, topics, policy=policy)
    else:
        log = ConnectionLog(config, topics.connections, policy=policy).start(absent_ok=True)
    writer = ConnectionWriter(config, topics.connections, log)
    return ControlPlane(plugins, config, topics, policy, log=log, writer=writer, target_check=target_check(policy))


__all__ = ["actor", "control_plane"]
