"""Where the fixed cost of a run goes: many small connections through one worker, profiled.

    KAFKA_BOOTSTRAP=127.0.0.1:29092 python bench/run_costs.py [--connections 300] [--enrollments 100]

Starts a Coursera sandbox and one worker process (as ``bench/benchmark.py`` does), attaches
``py-spy`` (``pip install py-spy``) to the worker, runs one small ``progress`` sync per connection,
and prints the worker's CPU per run and the share of its samples in each part of a run (samples
of the thread holding the GIL: Python's work; librdkafka's own C threads are not in them). Every
connection uses the sandbox's one client id, so the OAuth token is fetched once for all (a fleet
of companies fetches one per run: its cost is measured apart, in-process, at the end).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmark as b  # noqa: E402  (it puts the repository on sys.path)

from hostspec.topics import Topics  # noqa: E402

# the first matching frame (outermost first) names the part of a run a sample belongs to
PARTS = [
    ("transaction: offsets, records, commit (kafka client)", ("commit_fenced",)),
    ("status events (started, completed)", ("Run.status", "Run._status")),
    ("OAuth token", ("ClientCredentials._fetch",)),
    ("provider pages (HTTP, JSON)", ("fetch_progress", "iter_pages")),
    ("records: map, check, fingerprint, state", ("Run.emit_entity", "Run.build", "emit_stat")),
    ("the worker's loop: requests, tasks, restore", ("Worker.run", "Worker._run_task", "PartitionTask")),
]


def part_of(frames: list[str]) -> str:
    for name, markers in PARTS:
        if any(m in f for f in frames for m in markers):
            return name
    return "other threads (Kafka clients' I/O, control topic, rate signals)"


def token_fetch_cpu_ms(url: str, n: int = 50) -> float:
    """CPU of one OAuth token fetch through the host's client, in this process."""
    import requests

    from hostspec.kit.http import ClientCredentials

    session = requests.Session()
    started = time.process_time()
    for _ in range(n):
        ClientCredentials(session, url + "/oauth2/client_credentials/token", "standin-key",
                          lambda: "standin-secret", provider="coursera").token()
    return (time.process_time() - started) / n * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--enrollments", type=int, default=100)
    p.add_argument("--show-other", type=int, default=0, help="print the N most sampled stacks left unattributed")
    args = p.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    prefix = f"rc{uuid.uuid4().hex[:8]}."
    topics = Topics().with_prefix(prefix)
    with tempfile.TemporaryDirectory() as tmp, b.sandbox(b.CONTENTS_FOR_STATS, args.enrollments) as url:
        b.warm(url)
        names = [f"c{n:04d}" for n in range(args.connections)]
        worker = b.Worker(Path(tmp), bootstrap, prefix, b.connections_file(Path(tmp), dict.fromkeys(names, url)), "w1")
        raw = Path(tmp) / "profile.raw"
        try:
            worker.wait_assigned()
            time.sleep(1)
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(worker.proc.pid), "--rate", "200", "--format",
                                    "raw", "--output", str(raw), "--gil"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(1)
            cpu0, t0 = b.cpu_s(worker.proc.pid), time.monotonic()
            ids = b.request_progress(bootstrap, topics.requests, names)
            _first, wall, finals = b.follow(bootstrap, topics, topics.learner_stats, ids, t0)
            cpu = b.cpu_s(worker.proc.pid) - cpu0
            spy.send_signal(2)
            spy.wait(30)
        finally:
            worker.stop()
        shares: Counter[str] = Counter()
        others: Counter[str] = Counter()
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            part = part_of(frames)
            shares[part] += int(count)
            if part.startswith("other"):
                others[" <- ".join(f.split(" (")[0] for f in reversed(frames[-4:]))] += int(count)
        token_ms = token_fetch_cpu_ms(url)
    records = sum(f["counts"]["stats_emitted"] for f in finals.values())
    total = sum(shares.values()) or 1
    print(f"{args.connections} runs of {args.enrollments} enrollments, {records:,} records: {wall:.1f} s wall, "
          f"worker CPU {cpu:.2f} s = {cpu / args.connections * 1000:.1f} ms per run "
          f"(KAFKA_CLIENT={os.environ.get('KAFKA_CLIENT') or 'kafka-python'})")
    for name, n in shares.most_common():
        print(f"  {100 * n / total:5.1f} %  {name}")
    for stack, n in others.most_common(args.show_other):
        print(f"  other {100 * n / total:5.1f} %  {stack}")
    print(f"one OAuth token fetch (in-process, not in the runs above): {token_ms:.2f} ms CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
