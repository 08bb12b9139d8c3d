"""Where a progress sync spends its time: the engine in-process against a sandbox process.

    python bench/profile_engine.py --rows 50000 --sink null            # engine only
    python bench/profile_engine.py --rows 50000 --sink kafka           # + transactional producing
    python bench/profile_engine.py --rows 50000 --sink kafka --no-state-records
    python bench/profile_engine.py --rows 50000 --sink null --profile  # cProfile, top functions

``--sink kafka`` needs a broker (``KAFKA_BOOTSTRAP``, default 127.0.0.1:9092); ``KAFKA_CLIENT=confluent``
produces with librdkafka. Prints records/s and this process's CPU per record (the sandbox is
another process).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchmark import CONTENTS_FOR_STATS, PAGE_SIZE, sandbox, warm  # noqa: E402

from hostspec.config.connections import connection_from_settings  # noqa: E402
from hostspec.engine.run import SyncEngine  # noqa: E402
from hostspec.requests import SyncRequest  # noqa: E402
from hostspec.engine.plugins import get_plugin_manager  # noqa: E402
from hostspec.engine.state import StateDB  # noqa: E402


class NullSink:
    """Serialises every event (as a transport would) and drops it."""

    def emit(self, event) -> None:
        event.to_bytes()

    def checkpoint(self, state_records, *, final: bool) -> None:
        pass


def kafka_sink(state_records: bool):
    from hostspec.topics import Topics
    from hostspec.transport.config import KafkaConfig, topic_specs
    from hostspec.transport.admin import ensure_topics
    from hostspec.transport.producer_pool import ProducerPool
    from hostspec.transport.transactional_sink import TransactionalSink
    from hostspec.transport.transactions import Unfenced

    config = KafkaConfig.from_env()
    topics = Topics().with_prefix(f"prof{uuid.uuid4().hex[:6]}.")
    ensure_topics(config, topic_specs(topics))
    _slot, producer = ProducerPool(config, f"prof-{uuid.uuid4().hex[:6]}", 1).take()

    class Sink(TransactionalSink):
        def checkpoint(self, records, *, final):
            super().checkpoint(records if state_records else [], final=final)

    return Sink(producer, topics.for_type, topics.state, Unfenced())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--sink", choices=["null", "kafka"], default="null")
    p.add_argument("--no-state-records", action="store_true", help="kafka sink: leave out the state records")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--state-file", help="an on-disk state database, as the worker uses (default in memory)")
    args = p.parse_args(argv)
    plugins = get_plugin_manager()
    with sandbox(CONTENTS_FOR_STATS, args.rows) as url:
        warm(url)
        settings = {"org_id": "DjYCkBQTQV69TtWA7RuNug", "client_id": "standin-key",
                    "client_secret": "standin-secret", "base_url": url, "page_size": PAGE_SIZE}
        connection = connection_from_settings("prof", "coursera", settings, plugins)
        sink = NullSink() if args.sink == "null" else kafka_sink(not args.no_state_records)
        engine = SyncEngine(plugins, sink, state=StateDB(args.state_file or ":memory:"))
        profiler = cProfile.Profile() if args.profile else None
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        report = engine.run(SyncRequest("prof", "prof", "coursera", "progress"), connection)
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = report.counts.stats_emitted
    label = args.sink + (" without state records" if args.no_state_records else "")
    label += ", state on disk" if args.state_file else ""
    print(f"{label}: {n} stats in {elapsed:.1f}s = {n / elapsed:,.0f} records/s ({1e6 * elapsed / n:.0f} us/record, CPU {1e6 * cpu / n:.0f} us/record)")
    if args.sink == "kafka":
        print(transaction_times())
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


def transaction_times() -> str:
    """How long the run's transactions took, from the worker's histogram (upper bucket bounds)."""
    from hostspec.ops import metrics

    samples = {s.labels["le"]: s.value for s in metrics.TRANSACTION_SECONDS.collect()[0].samples
               if s.name.endswith("_bucket")}
    total = samples["+Inf"]
    slowest = next(le for le, n in samples.items() if n == total)
    median = next(le for le, n in samples.items() if n >= total / 2)
    return f"transactions: {total:.0f}, median <= {median} s, slowest <= {slowest} s"


if __name__ == "__main__":
    sys.exit(main())
