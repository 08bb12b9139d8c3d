"""``learning-demo``: the whole path on sandboxes, in one process: Coursera sandbox → host engine
→ publisher → 360Learning sandbox.

Exit codes: 0 success; 1 failure; 2 usage or configuration error; 3 some records not delivered.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from hostspec.ops.console import guarded, log_level, plain
from hostspec.ops.logs import setup_logging
from publisher_360learning.errors import Learning360Error

from .demo import run_demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learning-demo", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", type=log_level, default="INFO", help="DEBUG, INFO (default), WARNING, ERROR")
    p.add_argument("--log-format", choices=["auto", "json", "text"], default="auto",
                   help="json: one object per line; text: for people; auto (default): text on a terminal")
    p.add_argument("--out", default="events.jsonl", help="also write the host's events here (default events.jsonl)")
    p.add_argument("--contents", type=int, default=40, help="courses in the Coursera sandbox (default 40)")
    p.add_argument("--learners", type=int, default=30, help="learners in the Coursera sandbox (default 30)")
    p.add_argument("--enrollments", type=int, default=120, help="enrollments in the Coursera sandbox (default 120)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    return guarded("learning-demo", lambda: run_demo(out=args.out, contents=args.contents, learners=args.learners,
                                                     enrollments=args.enrollments, stream=sys.stderr),
                   failures=(Learning360Error,))


if __name__ == "__main__":
    raise SystemExit(main())
