"""``connector-host new-provider`` and ``validate``: a new provider package, and a file of
events checked against the event contract."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.cli.options import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from hostspec.engine.plugins import HostPluginManager
from hostspec.kit.scaffold import ScaffoldError, new_provider


# -- new-provider ----------------------------------------------------------------------------------
def cmd_new_provider(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    try:
        written = new_provider(args.name, args.dest, title=args.title)
    except ScaffoldError as exc:
        print(f"connector-host: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for path in written:
        print(path)
    print(f"connector-host: provider {args.name!r} created; next: cd {written[0].parent} && "
          "pip install -e '.[test]' && pytest", file=sys.stderr)
    return EXIT_OK


# -- validate --------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    bad = total = 0
    counts: dict[str, int] = {}
    with open(args.file, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            total += 1
            try:
                event = ev.parse_event(line)
                counts[event.type] = counts.get(event.type, 0) + 1
            except ValidationError as exc:
                bad += 1
                print(f"{args.file}:{lineno}: {json.dumps(exc.messages)}", file=sys.stderr)
    for type_, n in sorted(counts.items()):
        print(f"{n:>9}  {type_}")
    print(f"{total - bad} of {total} events valid")
    return EXIT_OK if bad == 0 else EXIT_FAILED


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("new-provider", help="create a provider package that passes the conformance suite")
    p.add_argument("name", help="the provider's name, snake_case (e.g. udemy_business)")
    p.add_argument("--dest", default=".", help="folder to create the package folder in (default .)")
    p.add_argument("--title", help="display name (default: from the name)")
    p.set_defaults(func=cmd_new_provider)

    p = sub.add_parser("validate", help="check every line of a JSON-lines file against the event contract")
    p.add_argument("file", help="the events file, one CloudEvent per line")
    p.set_defaults(func=cmd_validate)
