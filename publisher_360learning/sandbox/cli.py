"""``learning360-sandbox``: run the 360Learning sandbox in the foreground."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Sequence

from hostspec.ops.console import plain, port

from .paging import LINK_STYLES
from .server import Learning360Sandbox


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="learning360-sandbox", description=plain(__doc__))
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8360, help="port (default 8360; 0 picks a free one)")
    parser.add_argument("--user", action="append", default=[], metavar="MAIL",
                        help="a learner account to seed (repeatable); more via POST /_sandbox/users")
    parser.add_argument("--token-ttl", type=float, default=3600, metavar="S",
                        help="access token lifetime in seconds (default 3600)")
    parser.add_argument("--page-size", type=int, metavar="N", help="override every endpoint's page size")
    parser.add_argument("--no-rate-limits", action="store_true", help="do not enforce 50 reads/s, 10 writes/s")
    parser.add_argument("--reserved-name", action="append", default=[], metavar="LABEL",
                        help="an externalPlatform label to refuse as reserved (repeatable)")
    parser.add_argument("--link-style", choices=LINK_STYLES, default="absolute",
                        help="how next-page Link URLs are written (default absolute; relative forms: path, "
                             "rootless, relative); POST /_sandbox/links changes it while running")
    parser.add_argument("--results-in-order", action="store_true",
                        help="bulk results in input order (default: shuffled, as 360Learning promises no order)")
    args = parser.parse_args(argv)
    try:
        sandbox = Learning360Sandbox(users=args.user, host=args.host, port=args.port, token_ttl_s=args.token_ttl,
                                     page_size=args.page_size, enforce_rate_limits=not args.no_rate_limits,
                                     reserved_names=args.reserved_name, link_style=args.link_style,
                                     **({"results_seed": None} if args.results_in_order else {}))
    except (ValueError, OSError) as exc:
        print(f"learning360-sandbox: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with sandbox:
        print(sandbox.describe(), flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
