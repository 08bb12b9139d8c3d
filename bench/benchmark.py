"""End-to-end benchmarks: sandbox -> worker -> Kafka, measured beside the raw limits of the tools.

Run through ``bench/run`` (it starts a private Kafka broker). Every scenario starts its own
sandbox process and worker process on fresh topics, publishes one sync request, and measures
from the publication to the final status. The worker's peak RSS is read from
``/proc/PID/status`` (VmHWM). Each figure is the median of ``--runs`` runs.

Raw limits, in the same run and on the same bytes: a plain kafka-python producer (acks=all,
idempotent, the worker's batching), a transactional kafka-python producer (the worker's
semantics), confluent-kafka's producer, and a plain ``requests`` loop over the same sandbox pages.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import requests
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hostspec.requests import SyncRequest  # noqa: E402
from hostspec.topics import Topics  # noqa: E402

ORG = "DjYCkBQTQV69TtWA7RuNug"
PAGE_SIZE = 1000
CONTENTS_FOR_STATS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/PID/stat, utime + stime):
    what a sync costs, stable on a shared machine where wall time is not."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def sandbox(contents: int, enrollments: int) -> Iterator[str]:
    port = free_port()
    learners = max(10, -(-enrollments // min(contents, CONTENTS_FOR_STATS)) + 1)
    proc = subprocess.Popen([sys.executable, "-m", "connector_coursera.sandbox.cli", "--port", str(port),
                             "--contents", str(contents), "--learners", str(learners),
                             "--enrollments", str(enrollments)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/_sandbox/health", timeout=1).ok:
                break
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def warm(url: str) -> None:
    """Ask the sandbox for its first report page once, so its row index is built before timing."""
    token = requests.post(url + "/oauth2/client_credentials/token", data={"grant_type": "client_credentials"},
                          auth=("standin-key", "standin-secret"), timeout=30).json()["access_token"]
    requests.get(f"{url}/ent/api/businesses.v1/{ORG}/enrollmentReports",
                 params={"includeS12n": "true", "includeDeletedMembers": "false", "limit": 1},
                 headers={"Authorization": f"Bearer {token}"}, timeout=120)


def connections_file(folder: Path, urls: dict[str, str]) -> Path:
    text = ""
    for name, url in urls.items():
        # one sandbox client id for every connection: in a fleet each company has its own, so the
        # shared account budget (4 calls/s by default) is lifted here
        text += (f'[connections.{name}]\ntenant = "bench"\nprovider = "coursera"\ngroup_id = "g"\n'
                 f'account_calls_per_second = 10000\n'
                 f'[connections.{name}.settings]\norg_id = "{ORG}"\nclient_id = "standin-key"\n'
                 f'client_secret = {{ env = "BENCH_SECRET" }}\nbase_url = "{url}"\npage_size = {PAGE_SIZE}\n\n')
    path = folder / "connections.toml"
    path.write_text(text)
    return path


class Worker:
    def __init__(self, folder: Path, bootstrap: str, prefix: str, connections: Path, name: str, *extra: str):
        self.log_path = folder / f"{name}.log"
        self._log = open(self.log_path, "w")
        env = {**os.environ, "BENCH_SECRET": "standin-secret"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hostspec", "--connections", str(connections), "run", "--bootstrap-servers",
             bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}g", "--worker-id", name,
             "--session-timeout-ms", "10000", *extra], stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def assigned(self) -> list[int]:
        import re
        found = re.findall(r"serves partitions \[([0-9, ]*)\]", self.log_path.read_text())
        return [int(x) for x in found[-1].split(",") if x.strip()] if found else []

    def wait_assigned(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.assigned():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def publish(bootstrap: str, topic: str, connection: str, scope: str, partition: int) -> str:
    request = SyncRequest(str(uuid.uuid4()), connection, "coursera", scope, "bench", mode="full")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=connection.encode(), value=request.to_event(datetime.now(timezone.utc)).to_json().encode(),
                  partition=partition).get(30)
    producer.close()
    return request.request_id


def follow(bootstrap: str, topics: Topics, output: str, request_ids: set[str], t0: float,
           timeout: float = 3600) -> tuple[float, float, dict[str, dict]]:
    """(first output event seconds, last final status seconds, final status per request)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed",
                             enable_auto_commit=False, fetch_max_bytes=1024)
    tps = [TopicPartition(t, p) for t in (output, topics.status) for p in consumer.partitions_for_topic(t) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    first = None
    finals: dict[str, dict] = {}
    last = 0.0
    deadline = time.monotonic() + timeout
    while len(finals) < len(request_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no final status for {request_ids - set(finals)}")
        for tp, records in consumer.poll(timeout_ms=100).items():
            if tp.topic == output and first is None and records:
                first = time.monotonic() - t0
                consumer.pause(*[p for p in tps if p.topic == output])  # the rest is not needed
            if tp.topic == topics.status:
                for r in records:
                    data = json.loads(r.value)["data"]
                    if data["request_id"] in request_ids and data["phase"] in ("completed", "partial", "failed"):
                        finals[data["request_id"]] = data
                        last = time.monotonic() - t0
    consumer.close()
    return first or float("nan"), last, finals


@dataclass
class Sample:
    wall_s: float
    records: int
    rss_mb: float
    first_event_s: float
    cpu_s: float = float("nan")      # the worker process's CPU from the request to the final status

    @property
    def rate(self) -> float:
        return self.records / self.wall_s

    @property
    def cpu_us_per_record(self) -> float:
        return self.cpu_s * 1e6 / self.records


@dataclass
class Scenario:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)


def run_sync(bootstrap: str, scope: str, contents: int, enrollments: int) -> Sample:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    topics = Topics().with_prefix(prefix)
    with tempfile.TemporaryDirectory() as tmp, sandbox(contents, enrollments) as url:
        warm(url)
        worker = Worker(Path(tmp), bootstrap, prefix, connections_file(Path(tmp), {"acme": url}), "w1")
        try:
            worker.wait_assigned()
            time.sleep(1)                      # start-up work done: what follows is the sync's
            cpu0 = cpu_s(worker.proc.pid)
            t0 = time.monotonic()
            rid = publish(bootstrap, topics.requests, "acme", scope, worker.assigned()[0])
            output = topics.courses if scope == "catalog" else topics.learner_stats
            first, wall, finals = follow(bootstrap, topics, output, {rid}, t0)
            cpu = cpu_s(worker.proc.pid) - cpu0
            rss = peak_rss_mb(worker.proc.pid)
        finally:
            worker.stop()
    final = finals[rid]
    if final["phase"] != "completed":
        raise RuntimeError(f"run ended {final['phase']}: {final['error']}")
    counts = final["counts"]
    return Sample(wall, counts["courses_emitted"] + counts["stats_emitted"], rss, first, cpu)


def request_progress(bootstrap: str, topic: str, names: list[str]) -> set[str]:
    """One full ``progress`` sync request per connection, keyed by connection (the worker's own
    partitioning); their request ids."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    ids = set()
    for name in names:
        request = SyncRequest(str(uuid.uuid4()), name, "coursera", "progress", "bench", mode="full")
        producer.send(topic, key=name.encode(), value=request.to_event(datetime.now(timezone.utc)).to_json().encode())
        ids.add(request.request_id)
    producer.flush()
    producer.close()
    return ids


def run_many(bootstrap: str, connections: int, enrollments: int) -> tuple[float, float, int]:
    """``connections`` small connections (``enrollments`` rows each, one sandbox) through one
    worker: (the worker's CPU seconds, wall seconds, records) from the first request to the last
    final status."""
    prefix = f"m{uuid.uuid4().hex[:8]}."
    topics = Topics().with_prefix(prefix)
    with tempfile.TemporaryDirectory() as tmp, sandbox(CONTENTS_FOR_STATS, enrollments) as url:
        warm(url)
        names = [f"c{n:04d}" for n in range(connections)]
        worker = Worker(Path(tmp), bootstrap, prefix, connections_file(Path(tmp), dict.fromkeys(names, url)), "w1")
        try:
            worker.wait_assigned()
            time.sleep(1)
            cpu0 = cpu_s(worker.proc.pid)
            t0 = time.monotonic()
            ids = request_progress(bootstrap, topics.requests, names)
            _first, wall, finals = follow(bootstrap, topics, topics.learner_stats, ids, t0)
            cpu = cpu_s(worker.proc.pid) - cpu0
        finally:
            worker.stop()
    bad = [f for f in finals.values() if f["phase"] != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not complete: {bad[0]['error']}")
    return cpu, wall, sum(f["counts"]["stats_emitted"] for f in finals.values())


def run_pair(bootstrap: str, enrollments: int, workers: int) -> tuple[float, float]:
    """Two connections synced by one worker (concurrency 2) or by two workers: (wall seconds,
    the workers' CPU seconds together)."""
    prefix = f"p{uuid.uuid4().hex[:8]}."
    topics = Topics().with_prefix(prefix)
    with tempfile.TemporaryDirectory() as tmp, sandbox(CONTENTS_FOR_STATS, enrollments) as a, \
            sandbox(CONTENTS_FOR_STATS, enrollments) as b:
        warm(a)
        warm(b)
        conns = connections_file(Path(tmp), {"acme": a, "beta": b})
        procs = [Worker(Path(tmp), bootstrap, prefix, conns, f"w{n}") for n in range(workers)]
        try:
            for w in procs:
                w.wait_assigned()
            if workers == 2:
                deadline = time.monotonic() + 60
                while len(set(procs[0].assigned()) | set(procs[1].assigned())) < 6 or not all(w.assigned() for w in procs):
                    if time.monotonic() > deadline:
                        raise RuntimeError("workers did not share the partitions")
                    time.sleep(0.2)
                parts = [procs[0].assigned()[0], procs[1].assigned()[0]]
            else:
                parts = [0, 1]
            time.sleep(1)
            cpu0 = sum(cpu_s(w.proc.pid) for w in procs)
            t0 = time.monotonic()
            ids = {publish(bootstrap, topics.requests, name, "progress", part) for name, part in zip(("acme", "beta"), parts)}
            _first, wall, finals = follow(bootstrap, topics, topics.learner_stats, ids, t0)
            cpu = sum(cpu_s(w.proc.pid) for w in procs) - cpu0
        finally:
            for w in procs:
                w.stop()
    assert all(f["phase"] == "completed" for f in finals.values()), finals
    return wall, cpu


def sample_events(bootstrap: str, topic: str, n: int = 2000) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    consumer.subscribe([topic])
    out = []
    for r in consumer:
        out.append((r.key, r.value))
        if len(out) >= n:
            break
    consumer.close()
    return out


def stat_payloads(bootstrap: str) -> list[tuple[bytes, bytes]]:
    """Real learner-stat events (key, value) produced by a small sync, to replay in the raw tests."""
    prefix = f"s{uuid.uuid4().hex[:8]}."
    topics = Topics().with_prefix(prefix)
    with tempfile.TemporaryDirectory() as tmp, sandbox(CONTENTS_FOR_STATS, 3000) as url:
        worker = Worker(Path(tmp), bootstrap, prefix, connections_file(Path(tmp), {"acme": url}), "w1")
        try:
            worker.wait_assigned()
            rid = publish(bootstrap, topics.requests, "acme", "progress", 0)
            follow(bootstrap, topics, topics.learner_stats, {rid}, time.monotonic())
        finally:
            worker.stop()
    return sample_events(bootstrap, topics.learner_stats)


def raw_kafka_python(bootstrap: str, payloads: list[tuple[bytes, bytes]], n: int, transactional: bool) -> float:
    topic = f"raw{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    extra = {"transactional_id": f"raw-{topic}"} if transactional else {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10,
                             batch_size=256 * 1024, **extra)
    if transactional:
        producer.init_transactions()
    producer.partitions_for(topic)  # fetch metadata before timing
    t0 = time.monotonic()
    if transactional:
        producer.begin_transaction()
    for i in range(n):
        key, value = payloads[i % len(payloads)]
        producer.send(topic, key=key, value=value)
        if transactional and (i + 1) % 5000 == 0:
            producer.commit_transaction()
            producer.begin_transaction()
    if transactional:
        producer.commit_transaction()
    producer.flush()
    elapsed = time.monotonic() - t0
    producer.close()
    return n / elapsed


def raw_confluent(bootstrap: str, payloads: list[tuple[bytes, bytes]], n: int) -> float:
    import confluent_kafka

    topic = f"rawc{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                         "linger.ms": 10, "batch.size": 256 * 1024, "queue.buffering.max.messages": 1_000_000})
    t0 = time.monotonic()
    for i in range(n):
        key, value = payloads[i % len(payloads)]
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(120)
    return n / (time.monotonic() - t0)


def create_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 12, 1)])
    admin.close()


