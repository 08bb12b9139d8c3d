"""``connector-host status``, ``replay``, ``export-xapi`` and ``request-sync``: runs requested of
the workers and followed on the status topic, and a run's stats as xAPI statements."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.cli.options import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, OUTCOME_EXIT, exit_code, kafka_options
from hostspec.cli.options import request_options, sync_request
from hostspec.cli.progress import progress_line
from hostspec.cli.sources import connection_store, kafka_config, topics
from hostspec.engine.plugins import HostPluginManager
from hostspec.transport.follower import Follower
from hostspec.transport.producers import publish
from hostspec.xapi import to_statement


# -- request-sync and replay -----------------------------------------------------------------------
def cmd_request_sync(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    plugins.provider(args.provider)  # unknown provider: say so before publishing anything
    config, named = kafka_config(args), topics(args)
    request = sync_request(args, args.connection, args.provider, args.requested_by)
    follower = Follower(config, named.status) if args.wait else None
    try:
        publish(config, named.requests, [request.to_event(datetime.now(timezone.utc))])
        print(f"requested {args.scope} sync of {args.connection} ({args.provider}): request {request.request_id}")
        if follower is None:
            return EXIT_OK
        deadline = time.monotonic() + args.timeout
        for msg in follower.messages(deadline):
            try:
                status = ev.parse_event(msg.value or b"", expected_type=ev.SYNC_STATUS).data
            except ValidationError:
                continue
            if status["request_id"] != request.request_id:
                continue
            print(progress_line(status), flush=True)
            if status["phase"] in OUTCOME_EXIT:
                return exit_code(status["phase"], status.get("error"))
        print(f"connector-host: no final status within {args.timeout:.0f}s (is a worker running?)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if follower is not None:
            follower.close()


def cmd_replay(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    """A targeted re-run of one connection, followed to its end."""
    raw = connection_store(args).raw(args.connection)
    args.provider, args.wait = raw.get("provider"), True
    return cmd_request_sync(args, plugins)


# -- status ----------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    """Recent runs from the status topic, newest last."""
    follower = Follower(kafka_config(args), topics(args).status, from_start=True)
    runs: dict[str, dict] = {}
    try:
        for msg in follower.to_end(timeout_s=args.timeout):
            try:
                status = ev.parse_event(msg.value or b"", expected_type=ev.SYNC_STATUS).data
            except ValidationError:
                continue
            if args.connection and status["connection"] != args.connection:
                continue
            # every status of a run repeats its started_at: the latest one stands for the run
            runs[status["run_id"] or status["request_id"] or f"{msg.partition}/{msg.offset}"] = status
    finally:
        follower.close()
    recent = sorted(runs.values(), key=lambda r: r["started_at"] or r["ended_at"] or "")[-args.limit:]
    if args.json:
        json.dump(recent, sys.stdout, indent=2)
        print()
        return EXIT_OK
    for r in recent:
        c = r["counts"]
        print(f"{(r['started_at'] or '-')[:19]}  {r['connection'] or '-':<20} {r['scope'] or '-':<8} "
              f"{r['phase']:<9}{' (dry run)' if r['dry_run'] else ''}  courses {c['courses_emitted']} "
              f"(+{c['courses_unchanged']} unchanged, {c['courses_removed']} removed)  stats {c['stats_emitted']} "
              f"(+{c['stats_unchanged']} unchanged)  rejected {c['rejected']}"
              + (f"  error {r['error']['kind']}: {r['error']['message']}" if r["error"] else ""))
    print(f"{len(recent)} runs", file=sys.stderr)
    return EXIT_OK


# -- export-xapi -----------------------------------------------------------------------------------
def cmd_export_xapi(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    target = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    launch: dict[str, str] = {}
    exported = skipped = 0
    try:
        for line in source:
            if not line.strip():
                continue
            try:
                event = ev.parse_event(line)
            except ValidationError:
                skipped += 1
                continue
            if event.type == ev.COURSE_UPSERTED:
                launch[event.data["external_id"]] = event.data["launch_url"]
            elif event.type == ev.LEARNER_STAT_UPSERTED:
                statement = to_statement(event.data, launch_url=launch.get(event.data["course_external_id"]))
                target.write(json.dumps(statement, separators=(",", ":")) + "\n")
                exported += 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if target is not sys.stdout:
            target.close()
    print(f"{exported} xAPI statements written" + (f", {skipped} invalid lines skipped" if skipped else ""),
          file=sys.stderr)
    return EXIT_OK if not skipped else EXIT_PARTIAL


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("status", help="recent runs and their counts, from the status topic")
    kafka_options(p)
    p.add_argument("--connection", metavar="NAME", help="only this connection's runs")
    p.add_argument("--limit", type=int, default=20, help="the most recent runs shown (default 20)")
    p.add_argument("--timeout", type=float, default=30, help="seconds to read the status topic (default 30)")
    p.add_argument("--json", action="store_true", help="print the runs' last statuses as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("replay", help="re-run a connection (range, learners, courses, dry run) and wait for it")
    kafka_options(p)
    p.add_argument("--connection", required=True, metavar="NAME", help="the connection to re-run")
    request_options(p, mode_default="full")
    p.add_argument("--allow-mass-removal", action="store_true",
                   help="remove the courses absent from the listing even when the removal guard held them "
                        "(more than the connection's max_removal_share, or all of them)")
    p.add_argument("--requested-by", default=f"replay:{os.environ.get('USER', 'unknown')}",
                   help="who asks, in the request and its statuses (default replay:$USER)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the result (default 3600)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("export-xapi", help="learner-stat events (JSON lines) as xAPI statements (cmi5 verbs)")
    p.add_argument("file", help="events file, - for stdin")
    p.add_argument("--out", default="-", help="statements file, one per line (default stdout)")
    p.set_defaults(func=cmd_export_xapi)

    p = sub.add_parser("request-sync", help="publish a sync request; with --wait, follow it to its end")
    kafka_options(p)
    p.add_argument("provider", help="the connection's provider")
    p.add_argument("--connection", required=True, metavar="NAME", help="the connection to sync")
    request_options(p)
    p.add_argument("--requested-by", default=f"cli:{os.environ.get('USER', 'unknown')}",
                   help="who asks, in the request and its statuses (default cli:$USER)")
    p.add_argument("--wait", action="store_true", help="print progress until the run completes")
    p.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
    p.set_defaults(func=cmd_request_sync)
