"""``publisher-360learning``: deliver the host's events to 360Learning.

Commands: ``run`` (the Kafka consumer), ``check`` (credentials, group and author of a target),
``ledger`` (what was delivered, parked or refused). The whole path on sandboxes, in one process,
is ``learning-demo`` (:mod:`learning_demo`).

Exit codes: 0 success; 1 failure; 2 usage or configuration error; 3 some records not delivered.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, Sequence

from hostspec.ops.console import byte_size, guarded, log_level, plain, port
from hostspec.ops.logs import setup_logging

from . import __version__, contract
from .budget import DEFAULT_BUDGET
from .errors import Learning360Error

DEFAULT_TARGETS = "targets.toml"
CONTROL_TOPIC = "kafka"     # --targets kafka: the targets of the control topic's connections
DEFAULT_LEDGER = ".publisher-360learning/ledger.sqlite"


def _targets_path(args: argparse.Namespace) -> str:
    return args.targets or os.environ.get("PUBLISHER_TARGETS", DEFAULT_TARGETS)


def _targets(args: argparse.Namespace):
    from .settings import load_targets
    return load_targets(_targets_path(args))


def _live_targets(args: argparse.Namespace, kafka: Any, topics: Any) -> Any:
    """The targets file, or with ``--targets kafka`` the targets of the control topic's
    connections (followed live, held to the settings policy: ``--policy``, ``--allow-sandboxes``)."""
    from .settings import TargetsFile, TargetsFromTopic
    if _targets_path(args) != CONTROL_TOPIC:
        return TargetsFile(_targets_path(args))
    from hostspec.config.policy import SettingsPolicy
    from hostspec.config.control_topic import ConnectionLog
    policy = SettingsPolicy.from_env(args.policy, allow_sandboxes=True if args.allow_sandboxes else None)
    return TargetsFromTopic(ConnectionLog.open(kafka, topics), policy)


def _names(value: str | None) -> frozenset[str] | None:
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    return names or None


def _ledger(args: argparse.Namespace):
    from .ledger import Ledger
    return Ledger(args.ledger or os.environ.get("PUBLISHER_LEDGER", DEFAULT_LEDGER))


def cmd_run(args: argparse.Namespace) -> int:
    from hostspec.transport.config import KafkaConfig, topics_from_env

    from .delivery import Deliverer
    from .service import PublisherService, ServiceSettings

    kafka = KafkaConfig.from_env(bootstrap_servers=args.bootstrap_servers, client_id="publisher-360learning")
    targets = _live_targets(args, kafka, topics_from_env(args.topic_prefix))
    deliverer = Deliverer(targets.current(), _ledger(args), max_park_days=args.max_park_days)
    settings = ServiceSettings(group_id=args.group_id, batch_size=args.batch_size, batch_seconds=args.batch_seconds,
                               retry_interval_s=args.retry_interval, session_timeout_ms=args.session_timeout_ms,
                               instance=args.instance, concurrency=args.concurrency, lane_cap=args.lane_cap,
                               memory_budget=args.memory_budget, company_lanes=args.company_lanes,
                               revoke_wait_s=args.revoke_wait,
                               connections=_names(args.connections), tenants=_names(args.tenants),
                               except_tenants=_names(args.except_tenants) or frozenset(),
                               ledger_topic=args.ledger_topic)
    service = PublisherService(deliverer, kafka, topics_from_env(args.topic_prefix), settings,
                               targets=targets.current)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    if args.metrics_port is not None:
        from hostspec.ops import health
        server = health.serve(args.metrics_port, args.metrics_addr, service.readiness)
        print(f"publisher-360learning: metrics, health and readiness on http://{args.metrics_addr}:{server.port}"
              f"/metrics, /health, /ready", file=sys.stderr)
    service.run()
    print(f"publisher-360learning: stopped after {service.batches} batches: "
          + ", ".join(f"{k}={v}" for k, v in sorted(service.totals.items()))
          + f"; {service.parked_now} stats parked now", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .delivery import client_for_target

    targets = _targets(args)
    if args.connection not in targets:
        print(f"publisher-360learning: no target {args.connection!r}; known: {', '.join(sorted(targets))}",
              file=sys.stderr)
        return 2
    target = targets[args.connection]
    client = client_for_target(target)
    try:
        author = client.get_json(f"/api/v2/users/{target.author_id}")
        print(f"ok: {target.base_url} accepted client_id {target.client_id!r}; "
              f"author {author.get('mail')} ({author.get('status')})")
        missing = []
        for scope, path in (("integrations:read", contract.INTEGRATIONS), ("tags:read", contract.TAGS),
                            ("courseStats:read", contract.COURSE_STATS)):
            try:
                client.get_json(path)
            except Learning360Error as exc:
                missing.append(f"{scope} ({exc})")
        for line in missing:
            print(f"missing: {line}", file=sys.stderr)
        return 1 if missing else 0
    finally:
        client.close()


def cmd_ledger(args: argparse.Namespace) -> int:
    ledger = _ledger(args)
    rows = ledger.query(connection=args.connection, course=args.course, learner=args.learner, status=args.status,
                        limit=args.limit)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    for row in rows:
        who = f" learner {row['learner']}" if row["learner"] else ""
        print(f"{row['kind']:<8} {row['connection']} course {row['course']}{who}: {row['status']}"
              f" (op {row['operation_id'] or '-'}, 360 id {row['resource_id'] or '-'}, sent {row['sends']}x)"
              + (f"\n         {row['detail']}" if row["detail"] else ""))
    print(f"{len(rows)} records; totals: " + ", ".join(f"{k}={v}" for k, v in sorted(ledger.counts().items())),
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="publisher-360learning", description=plain(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", type=log_level, default=os.environ.get("PUBLISHER_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO (default), WARNING, ERROR")
    parser.add_argument("--log-format", choices=["auto", "json", "text"],
                        default=os.environ.get("PUBLISHER_LOG_FORMAT", "auto"),
                        help="json: one object per line; text: for people; auto (default): text on a terminal")
    sub = parser.add_subparsers(dest="command", required=True)

    def files(p: argparse.ArgumentParser, targets: bool = True) -> None:
        if targets:
            p.add_argument("--targets", metavar="FILE",
                           help=f"targets file (default $PUBLISHER_TARGETS or {DEFAULT_TARGETS}); "
                                f"'{CONTROL_TOPIC}': the targets of the control topic's connections")
        p.add_argument("--ledger", metavar="FILE", help=f"ledger database (default $PUBLISHER_LEDGER or {DEFAULT_LEDGER})")

    p = sub.add_parser("run", help="consume course and stat events from Kafka and deliver them")
    files(p)
    p.add_argument("--policy", metavar="FILE", default=os.environ.get("CONNECTOR_HOST_POLICY"),
                   help="settings policy for targets read from the control topic (--targets kafka)")
    p.add_argument("--allow-sandboxes", action="store_true",
                   help="development switch: targets may point at a sandbox on this machine")
    p.add_argument("--group-id", default="publisher-360learning",
                   help="the consumer group the publishers share (default publisher-360learning)")
    p.add_argument("--batch-size", type=int, default=10_000, metavar="N",
                   help="events per delivery of one connection (default 10000)")
    p.add_argument("--batch-seconds", type=float, default=2.0, metavar="S",
                   help="deliver a connection's events this long after the oldest at the latest (default 2)")
    p.add_argument("--concurrency", type=int, default=4, metavar="N",
                   help="connections delivered at once, each in its own lane (default 4)")
    p.add_argument("--lane-cap", type=int, default=50_000, metavar="N",
                   help="events one connection keeps in memory; more are read again later (default 50000)")
    p.add_argument("--memory-budget", type=byte_size, default=DEFAULT_BUDGET, metavar="BYTES",
                   help="bytes of events all connections keep in memory together (suffix K, M or G); past it the "
                        "biggest lanes leave their newest events in Kafka, read again later (default 512M)")
    p.add_argument("--company-lanes", type=int, default=contract.BULK_CONCURRENCY, metavar="N",
                   help="connections of one company delivered at once, at most its bulk slots "
                        f"(default {contract.BULK_CONCURRENCY})")
    p.add_argument("--revoke-wait", type=float, default=120.0, metavar="S",
                   help="when partitions move to another instance, wait this long for their deliveries to end "
                        "(a delivery left behind writes nothing more; default 120)")
    p.add_argument("--connections", metavar="A,B", help="serve only these connections (a per-company publisher; "
                                                        "use its own --group-id); others are skipped")
    p.add_argument("--tenants", metavar="A,B", help="serve only these tenants (companies); others are skipped")
    p.add_argument("--except-tenants", metavar="A,B",
                   help="serve every tenant but these (the shared group, beside their own publishers)")
    p.add_argument("--ledger-topic", help="compacted topic sharing the ledger between instances "
                                          "(default <topic prefix><group id>.ledger)")
    p.add_argument("--retry-interval", type=float, default=3600, metavar="S",
                   help="retry parked stats this often (default 3600)")
    p.add_argument("--max-park-days", type=float, default=30, metavar="D",
                   help="dead-letter a stat parked longer than this (default 30)")
    p.add_argument("--instance", help="a stable name (e.g. the pod name): static group membership, so a "
                                      "restarted publisher gets its partitions back at once")
    p.add_argument("--session-timeout-ms", type=int, default=10_000,
                   help="a publisher silent longer leaves the group and its partitions move (default 10000)")
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP)")
    p.add_argument("--topic-prefix", help="prefix of every topic (default $CONNECTOR_HOST_TOPIC_PREFIX)")
    env_port = os.environ.get("PUBLISHER_METRICS_PORT")
    p.add_argument("--metrics-port", type=port, default=int(env_port) if env_port else None, metavar="PORT",
                   help="serve Prometheus metrics on this port (default $PUBLISHER_METRICS_PORT, else off)")
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address of the metrics server (default 0.0.0.0)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="check a target's credentials and author against 360Learning")
    files(p)
    p.add_argument("--connection", required=True, metavar="NAME", help="the connection whose target is checked")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("ledger", help="what was delivered, parked or refused, with its history")
    files(p, targets=False)
    p.add_argument("--connection", metavar="NAME", help="only this connection's entries")
    p.add_argument("--course", metavar="EXTERNAL_ID", help="only this course's entries")
    p.add_argument("--learner", metavar="PROVIDER_ID", help="only this learner's entries")
    p.add_argument("--status", choices=["delivered", "failed", "parked", "sent"], help="only entries in this status")
    p.add_argument("--limit", type=int, default=1000, help="the most entries shown (default 1000)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=cmd_ledger)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    # a HostError is configuration (the targets file, a secret reference); 360Learning's refusals fail
    return guarded("publisher-360learning", lambda: args.func(args), failures=(Learning360Error,))


if __name__ == "__main__":
    raise SystemExit(main())
