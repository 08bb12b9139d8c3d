"""``connector-host``: list providers, check connections, run syncs, run the Kafka worker.

Exit codes: 0 success (also when standard output closes early, e.g. piped to head); 1 the run
or a service failed (a provider or Kafka unreachable, a check the provider answered FAILED); 2
usage or configuration error (an option, a file, a port taken, a secret not set, settings
refused); 3 partial success (some records were rejected, the others delivered); 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from hostspec import __version__
from hostspec.cli import api, authoring, connections, deadletters, processes, providers, runs
from hostspec.cli.sources import CONTROL_TOPIC, DEFAULT_CONNECTIONS
from hostspec.engine.plugins import get_plugin_manager
from hostspec.ops.console import guarded, log_level, plain
from hostspec.ops.logs import setup_logging

# each command group registers its commands, in the order `connector-host --help` lists them
COMMAND_GROUPS = (providers, processes, runs, authoring, api, connections, deadletters)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connector-host", description=plain(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=["auto", "json", "text"],
                        default=os.environ.get("CONNECTOR_HOST_LOG_FORMAT", "auto"),
                        help="json: one object per line; text: for people; auto (default): text on a terminal")
    parser.add_argument("--log-level", type=log_level, default=_env_log_level("CONNECTOR_HOST_LOG_LEVEL"),
                        help="DEBUG, INFO, WARNING (default; INFO for run and schedule), ERROR")
    parser.add_argument("--connections", metavar="FILE",
                        help=f"connections file (default $CONNECTOR_HOST_CONNECTIONS or {DEFAULT_CONNECTIONS}); "
                             f"'{CONTROL_TOPIC}': the control topic, written by `connector-host api` and "
                             f"`connector-host connections import`")
    parser.add_argument("--policy", metavar="FILE", default=os.environ.get("CONNECTOR_HOST_POLICY"),
                        help="settings policy: allowed provider hosts and secret references (default "
                             "$CONNECTOR_HOST_POLICY; built-in: https to the providers' own hosts, each tenant's "
                             "secrets from its own CONNECTOR_SECRET_<TENANT>__* variables)")
    parser.add_argument("--allow-sandboxes", action="store_true",
                        help="development switch: connections may point at sandboxes on this machine (plain http "
                             "on a loopback address)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub)
    return parser


def _env_log_level(name: str) -> str | None:
    """A log level from the environment; an invalid one is ignored with a word (never a traceback)."""
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return log_level(value)
    except argparse.ArgumentTypeError as exc:
        print(f"connector-host: ${name}: {exc}; using the default", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or getattr(args, "default_log_level", "WARNING"), args.log_format)
    return guarded("connector-host", lambda: args.func(args, get_plugin_manager()))
