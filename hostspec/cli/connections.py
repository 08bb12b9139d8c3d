"""``connector-host connections import|list|show|delete``: the connections of the control topic."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hostspec.cli import admin
from hostspec.cli.options import EXIT_CONFIG, EXIT_OK, kafka_options
from hostspec.config import documents as docs
from hostspec.config.connections import read_toml_tables
from hostspec.engine.plugins import HostPluginManager
from hostspec.errors import SettingsRefused


def cmd_import(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    """Store every connection of a connections file (and its targets file) on the control topic."""
    entries = read_toml_tables(Path(args.file), "connections", "NAME")
    targets = read_toml_tables(Path(args.targets), "targets", "CONNECTION") if args.targets else {}
    plane = admin.control_plane(args, plugins, create_topics=True)
    try:
        refused = import_connections(plane, entries, targets, actor=admin.actor(args))
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
    plane = admin.control_plane(args, plugins)
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
    plane = admin.control_plane(args, plugins)
    try:
        print(json.dumps(plane.connection(args.name), indent=2))
    finally:
        plane.close()
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plane = admin.control_plane(args, plugins)
    try:
        doc = plane.delete(args.name, actor=admin.actor(args))
    finally:
        plane.close()
    print(f"deleted {args.name} (revision {doc['revision']})")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("connections", help="the connections of the control topic: import, list, show, delete")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("import", help="store the connections of a connections file (and their targets)")
    q.add_argument("file", help="the connections file (TOML, one [connections.NAME] table each)")
    q.add_argument("--targets", metavar="FILE", help="the publisher's targets file: each target goes with its "
                                                     "connection")
    kafka_options(q)
    q.set_defaults(func=cmd_import)
    q = actions.add_parser("list", help="every connection")
    q.add_argument("--json", action="store_true", help="print the connections as JSON")
    kafka_options(q)
    q.set_defaults(func=cmd_list)
    for action, func, text in (("show", cmd_show, "a connection's document"),
                               ("delete", cmd_delete, "delete a connection")):
        q = actions.add_parser(action, help=text)
        q.add_argument("name", help="the connection's name")
        kafka_options(q)
        q.set_defaults(func=func)
