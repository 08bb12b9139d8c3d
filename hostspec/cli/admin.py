"""The control plane from a shell (:mod:`hostspec.control.plane`), as ``connector-host api``,
``connections ...`` and ``deadletters ...`` (:mod:`.api`, :mod:`.connections`, :mod:`.deadletters`)
open it."""
from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from hostspec.cli import sources
from hostspec.config import documents as docs
from hostspec.config.control_topic import ConnectionLog, ConnectionWriter
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
    return ControlPlane(plugins, config, topics, policy, log=log, writer=writer, target_check=_target_check(policy))


def _target_check(policy: Any) -> docs.TargetCheck | None:
    try:
        from publisher_360learning.settings import target_problems
    except ImportError:       # the publisher is not installed: targets are stored unchecked
        return None
    return lambda name, target, tenant: target_problems(policy, name, target, tenant)


__all__ = ["actor", "control_plane"]
