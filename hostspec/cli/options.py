"""What every command group shares: exit codes, option groups (Kafka, a sync request, metrics)
and the metrics server they switch on."""
from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import datetime, timezone
from typing import Any

from hostspec.requests import SyncRequest
from hostspec.ops import health
from hostspec.ops.console import port

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_PARTIAL = 0, 1, 2, 3
OUTCOME_EXIT = {"completed": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED, "skipped": EXIT_OK}


def exit_code(outcome: str, error: dict[str, str] | None) -> int:
    """A run's exit code: a configuration error (a secret not set, settings refused) is 2."""
    if outcome == "failed" and error and error.get("kind") in ("config", "provider_config"):
        return EXIT_CONFIG
    return OUTCOME_EXIT[outcome]


def instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or date-time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def kafka_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT,...",
                   help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP or 127.0.0.1:9092)")
    p.add_argument("--topic-prefix", help="prefix of every topic name (default $CONNECTOR_HOST_TOPIC_PREFIX)")


def request_options(p: argparse.ArgumentParser, mode_default: str = "incremental") -> None:
    p.add_argument("--scope", choices=["catalog", "progress", "all"], default="all",
                   help="catalog: courses; progress: learner stats; all (default): both")
    p.add_argument("--mode", choices=["incremental", "full"], default=mode_default,
                   help=f"full: re-emit everything, even unchanged (default {mode_default})")
    p.add_argument("--dry-run", action="store_true", help="count what would be emitted; emit only statuses")
    p.add_argument("--since", type=instant, help="replay progress with activity at or after this ISO date")
    p.add_argument("--until", type=instant, help="replay progress with activity before this ISO date "
                                                 "(exclusive: [since, until))")
    p.add_argument("--learner", action="append", default=[], metavar="ID",
                   help="only this learner (provider id or email); repeatable")
    p.add_argument("--course", action="append", default=[], metavar="ID",
                   help="only this course (external id); repeatable")


def metrics_options(p: argparse.ArgumentParser) -> None:
    env_port = os.environ.get("CONNECTOR_HOST_METRICS_PORT")
    p.add_argument("--metrics-port", type=port, default=int(env_port) if env_port else None, metavar="PORT",
                   help="serve Prometheus metrics on this port (default $CONNECTOR_HOST_METRICS_PORT, else off)")
    p.add_argument("--metrics-addr", default="0.0.0.0", help="address of the metrics server (default 0.0.0.0)")


def serve_metrics(args: argparse.Namespace, checks: Any = lambda: {}) -> None:
    """``/metrics``, ``/health`` and ``/ready`` on ``--metrics-port`` (:mod:`hostspec.ops.health`)."""
    if getattr(args, "metrics_port", None) is not None:
        server = health.serve(args.metrics_port, args.metrics_addr, checks)
        print(f"connector-host: metrics, health and readiness on http://{args.metrics_addr}:{server.port}"
              f"/metrics, /health, /ready", file=sys.stderr)


def sync_request(args: argparse.Namespace, connection: str, provider: str, requested_by: str) -> SyncRequest:
    """The request the options of :func:`request_options` describe."""
    return SyncRequest(request_id=str(uuid.uuid4()), connection=connection, provider=provider, scope=args.scope,
                       requested_by=requested_by, mode=args.mode, dry_run=args.dry_run, since=args.since,
                       until=args.until, learners=tuple(args.learner) or None, courses=tuple(args.course) or None,
                       allow_mass_removal=getattr(args, "allow_mass_removal", False))
