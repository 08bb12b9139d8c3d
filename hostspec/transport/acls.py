"""Which Kafka rights each component of the host needs on a secured cluster, and a tool that grants them.

On a cluster with an authorizer, every component connects as its own principal and gets exactly
what it uses (Kafka's READ and WRITE imply DESCRIBE; the host's topics are created by the operator,
not by the components):

==========  ==========================================  ========================================  =================  ==================================
principal   reads (topics)                              writes (topics)                           consumer group     transactional ids
==========  ==========================================  ========================================  =================  ==================================
worker      requests, state, rate, connections          requests (forwarded to a connection's     its group (READ)   ``<group>.`` (prefixed): one per
                                                        home partition), courses, learner stats,                     run slot, fenced by the group
                                                        status, dead letter, state, rate
publisher   courses, learner stats, parked,             dead letter, parked, its ledger           its group (READ)   none (idempotent producer)
            connections, its ledger                     (and CREATE on the ledger alone)
scheduler   scheduler, connections                      requests, scheduler                       its group (READ)   none
api         connections, status, dead letter, audit,    connections, requests, status (re-drive), none               ``connector-host-control.<topic>``
            requests (its fleet index), parked, the     audit
            publisher's ledger (delivery)
requester   status (``connector-host request --wait``)  requests                                  none               none
==========  ==========================================  ========================================  =================  ==================================

An idempotent producer needs no cluster right: WRITE on a topic is enough (KIP-679). Nobody but
the operator may create, delete or alter the host's topics: the components' start-up
(:func:`~.admin.ensure_topics`) then only checks the topics they can see.

``python -m hostspec.transport.acls print`` shows the grants as ``kafka-acls.sh`` commands;
``python -m hostspec.transport.acls apply`` creates the host's topics and the grants, connecting with
the ``KAFKA_*`` settings of the environment as a super user (``dev/kafka/kafka.sh`` does that when it
starts the broker secured).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, fields
from typing import Any, Iterable

from kafka import KafkaAdminClient
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern,
                         ResourcePatternFilter, ResourceType)
from kafka.errors import KafkaError

from hostspec.errors import HostError, TransportError
from hostspec.topics import Topics, ledger_topic
from hostspec.transport.admin import ensure_topics
from hostspec.transport.config import KafkaConfig, topic_specs, topics_from_env
from hostspec.transport.kafka import kafka_client

CONTROL_TRANSACTIONAL_ID = "connector-host-control."   # + the connections topic: every control-topic writer


@dataclass(frozen=True)
class Grant:
    principal: str           # "User:worker"
    resource: str            # "topic", "group", "transactional_id"
    name: str
    operation: str           # "READ", "WRITE", "CREATE"
    prefixed: bool = False   # the name is a prefix (Kafka's PREFIXED pattern)

    def command(self, bootstrap: str = "<broker>") -> str:
        """The same grant as a ``kafka-acls.sh`` command line."""
        option = {"topic": "--topic", "group": "--group", "transactional_id": "--transactional-id"}[self.resource]
        pattern = " --resource-pattern-type prefixed" if self.prefixed else ""
        return (f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal {self.principal} "
                f"--operation {self.operation.title()} {option} {self.name}{pattern}")


@dataclass(frozen=True)
class Principals:
    """The principal of each component (``User:<name>``: a SCRAM user or a certificate's CN)."""

    worker: str = "User:worker"
    publisher: str = "User:publisher"
    scheduler: str = "User:scheduler"
    api: str = "User:api"
    requester: str = "User:requester"


@dataclass(frozen=True)
class Groups:
    """Consumer group ids (the defaults of ``connector-host run``/``schedule`` and ``publisher-360learning run``)."""

    worker: str = "connector-host"
    publisher: str = "publisher-360learning"
    scheduler: str = "connector-host-scheduler"


def grants(topics: Topics, principals: Principals = Principals(), groups: Groups = Groups()) -> list[Grant]:
    """Every grant the host's components need (see the table above)."""
    t, p, g = topics, principals, groups
    ledger = ledger_topic(topics, groups.publisher)
    out: list[Grant] = []

    def allow(principal: str, operation: str, resource: str, names: Iterable[str], prefixed: bool = False) -> None:
        out.extend(Grant(principal, resource, name, operation, prefixed) for name in names)

    allow(p.worker, "READ", "topic", [t.requests, t.state, t.rate, t.connections])
    allow(p.worker, "WRITE", "topic", [t.requests, t.courses, t.learner_stats, t.status, t.dead_letter, t.state,
                                       t.rate])
    allow(p.worker, "READ", "group", [g.worker])
    allow(p.worker, "WRITE", "transactional_id", [f"{g.worker}."], prefixed=True)

    allow(p.publisher, "READ", "topic", [t.courses, t.learner_stats, t.parked, t.connections, ledger])
    allow(p.publisher, "WRITE", "topic", [t.dead_letter, t.parked, ledger])
    allow(p.publisher, "CREATE", "topic", [ledger])
    allow(p.publisher, "READ", "group", [g.publisher])

    allow(p.scheduler, "READ", "topic", [t.scheduler, t.connections])
    allow(p.scheduler, "WRITE", "topic", [t.requests, t.scheduler])
    allow(p.scheduler, "READ", "group", [g.scheduler])

    allow(p.api, "READ", "topic", [t.connections, t.status, t.dead_letter, t.audit, t.requests, t.parked, ledger])
    allow(p.api, "WRITE", "topic", [t.connections, t.requests, t.status, t.audit])
    allow(p.api, "WRITE", "transactional_id", [CONTROL_TRANSACTIONAL_ID + t.connections])

    allow(p.requester, "READ", "topic", [t.status])
    allow(p.requester, "WRITE", "topic", [t.requests])
    return out


def apply(admin: KafkaConfig, topics: Topics, principals: Principals = Principals(), groups: Groups = Groups(),
          *, replication_factor: int = 1) -> list[Grant]:
    """Create the host's topics where missing and every grant, connected as ``admin`` (a super
    user); returns the grants. Granting twice changes nothing."""
    ensure_topics(admin, topic_specs(topics), replication_factor=replication_factor)
    wanted = grants(topics, principals, groups)
    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional_id": ResourceType.TRANSACTIONAL_ID}
    acls = [ACL(g.principal, "*", ACLOperation[g.operation], ACLPermissionType.ALLOW,
                ResourcePattern(kinds[g.resource], g.name,
                                ACLResourcePatternType.PREFIXED if g.prefixed else ACLResourcePatternType.LITERAL))
            for g in wanted]
    client = kafka_client(admin, KafkaAdminClient, request_timeout_ms=30_000)
    try:
        result = client.create_acls(acls)
        failed = result.get("failed") or []
        if failed:
            acl, error = failed[0]
            raise TransportError(f"{len(failed)} ACLs not created; first: {acl}: {type(error).__name__}: {error}")
        _await_in_force(client, set(acls), timeout_s=30)
    except KafkaError as exc:
        raise TransportError(f"ACLs not created: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
    return wanted


def _await_in_force(client: Any, acls: set[Any], *, timeout_s: float) -> None:
    """Wait until the broker's authorizer applies ``acls`` (they reach it through the metadata log
    a moment after the controller accepted them: a client right after would be refused)."""
    every = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                      ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
    deadline = time.monotonic() + timeout_s
    while True:
        found, _error = client.describe_acls(every)
        missing = acls - set(found or ())
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TransportError(f"{len(missing)} ACLs created but not in force after {timeout_s:.0f}s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hostspec.transport.acls", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["print", "apply"],
                        help="print: the grants as kafka-acls.sh commands; apply: create topics and grants (as a "
                             "super user, with the KAFKA_* settings of the environment)")
    parser.add_argument("--topic-prefix", default=None, help="default $CONNECTOR_HOST_TOPIC_PREFIX")
    for f in fields(Groups):
        parser.add_argument(f"--{f.name}-group", default=f.default, help=f"the {f.name}'s group id (default %(default)s)")
    for f in fields(Principals):
        parser.add_argument(f"--{f.name}-principal", default=f.default, help="default %(default)s")
    args = parser.parse_args(argv)
    topics = topics_from_env(args.topic_prefix)
    principals = Principals(**{f.name: getattr(args, f"{f.name}_principal") for f in fields(Principals)})
    groups = Groups(**{f.name: getattr(args, f"{f.name}_group") for f in fields(Groups)})
    if args.action == "print":
        for grant in grants(topics, principals, groups):
            print(grant.command())
        return 0
    config = KafkaConfig.from_env(client_id="connector-host-acls")
    try:
        done = apply(config, topics, principals, groups)
    except HostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(topic_specs(topics))} topics present, {len(done)} grants in place for "
          f"{', '.join(sorted({g.principal for g in done}))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
