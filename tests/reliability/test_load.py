"""Load: many sync requests for many connections published at once, duplicates included. Every
connection is synced, one connection never runs twice at the same time, every request is
accounted for by a final status (completed, or skipped when its id already ran)."""
from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone

import pytest
from kafka import KafkaProducer

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.requests import SyncRequest
from tests.integration.conftest import read_topic, write_connections

from .conftest import plan

pytestmark = pytest.mark.kafka
FINAL = {"completed", "partial", "failed", "skipped"}


def test_load_of_requests_with_duplicates(tmp_path, bootstrap, topics, workers, figures):
    n_requests, n_connections = plan("load_requests"), plan("load_connections")
    names = [f"c{i:03d}" for i in range(n_connections)]
    rng = random.Random(7)
    with CourseraSandbox(OrgSpec(contents=3, learners=3, enrollments=6)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, names=tuple(names))
        started = [workers(conns, f"w{i}", None, "--batch-size", "50") for i in range(3)]
        for w in started:
            w.wait_for(r"serves partitions \[")
        # every connection at least once, the rest at random; a tenth re-sends an id already published
        requests: list[SyncRequest] = [SyncRequest(str(uuid.uuid4()), n, "coursera", "all", "load") for n in names]
        while len(requests) < n_requests:
            if rng.random() < 0.1:
                requests.append(rng.choice(requests))
            else:
                requests.append(SyncRequest(str(uuid.uuid4()), rng.choice(names), "coursera",
                                            rng.choice(["catalog", "progress", "all"]), "load"))
        rng.shuffle(requests)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        now = datetime.now(timezone.utc)
        t0 = time.monotonic()
        for r in requests:
            producer.send(topics.requests, key=r.connection.encode(), value=r.to_event(now).to_json().encode())
        producer.flush()
        producer.close()

        def finals(values):
            return [v["data"] for v in values if v["data"]["phase"] in FINAL]

        statuses = read_topic(bootstrap, topics.status, timeout=600,
                              until=lambda v: len(finals(v)) >= len(requests))
        elapsed = time.monotonic() - t0
    messages_per_id = Counter(r.request_id for r in requests)
    ended = Counter(s["request_id"] for s in finals(statuses))
    unaccounted = sum(abs(messages_per_id[i] - ended.get(i, 0)) for i in messages_per_id)
    synced = {s["connection"] for s in finals(statuses) if s["phase"] == "completed"}
    # overlap check: one connection's runs, from started to ended, never intersect (requests merged
    # into one run share its span: one span per run)
    spans = defaultdict(dict)
    for s in (v["data"] for v in statuses):
        if s["phase"] in ("completed", "partial", "failed") and s["started_at"]:
            spans[s["connection"]][s["run_id"]] = (s["started_at"], s["ended_at"])
    overlaps = 0
    for by_run in spans.values():
        runs = sorted(by_run.values())
        overlaps += sum(1 for a, b in zip(runs, runs[1:]) if b[0] < a[1])
    skipped = sum(1 for s in finals(statuses) if s["phase"] == "skipped")
    failed = sum(1 for s in finals(statuses) if s["phase"] == "failed")
    figures.add("requests published at once", len(requests))
    figures.add("connections", n_connections)
    figures.add("duplicate messages (same id)", len(requests) - len(messages_per_id))
    figures.add("requests without a final status", unaccounted, "0", unaccounted == 0)
    figures.add("connections synced", len(synced), f"{n_connections}", len(synced) == n_connections)
    figures.add("overlapping runs of one connection", overlaps, "0", overlaps == 0)
    figures.add("duplicates skipped", skipped, f"{len(requests) - len(messages_per_id)}",
                skipped == len(requests) - len(messages_per_id))
    figures.add("failed runs", failed, "0", failed == 0)
    figures.add("requests answered by another's run (coalesced)",
                sum(1 for s in finals(statuses) if s.get("merged_into")))
    figures.add("seconds until every request ended (3 workers)", round(elapsed, 1))
    figures.add("requests per second", round(len(requests) / elapsed, 1))
    assert unaccounted == 0 and len(synced) == n_connections and overlaps == 0 and failed == 0
    assert skipped == len(requests) - len(messages_per_id)
