"""``connector-host deadletters list|show|redrive``: the dead letters, and sending them again
after a fix (:mod:`hostspec.control.redrive`)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hostspec.cli import admin
from hostspec.cli.options import EXIT_FAILED, EXIT_OK, instant, kafka_options
from hostspec.control import redrive
from hostspec.engine.plugins import HostPluginManager
from hostspec.ops.console import UsageError


def _filter(args: argparse.Namespace) -> redrive.Filter:
    return redrive.Filter(connection=args.connection, stage=args.stage, reason=args.reason, since=args.since,
                          until=args.until, ids=frozenset(getattr(args, "id", None) or ()))


def cmd_deadletters(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plane = admin.control_plane(args, plugins)
    try:
        if args.action == "redrive":
            if not (args.connection or args.id):
                raise UsageError("redrive needs --connection or --id (re-driving every dead letter is not a default)")
            plan = plane.redrive(_filter(args), actor=admin.actor(args), force=args.force)
            for dl_id, why in plan.not_redrivable.items():
                print(f"not re-driven {dl_id}: {why}", file=sys.stderr)
            for dl_id, mark in plan.already_redriven.items():
                print(f"already re-driven {dl_id} at {mark['at']} into request {mark['request_id'] or '-'} "
                      f"(--force sends it again)", file=sys.stderr)
            print(f"{len(plan.redriven)} dead letters re-driven by {len(plan.requests) + len(plan.raw_requests)} "
                  f"requests")
            return EXIT_OK if not plan.not_redrivable else EXIT_FAILED
        letters = plane.read_dead_letters(_filter(args), limit=args.limit)     # whole, from the topic
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


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("deadletters", help="dead letters: list, show, redrive (send again after a fix)")
    p.add_argument("action", choices=["list", "show", "redrive"],
                   help="list: a line each; show: each in full; redrive: send them again")
    p.add_argument("--connection", metavar="NAME", help="only this connection's dead letters")
    p.add_argument("--stage", choices=["request", "mapping", "validation", "delivery"],
                   help="only dead letters of this stage")
    p.add_argument("--reason", metavar="TEXT", help="only reasons containing TEXT")
    p.add_argument("--since", type=instant, help="only dead letters written at or after this ISO date")
    p.add_argument("--until", type=instant, help="only dead letters written before this ISO date")
    p.add_argument("--id", action="append", metavar="ID", help="only this dead letter (its event id), repeatable")
    p.add_argument("--limit", type=int, default=100, help="the most recent dead letters shown (default 100)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--force", action="store_true", help="redrive: send again dead letters already re-driven")
    kafka_options(p)
    p.set_defaults(func=cmd_deadletters)
