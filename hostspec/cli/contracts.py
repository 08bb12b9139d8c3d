"""Generate the language-neutral contracts in ``schemas/`` from the marshmallow schemas.

``python -m hostspec.cli.contracts --write [DIR]`` rewrites the files (and the field-rules table
of ``docs/writing-a-provider.md``); ``--check`` exits 1 when the files differ from the code (the
test suite runs the same comparison).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hostspec.contracts import bundled, event_schema
from hostspec.control.openapi import document
from hostspec.events import DATA_SCHEMAS
from hostspec.field_rules import DOC, rendered_doc
from hostspec.transport.asyncapi import asyncapi

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def rendered() -> dict[str, str]:
    """File name -> exact text of every contract file."""
    files = {f"{t}.json": event_schema(t) for t in DATA_SCHEMAS}
    files["asyncapi.json"] = asyncapi()              # payloads in the sibling files
    files["asyncapi.bundle.json"] = bundled(asyncapi())     # the same, self-contained
    files["admin-api.openapi.json"] = document()     # the admin API's document embeds these schemas
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in files.items()}


def differences(directory: Path = DEFAULT_DIR) -> list[str]:
    out = []
    for name, text in rendered().items():
        path = directory / name
        if not path.exists():
            out.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            out.append(f"{name}: differs from the code")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hostspec.cli.contracts", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite the files and the provider guide's table")
    group.add_argument("--check", action="store_true", help="exit 1 when a file differs from the code")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR,
                        help="where the files are (default: the repository's schemas/)")
    args = parser.parse_args(argv)
    if args.write:
        args.directory.mkdir(parents=True, exist_ok=True)
        for name, text in rendered().items():
            (args.directory / name).write_text(text, encoding="utf-8")
        if DOC.exists():     # the provider guide's field-rules table
            DOC.write_text(rendered_doc(DOC.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    diffs = differences(args.directory)
    for line in diffs:
        print(line, file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
