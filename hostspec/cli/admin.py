"""``connector-host api``, ``connector-host connections ...`` and ``connector-host deadletters ...``:
the control plane from a shell (:mod:`hostspec.control.plane`), and its HTTP server
(:mod:`hostspec.control.api`)."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
from datetime import datetime
from typing import Any, Callable

from hostspec.config import documents as docs
from hostspec.control import redrive
from hostspec.ops.console import UsageError, port
from hostspec.config.connections import read_toml_tables
from hostspec.config.targets import target_check
from hostspec.errors import SettingsRefused
from hostspec.engine.plugins import HostPluginManager

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
Options = Callable[[argparse.ArgumentParser], None]


def _actor(args: argparse.Namespace) -> str:
    return f"cli:{os.environ.get('USER') or getpass.getuser()}"


def control_plane(args: argparse.Namespace, plugins: HostPluginManager):
    """The control plane on the configured Kafka (the control topic read to its end)."""
    from hostspec.cli.main import _kafka_config, _topics, settings_policy
    from hostspec.control.plane import ControlPlane
    from hostspec.config.control_topic import ConnectionLog, ConnectionWriter

    config, topics = _kafka_config(args), _topics(args)
    policy = settings_policy(args)
    writer = ConnectionWriter(config, topics.connections)    # first: it ends what a killed writer left open
    log = ConnectionLog.open(config, topics, policy=policy)
    writer.attach(log)
    return ControlPlane(plugins, config, topics, policy, log=log, writer=writer, target_check=target_check(policy))


# -- connections -----------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    """Store every connection of a connections file (and its targets file) on the control topic."""
    from pathlib import Path
    entries = read_toml_tables(Path(args.file), "connections", "NAME")
    targets = read_toml_tables(Path(args.targets), "targets", "CONNECTION") if args.targets else {}
    plane = control_plane(args, plugins)
    try:
        refused = import_connections(plane, entries, targets, actor=_actor(args))
    finally:
        plane.close()
    print(f"{len(entries) - refused} connections stored, {refused} refused", file=sys.stderr)
    return EXIT_OK if not refused else EXIT_CONFIG


def import_connections(plane: Any, entries: dict[str, Any], targets: dict[str, Any], *, actor: str) -> int:
    """Store the connections of a file's tables (and their targets) through ``plane``, each
    checked as the API checks it; prints each outcome; returns how many were refused."""
    refused = 0
    for name, entry in sorted(entries.items()):
        body = docs.document(name, entry, revision=1, changed_by="-", now=plane.clock(), target=targets.get(name))
        body = {k: v for k, v in body.items() if k not in ("connection", "revision", "deleted", "changed_by",
                                                            "changed_at")}
        try:
            change = plane.put(name, body, actor=actor)
        except SettingsRefused as exc:
            refused += 1
            print(f"refused {name}: {exc}", file=sys.stderr)
            continue
        print(f"{'created' if change.created else 'replaced'} {name} (revision {change.doc['revision']})")
    return refused


def cmd_list(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plane = control_plane(args, plugins)
    try:
        rows = plane.connections()
    finally:
        plane.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        print(f"{r['connection']:<32} {r['provider']:<20} {r['tenant']:<16} rev {r['revision']:<4}"
              f"{' paused' if r['paused'] else ''}  {r['changed_at']} {r['changed_by']}")
    print(f"{len(rows)} connections", file=sys.stderr)
    return EXIT_OK


def cmd_show(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plane = control_plane(args, plugins)
    try:
        print(json.dumps(plane.connection(args.name), indent=2))
    finally:
        plane.close()
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plane = control_plane(args, plugins)
    try:
        doc = plane.delete(args.name, actor=_actor(args))
    finally:
        plane.close()
    print(f"deleted {args.name} (revision {doc['revision']})")
    return EXIT_OK


# -- dead letters ----------------------------------------------------------------------------------
def _filter(args: argparse.Namespace) -> redrive.Filter:
    return redrive.Filter(connection=args.connection, stage=args.stage, reason=args.reason, since=args.since,
                          until=args.until, ids=frozenset(getattr(args, "id", None) or ()))


def cmd_deadletters(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plane = control_plane(args, plugins)
    try:
        if args.action == "redrive":
            if not (args.connection or args.id):
                raise UsageError("redrive needs --connection or --id (re-driving every dead letter is not a default)")
            plan = plane.redrive(_filter(args), actor=_actor(args))
            for dl_id, why in plan.not_redrivable.items():
                print(f"not re-driven {dl_id}: {why}", file=sys.stderr)
            print(f"{len(plan.redriven)} dead letters re-driven by {len(plan.requests) + len(plan.raw_requests)} "
                  f"requests")
            return EXIT_OK if not plan.not_redrivable else EXIT_FAILED
        letters = plane.dead_letters(_filter(args), limit=args.limit)
    finally:
        plane.close()
    if args.action == "show":
        for dl in letters:
            print(json.dumps({"id": dl.id, "time": dl.time, "partition": dl.partition, "offset": dl.offset,
                              "data": dl.data}, indent=2))
        return EXIT_OK if letters else EXIT_FAILED
    if args.json:
        print(json.dumps([dl.summary() for dl in letters], indent=2))
        return EXIT_OK
    for dl in letters:
        d = dl.summary()
        print(f"{d['time'][:19]}  {d['id']}  {d['connection'] or '-':<24} {d['stage']:<10} {d['reason'][:80]}")
    print(f"{len(letters)} dead letters", file=sys.stderr)
    return EXIT_OK


# -- the API server --------------------------------------------------------------------------------
def api_tokens(args: argparse.Namespace):
    """The API's principals: the tokens file, and ``--token`` references (platform admins)."""
    from hostspec.control.api import parse_token
    from hostspec.control.tokens import Tokens

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
    from hostspec.control.api import make_app
    from hostspec.control.rate import TenantRate
    from hostspec.control.audit import KafkaAudit
    from hostspec.ops.health import HttpServer

    tokens = api_tokens(args)
    plane = control_plane(args, plugins)
    trail = KafkaAudit(plane.kafka, plane.topics.audit)
    app = make_app(plane, tokens, trail=trail, rate=TenantRate(args.tenant_rate, args.tenant_burst))
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
        trail.close()
        plane.close()
    return EXIT_OK


