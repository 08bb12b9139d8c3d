"""``coursera-sandbox``: run the Coursera stand-in server in the foreground."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from hostspec.kit import plain, port

from .data import OrgSpec
from .server import CourseraSandbox


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coursera-sandbox", description=plain(__doc__))
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--seed", type=int, default=42, help="seed of the generated organisation (default 42)")
    p.add_argument("--programs", type=int, default=3, help="programs in the organisation (default 3)")
    p.add_argument("--contents", type=int, default=40, help="contents (courses) in the catalog (default 40)")
    p.add_argument("--learners", type=int, default=25, help="learners in the organisation (default 25)")
    p.add_argument("--enrollments", type=int, default=120, help="enrollments of learners in contents (default 120)")
    p.add_argument("--clips", action="store_true", help="include Video (clip) contents")
    p.add_argument("--broken-every", type=int, default=0, metavar="N",
                   help="every Nth content and enrollment lacks a required field (default 0: none)")
    p.add_argument("--token-ttl", type=float, default=1799, help="access token lifetime in seconds (default 1799)")
    p.add_argument("--next-format", choices=["string", "int"], default="string",
                   help="how the next-page cursor is written (default string)")
    p.add_argument("--grade-format", choices=["number", "string"], default="number",
                   help="how grades are written in the reports (default number)")
    p.add_argument("--grade-scale", type=float, choices=[1.0, 100.0], default=1.0,
                   help="what grades are out of: 1 (the spec's example; default) or 100 (the gradebook's scale)")
    p.add_argument("--client-id", default="standin-key", help="the client id it accepts (default standin-key)")
    p.add_argument("--client-secret", default="standin-secret",
                   help="the client secret it accepts (default standin-secret)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = OrgSpec(seed=args.seed, programs=args.programs, contents=args.contents,
                       learners=args.learners, enrollments=args.enrollments, clips_enabled=args.clips,
                       broken_every=args.broken_every)
        sandbox = CourseraSandbox(spec, host=args.host, port=args.port, client_id=args.client_id,
                                  client_secret=args.client_secret, token_ttl_s=args.token_ttl,
                                  next_format=args.next_format, grade_format=args.grade_format,
                                  grade_scale=args.grade_scale)
    except (ValueError, OSError) as exc:
        print(f"coursera-sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with sandbox:
        print(sandbox.describe(), file=sys.stderr)
        shown = {**sandbox.settings, "client_secret": "<the --client-secret value>"}
        print("connection settings:", json.dumps(shown), file=sys.stderr, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