def raw_requests(enrollments: int) -> float:
    with sandbox(CONTENTS_FOR_STATS, enrollments) as url:
        warm(url)
        session = requests.Session()
        token = session.post(url + "/oauth2/client_credentials/token", data={"grant_type": "client_credentials"},
                             auth=("standin-key", "standin-secret"), timeout=30).json()["access_token"]
        rows, start = 0, "0"
        t0 = time.monotonic()
        while start is not None:
            body = session.get(f"{url}/ent/api/businesses.v1/{ORG}/enrollmentReports",
                               params={"includeS12n": "true", "includeDeletedMembers": "false",
                                       "start": start, "limit": PAGE_SIZE},
                               headers={"Authorization": f"Bearer {token}"}, timeout=120).json()
            rows += len(body["elements"])
            start = body["paging"].get("next")
        return rows / (time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats-sizes", default="10000,100000,1000000")
    parser.add_argument("--catalog", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pair-size", type=int, default=100_000, help="enrollments per connection, two-worker test")
    parser.add_argument("--many", type=int, default=1000, help="small connections through one worker (run overhead)")
    parser.add_argument("--many-size", type=int, default=100, help="enrollments of each small connection")
    parser.add_argument("--quick", action="store_true", help="10k and 100k stats, 1 run, 30k pair, 200 small "
                                                             "connections (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.stats_sizes, args.runs, args.pair_size, args.many = "10000,100000", 1, 30_000, 200
    sizes = [int(x) for x in args.stats_sizes.split(",")]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    rows: list[tuple[str, str, str, str, str]] = []
    key: dict[str, float] = {}

    def report(name: str, sc: Scenario) -> None:
        rows.append((name, f"{sc.median('wall_s'):.2f}", f"{sc.median('records'):.0f}", f"{sc.median('rate'):,.0f}",
                     f"{sc.median('rss_mb'):.0f}"))
        print(f"  {name}: {sc.median('wall_s'):.2f}s, {sc.median('rate'):,.0f} records/s, "
              f"peak RSS {sc.median('rss_mb'):.0f} MB", file=sys.stderr, flush=True)

    print(f"benchmark: runs={args.runs} catalog={args.catalog} stats={sizes} pair={args.pair_size} "
          f"worker transactions through {os.environ.get('KAFKA_CLIENT') or 'kafka-python'}", file=sys.stderr)
    catalog = Scenario("catalog")
    for _ in range(args.runs):
        catalog.samples.append(run_sync(bootstrap, "catalog", args.catalog, 0))
    report(f"catalog sync, {args.catalog:,} items", catalog)

    stats: dict[int, Scenario] = {}
    for n in sizes:
        sc = stats[n] = Scenario(f"stats {n}")
        for _ in range(args.runs):
            sc.samples.append(run_sync(bootstrap, "progress", CONTENTS_FOR_STATS, n))
        report(f"learner stats, {n:,} enrollments", sc)

    payloads = stat_payloads(bootstrap)
    biggest = max(sizes)
    raw_n = min(biggest, 300_000)
    raw = {name: statistics.median(fn() for _ in range(args.runs)) for name, fn in {
        "kafka-python producer (acks=all, idempotent)": lambda: raw_kafka_python(bootstrap, payloads, raw_n, False),
        "kafka-python producer, transactions of 5000": lambda: raw_kafka_python(bootstrap, payloads, raw_n, True),
        "confluent-kafka producer (acks=all, idempotent)": lambda: raw_confluent(bootstrap, payloads, raw_n),
        "requests loop over sandbox pages": lambda: raw_requests(min(biggest, 300_000)),
    }.items()}
    for name, rate in raw.items():
        rows.append((f"raw: {name}", "", f"{raw_n:,}", f"{rate:,.0f}", ""))
        print(f"  raw {name}: {rate:,.0f}/s", file=sys.stderr, flush=True)

    pairs = {n: [run_pair(bootstrap, args.pair_size, n) for _ in range(args.runs)] for n in (1, 2)}
    one, two = (statistics.median(w for w, _c in pairs[n]) for n in (1, 2))
    per_cpu = {n: statistics.median(2 * args.pair_size / c for _w, c in pairs[n]) for n in (1, 2)}
    rows.append((f"2 connections x {args.pair_size:,}: one worker", f"{one:.2f}", f"{2 * args.pair_size:,}",
                 f"{2 * args.pair_size / one:,.0f}", ""))
    rows.append((f"2 connections x {args.pair_size:,}: two workers", f"{two:.2f}", f"{2 * args.pair_size:,}",
                 f"{2 * args.pair_size / two:,.0f}", ""))

    many_cpu, many_wall, many_records = run_many(bootstrap, args.many, args.many_size)
    rows.append((f"{args.many:,} connections x {args.many_size}: one worker", f"{many_wall:.2f}",
                 f"{many_records:,}", f"{many_records / many_wall:,.0f}", ""))
    print(f"  {args.many} small connections: {many_wall:.1f}s wall, {many_cpu:.1f}s worker CPU", file=sys.stderr)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'scenario':<{width}}  {'wall s':>8}  {'records':>10}  {'records/s':>10}  {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>8}  {r[2]:>10}  {r[3]:>10}  {r[4]:>11}")
    smallest = min(sizes)
    for n in sizes:
        if n >= 100_000:
            key[f"worker_cpu_us_per_record_{n // 1000}k"] = stats[n].median("cpu_us_per_record")
    ref = stats[100_000] if 100_000 in stats else stats[biggest]   # "at the per-record rate" of the 100k sync
    key["run_overhead_ms"] = (many_cpu - many_records * ref.median("cpu_us_per_record") / 1e6) / args.many * 1000
    key["run_overhead_wall_ms"] = (many_wall - many_records / ref.median("rate")) / args.many * 1000
    key["records_per_cpu_s_1_worker"] = per_cpu[1]
    key["records_per_cpu_s_2_workers"] = per_cpu[2]
    key["ratio_vs_raw_producer"] = stats[biggest].median("rate") / raw["kafka-python producer (acks=all, idempotent)"]
    key["ratio_vs_raw_txn_producer"] = stats[biggest].median("rate") / raw["kafka-python producer, transactions of 5000"]
    key[f"rss_growth_{biggest // 1000}k_vs_{smallest // 1000}k"] = stats[biggest].median("rss_mb") / stats[smallest].median("rss_mb")
    key["catalog_10k_s"] = catalog.median("wall_s")
    key["two_worker_speedup"] = one / two
    key["first_event_s"] = stats[smallest].median("first_event_s")
    client = os.environ.get("KAFKA_CLIENT") or "kafka-python"
    print(f"\nkafka_client={client} " + " ".join(f"{k}={v:.2f}" for k, v in key.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
