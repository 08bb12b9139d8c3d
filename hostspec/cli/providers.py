"""``connector-host plugins``, ``check`` and ``sync``: the installed providers, a connection's
check, and one sync run here, its events written as JSON lines."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import uuid
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any, Mapping

from hostspec.cli.options import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, exit_code, metrics_options, request_options
from hostspec.cli.options import serve_metrics, sync_request
from hostspec.cli.progress import ProgressBars, print_summary
from hostspec.cli.sources import connection_store
from hostspec.config.connections import connection_from_settings
from hostspec.engine.plugins import HostPluginManager
from hostspec.engine.run import SyncEngine
from hostspec.engine.sinks import JsonLinesSink
from hostspec.engine.state import StateDB
from hostspec.ops.console import UsageError
from hostspec.provider import SyncContext
from hostspec.secrets import Secret

DEFAULT_STATE = ".connector-host/state.sqlite"


def sandbox_options(pairs: list[str]) -> dict[str, Any]:
    """``--sandbox-option KEY=VALUE`` pairs as the ``options`` of the ``start_sandbox`` hook: a
    VALUE that is an integer becomes one, any other stays text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--sandbox-option {pair!r}: write KEY=VALUE")
        try:
            options[key] = int(value)
        except ValueError:
            options[key] = value
    return options


# -- plugins ---------------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    rows = [{"name": p.name, "version": p.info.version, "title": p.info.title,
             "scopes": list(p.info.scopes),
             "settings": sorted(p.info.settings_schema().fields),
             "secret_settings": list(p.info.secret_fields),
             "sandbox": bool(p.hooks.start_sandbox.get_hookimpls())}
            for p in plugins.providers.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no providers installed (entry-point group hostspec.providers)")
    for r in rows:
        print(f"{r['name']} {r['version']}  {r['title']}")
        print(f"    scopes: {', '.join(r['scopes'])}   sandbox: {'yes' if r['sandbox'] else 'no'}")
        print(f"    settings: {', '.join(r['settings'])} (secret: {', '.join(r['secret_settings']) or '-'})")
    return EXIT_OK


def reveal_secrets(value: Any) -> None:
    """Read every secret reference in ``value`` (a provider's settings, nested): :raise SecretUnavailable:
    (a configuration error) naming the first that is not set; the values are not kept."""
    if isinstance(value, Secret):
        value.reveal()
    elif isinstance(value, Mapping):
        for item in value.values():
            reveal_secrets(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):    # a provider's settings
        for f in dataclasses.fields(value):
            reveal_secrets(getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            reveal_secrets(item)


# -- check -----------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    store = connection_store(args)
    connection = store.get(args.connection, plugins)
    provider = plugins.provider(connection.provider)
    reveal_secrets(connection.settings)   # a secret not set is a configuration error (exit 2), as in `sync`
    context = SyncContext(run_id=str(uuid.uuid4()), request_id="check", scope="check",
                          now=datetime.now(timezone.utc))
    result = provider.hooks.check_connection(connection=connection, context=context)
    if result is None:
        print(f"{args.connection}: provider {provider.name} cannot check connections")
        return EXIT_OK
    print(f"{args.connection}: {'OK' if result.ok else 'FAILED'} - {result.message}")
    return EXIT_OK if result.ok else EXIT_FAILED


# -- sync ------------------------------------------------------------------------------------------
def cmd_sync(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    provider = plugins.provider(args.provider)
    with ExitStack() as stack:
        if args.sandbox:
            options = {k: v for k, v in {"contents": args.sandbox_contents, "learners": args.sandbox_learners,
                                         "enrollments": args.sandbox_enrollments,
                                         "broken_every": args.sandbox_broken_every}.items() if v is not None}
            options.update(sandbox_options(args.sandbox_option or []))
            try:
                sandbox = provider.hooks.start_sandbox(options=options)
            except ValueError as exc:     # sizes that cannot make an organisation
                raise UsageError(f"sandbox options: {exc}") from None
            if sandbox is None:
                print(f"connector-host: provider {provider.name} ships no sandbox", file=sys.stderr)
                return EXIT_CONFIG
            stack.callback(sandbox.close)
            print(sandbox.describe(), file=sys.stderr)
            connection = connection_from_settings(f"{provider.name}-sandbox", provider.name,
                                                  sandbox.settings, plugins)
        else:
            if not args.connection:
                print("connector-host: sync needs --connection NAME or --sandbox", file=sys.stderr)
                return EXIT_CONFIG
            connection = connection_store(args).get(args.connection, plugins)
            if connection.provider != provider.name:
                print(f"connector-host: connection {connection.name!r} is for provider "
                      f"{connection.provider!r}, not {provider.name!r}", file=sys.stderr)
                return EXIT_CONFIG
        state_path = args.state or (None if args.sandbox else os.environ.get("CONNECTOR_HOST_STATE", DEFAULT_STATE))
        state = StateDB(state_path) if state_path else StateDB()
        stack.callback(state.close)
        sink = stack.enter_context(JsonLinesSink(args.out))
        serve_metrics(args)
        progress = ProgressBars(sys.stderr)
        engine = SyncEngine(plugins, sink, state=state, on_progress=progress, progress_every=100)
        report = engine.run(sync_request(args, connection.name, provider.name, "cli"), connection)
        progress.done(report)
    print_summary(report, "stdout" if args.out == "-" else args.out, sys.stderr)
    return exit_code(report.outcome, report.error)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list installed providers")
    p.add_argument("--json", action="store_true", help="print the providers as JSON")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("check", help="verify a connection's credentials and ids")
    p.add_argument("--connection", required=True, metavar="NAME", help="the connection to check")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("sync", help="run one sync now and write its events as JSON lines")
    p.add_argument("provider", help="the provider to sync (see `connector-host plugins`)")
    p.add_argument("--connection", metavar="NAME", help="the connection to sync (its provider must be PROVIDER)")
    p.add_argument("--sandbox", action="store_true",
                   help="start the provider's in-process sandbox and sync it (no credentials needed)")
    request_options(p)
    p.add_argument("--out", default="-", metavar="FILE", help="where to write events (default stdout)")
    p.add_argument("--state", metavar="FILE", help="state database for change detection (default "
                   f"$CONNECTOR_HOST_STATE or {DEFAULT_STATE}; with --sandbox: none, every run starts fresh)")
    p.add_argument("--sandbox-contents", type=int, metavar="N", help="courses in the sandbox")
    p.add_argument("--sandbox-learners", type=int, metavar="N", help="learners in the sandbox")
    p.add_argument("--sandbox-enrollments", type=int, metavar="N", help="enrollments in the sandbox")
    p.add_argument("--sandbox-broken-every", type=int, metavar="N",
                   help="make every Nth sandbox record lack a required field")
    p.add_argument("--sandbox-option", action="append", metavar="KEY=VALUE",
                   help="any option of the provider's sandbox (repeatable; VALUE an integer or text), "
                        "e.g. --sandbox-option seed=7 --sandbox-option courses=30")
    metrics_options(p)
    p.set_defaults(func=cmd_sync)
