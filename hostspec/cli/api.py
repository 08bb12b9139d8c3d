"""``connector-host api`` and ``api-token``: the control plane's HTTP server
(:mod:`hostspec.control.api`) and the tokens that reach it."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hostspec.cli import admin
from hostspec.cli.options import EXIT_OK, kafka_options
from hostspec.control.api import make_app, parse_token
from hostspec.control.audit import KafkaAudit
from hostspec.control.delivery import DeliveryFollower
from hostspec.control.rate import TenantRate
from hostspec.control.tokens import PLATFORM_ADMIN, Tokens, write_token
from hostspec.engine.plugins import HostPluginManager
from hostspec.ops.console import UsageError, port
from hostspec.ops.health import HttpServer
from hostspec.topics import ledger_topic
from hostspec.transport.acls import Groups
from hostspec.transport.liveness import BrokerProbe


def api_tokens(args: argparse.Namespace) -> Tokens:
    """The API's principals: the tokens file, and ``--token`` references (platform admins)."""
    specs = list(args.token) or [t for t in os.environ.get("CONNECTOR_HOST_API_TOKENS", "").split(",") if t]
    if not specs and not args.tokens_file:
        raise UsageError("give a tokens file (--tokens-file, see `connector-host api-token`) or at least one --token "
                         "NAME=env:VARIABLE (or NAME=file:/path): the API refuses anonymous changes")
    refs = dict(parse_token(t) for t in specs)
    tokens = Tokens(refs, args.tokens_file)
    tokens.check()               # a dangling reference fails now, with its name, not at the first call
    for name in refs:
        print(f"connector-host: --token {name} is a platform admin (every tenant's connections and the audit "
              f"trail); give tenant tokens in a tokens file (--tokens-file, docs/security.md)", file=sys.stderr)
    return tokens


def cmd_api(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    tokens = api_tokens(args)
    plane = admin.control_plane(args, plugins, create_topics=True)
    plane.start_index()          # runs, requests and dead letters read once now, then followed
    trail = KafkaAudit(plane.kafka, plane.topics.audit)
    groups = args.publisher_group or [g for g in os.environ.get("CONNECTOR_HOST_PUBLISHER_GROUPS", "").split(",") if g]
    follower = DeliveryFollower(plane.kafka, plane.topics,
                                [ledger_topic(plane.topics, g) for g in groups or [Groups().publisher]]).start()
    plane.delivery = follower.board
    broker = BrokerProbe(plane.kafka).start()     # /ready: 503 within seconds of Kafka going away
    app = make_app(plane, tokens, trail=trail, rate=TenantRate(args.tenant_rate, args.tenant_burst),
                   kafka=broker.alive)
    server = HttpServer(app, args.port, args.addr, threads=args.threads)
    print(f"connector-host: admin API on http://{args.addr}:{server.port}/ ({tokens.describe()}; audit on "
          f"{trail.topic})", file=sys.stderr)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server.start()
    try:
        stopped.wait()
    finally:
        server.close()
        broker.close()
        follower.close()
        trail.close()
        plane.close()
    return EXIT_OK


def cmd_api_token(args: argparse.Namespace, _plugins: HostPluginManager) -> int:
    """Add or rotate (a new token for the name) or revoke a token of a tokens file; a running API
    reads the change at its next call."""
    if args.revoke:
        write_token(Path(args.file), args.name, revoke=True)
        print(f"revoked {args.name} in {args.file}", file=sys.stderr)
        return EXIT_OK
    if args.role is None:
        raise UsageError("give --role (platform_admin, tenant_admin, tenant_trigger) or --revoke")
    if (args.role == PLATFORM_ADMIN) != (args.tenant is None):
        raise UsageError("a tenant role needs --tenant; a platform_admin takes none")
    token = write_token(Path(args.file), args.name, role=args.role, tenant=args.tenant)
    print(token)                 # shown once: only its SHA-256 is stored
    print(f"{args.name} ({args.role}{f' of {args.tenant}' if args.tenant else ''}) written to {args.file}; the token "
          f"above is shown once", file=sys.stderr)
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("api", help="the admin HTTP API (connections, syncs, dead letters, health)")
    kafka_options(p)
    p.add_argument("--port", type=port, default=int(os.environ.get("CONNECTOR_HOST_API_PORT", "8083")),
                   help="port (default $CONNECTOR_HOST_API_PORT or 8083)")
    p.add_argument("--addr", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--token", action="append", default=[], metavar="NAME=env:VAR",
                   help="a bearer token by reference (NAME=env:VARIABLE or NAME=file:/path), repeatable; default "
                        "$CONNECTOR_HOST_API_TOKENS (comma-separated)")
    p.add_argument("--tokens-file", default=os.environ.get("CONNECTOR_HOST_API_TOKENS_FILE") or None, metavar="FILE",
                   help="hashed tokens with their role and tenant, re-read when it changes (default "
                        "$CONNECTOR_HOST_API_TOKENS_FILE; written by `connector-host api-token`)")
    p.add_argument("--tenant-rate", type=float, default=float(os.environ.get("CONNECTOR_HOST_API_TENANT_RATE", "10")),
                   help="requests per second of each tenant's tokens, 0 for no limit (default "
                        "$CONNECTOR_HOST_API_TENANT_RATE or 10); past it: 429 with Retry-After")
    p.add_argument("--tenant-burst", type=int, default=None, help="requests a tenant may make at once (default twice "
                                                                   "the rate)")
    p.add_argument("--threads", type=int, default=8, help="request threads (default 8)")
    p.add_argument("--publisher-group", action="append", default=[], metavar="GROUP",
                   help="a publisher's consumer group, whose ledger journal (<group>.ledger) tells what it delivered "
                        "(GET /connections/NAME/delivery); repeatable (default $CONNECTOR_HOST_PUBLISHER_GROUPS, "
                        "comma-separated, or publisher-360learning)")
    p.set_defaults(func=cmd_api, default_log_level="INFO")

    p = sub.add_parser("api-token", help="add, rotate or revoke an admin API token in a tokens file (prints a new "
                                         "token once; stores its SHA-256)")
    p.add_argument("name", help="the principal's name (recorded as the author of its changes: api:NAME)")
    p.add_argument("--file", required=True, help="the tokens file (created when missing)")
    p.add_argument("--role", choices=["platform_admin", "tenant_admin", "tenant_trigger"],
                   help="platform_admin: every tenant and the audit trail; tenant_admin: one tenant's "
                        "connections, syncs and dead letters; tenant_trigger: one tenant's syncs and runs")
    p.add_argument("--tenant", help="the tenant of a tenant_admin or tenant_trigger")
    p.add_argument("--revoke", action="store_true", help="remove the name's token")
    p.set_defaults(func=cmd_api_token)
