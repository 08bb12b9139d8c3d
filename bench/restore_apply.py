"""How fast a worker applies state records to its local database while restoring a partition.

    python bench/restore_apply.py [--records 300000] [--batch 10000]

Applies synthetic changelog records (one stat entity each, as the worker writes them) with
``apply_changelog``, inside ``StateDB.bulk()`` as the restore does, and without it for
comparison. No broker needed: this is the local half of a restore (RELIABILITY.md measures the
whole of it on the broker).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostspec.engine.state import SEP, StateDB, apply_changelog  # noqa: E402


def records(n: int) -> list[tuple[str, bytes]]:
    value = json.dumps({"fp": "0" * 64, "memo": {"status": "in_progress"}}).encode()
    return [(SEP.join(("e", f"acme/c{i % 6}", "stat", f"course-{i % 997}/learner-{i}/1")), value) for i in range(n)]


def measure(recs: list[tuple[str, bytes]], batch: int, bulk: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        db = StateDB(Path(folder) / "s.sqlite")
        started = time.perf_counter()
        with db.bulk() if bulk else nullcontext():
            for i in range(0, len(recs), batch):
                apply_changelog(db, recs[i:i + batch])
        elapsed = time.perf_counter() - started
        assert db.count() == len(recs)
        db.close()
    return len(recs) / elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--batch", type=int, default=10_000)
    args = p.parse_args()
    recs = records(args.records)
    for bulk in (False, True):
        label = "restore mode (StateDB.bulk)" if bulk else "normal writes"
        print(f"{label}: {measure(recs, args.batch, bulk):,.0f} records/s over {args.records:,} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