def cmd_api_token(args: argparse.Namespace, _plugins: HostPluginManager) -> int:
    """Add or rotate (a new token for the name) or revoke a token of a tokens file; a running API
    reads the change at its next call."""
    from pathlib import Path

    from hostspec.control.tokens import PLATFORM_ADMIN, write_token
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


def add_parsers(sub: Any, kafka_options: Options, instant: Callable[[str], datetime]) -> None:
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
    p.set_defaults(func=cmd_api, default_log_level="INFO")

    p = sub.add_parser("api-token", help="add, rotate or revoke an admin API token in a tokens file (prints a new "
                                         "token once; stores its SHA-256)")
    p.add_argument("name", help="the principal's name (recorded as the author of its changes: api:NAME)")
    p.add_argument("--file", required=True, help="the tokens file (created when missing)")
    p.add_argument("--role", choices=["platform_admin", "tenant_admin", "tenant_trigger"])
    p.add_argument("--tenant", help="the tenant of a tenant_admin or tenant_trigger")
    p.add_argument("--revoke", action="store_true", help="remove the name's token")
    p.set_defaults(func=cmd_api_token)

    p = sub.add_parser("connections", help="the connections of the control topic: import, list, show, delete")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("import", help="store the connections of a connections file (and their targets)")
    q.add_argument("file")
    q.add_argument("--targets", metavar="FILE", help="the publisher's targets file: each target goes with its "
                                                     "connection")
    kafka_options(q)
    q.set_defaults(func=cmd_import)
    q = actions.add_parser("list", help="every connection")
    q.add_argument("--json", action="store_true")
    kafka_options(q)
    q.set_defaults(func=cmd_list)
    for action, func, text in (("show", cmd_show, "a connection's document"),
                               ("delete", cmd_delete, "delete a connection")):
        q = actions.add_parser(action, help=text)
        q.add_argument("name")
        kafka_options(q)
        q.set_defaults(func=func)

    p = sub.add_parser("deadletters", help="dead letters: list, show, redrive (send again after a fix)")
    p.add_argument("action", choices=["list", "show", "redrive"])
    p.add_argument("--connection", metavar="NAME")
    p.add_argument("--stage", choices=["request", "mapping", "validation", "delivery"])
    p.add_argument("--reason", metavar="TEXT", help="only reasons containing TEXT")
    p.add_argument("--since", type=instant, help="only dead letters written at or after this ISO date")
    p.add_argument("--until", type=instant, help="only dead letters written before this ISO date")
    p.add_argument("--id", action="append", metavar="ID", help="only this dead letter (its event id), repeatable")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    kafka_options(p)
    p.set_defaults(func=cmd_deadletters)


__all__ = ["add_parsers", "api_tokens", "control_plane", "import_connections"]
