"""Microseconds per call of the per-record steps of building one learner-stat event.

    python bench/micro_event.py [--number 20000]

One stat event of a small Coursera sandbox sync; each step timed with ``timeit``. Relative
figures: the machine's load moves them all.
"""
from __future__ import annotations

import argparse
import sys
import timeit
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector_coursera.sandbox import OrgSpec  # noqa: E402
from hostspec import events as ev  # noqa: E402
from tests.conftest import sandbox_sync_events  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--number", type=int, default=20_000)
    n = p.parse_args(argv).number
    stat = next(e for e in sandbox_sync_events(OrgSpec(contents=5, learners=40, enrollments=100)).events
                if e.type == ev.LEARNER_STAT_UPSERTED)
    data, now = stat.data, datetime.now(timezone.utc)
    content = {k: v for k, v in data.items() if k not in ("fingerprint", "as_of")}
    steps = {
        "float walk (fingerprint)": lambda: ev._exponent_float(content),
        "fingerprint": lambda: ev.fingerprint(data, stat.type),
        "event id": lambda: ev.event_id(stat.type, stat.key, data["fingerprint"]),
        "isoformat": lambda: ev.isoformat(now),
        "contract check": lambda: ev.validate_data(stat.type, data),
        "value bytes": stat.to_bytes,
        "make_event (all of it)": lambda: ev.make_event(stat.type, data, key=stat.key, source="s", subject="x",
                                                         time=now),
    }
    for label, step in steps.items():
        print(f"{label:26s} {timeit.timeit(step, number=n) / n * 1e6:7.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
