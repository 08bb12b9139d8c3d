"""Adversarial fuzz of the publisher loop (issue 26 guarantees 1 and 3)."""
from __future__ import annotations

import os
import random
import time

import pytest

from tests.publisher_360learning.service_harness import (
    BASE, UNITS, Kafka, Truth, assign, build_logs, make_service, revoke, stop, tick, unit_tps)

SEEDS = int(os.environ.get("ADV26_SEEDS", "30"))


def drain(svc, kafka, failing, logs, rounds=3000):
    failing.clear()
    r = 100
    for i in range(rounds):
        for lane in svc.shared.lanes.values():
            lane.not_before = 0
        tick(svc)
        if i % 50 == 49:
            r += 1
            svc.reader.start_round()
            svc.reader.round_start = BASE.timestamp() + 100 * r
        if all(kafka.committed.get(tp) == len(log) for tp, log in logs.items()):
            return True
    return False


def order_violations(truth):
    """An older event of a connection delivered after a newer one of the same partition, the newer
    one never delivered again afterwards."""
    bad = []
    seqs = {}
    for c, tp, o in truth.sequence:
        seqs.setdefault((c, tp), []).append(o)
    for key, s in seqs.items():
        for j, o in enumerate(s):
            later_newer_lost = [x for x in s[:j] if x > o and x not in s[j + 1:]]
            if later_newer_lost:
                bad.append((key, o, later_newer_lost[:3]))
    return bad


def run_seed(seed, *, ops=250, parked=True, revokes=True, stops=True, slow=0.0, partial=False):
    rng = random.Random(seed)
    logs = build_logs(rng, parked=parked)
    truth = Truth()
    kafka = Kafka(logs, truth)
    failing: set = set()
    settings = dict(lane_cap=rng.choice([1, 2, 3]), batch_size=rng.choice([1, 2, 3]),
                    memory_budget=rng.choice([10, 20, 40]) * 5900)
    everything = set().union(*(unit_tps(u) for u in range(UNITS)))
    svc = make_service(kafka, truth, failing, everything, rng, slow=slow, **settings)
    owned = set(range(UNITS))
    r = 0
    for _ in range(ops):
        op = rng.random()
        if op < 0.6:
            tick(svc)
        elif op < 0.7:
            c = f"t{rng.randrange(UNITS)}-c{rng.randrange(3)}"
            if c in failing:
                failing.discard(c)
                if c in svc.shared.lanes:
                    svc.shared.lanes[c].not_before = 0
            else:
                failing.add(c)
        elif op < 0.78:
            r += 1
            svc.reader.start_round()
            svc.reader.round_start = BASE.timestamp() + 100 * r
        elif op < 0.9 and revokes:
            u = rng.randrange(UNITS)
            tps = unit_tps(u)
            if partial and rng.random() < 0.5:
                tps = {rng.choice(sorted(tps))}
            held = svc.shared.consumer.assigned & tps
            if held:
                revoke(svc, held, wait=not slow or rng.random() < 0.5)
                owned.discard(u)
            else:
                assign(svc, tps)
                if svc.shared.consumer.assigned >= unit_tps(u):
                    owned.add(u)
        elif stops:
            stop(svc)
            svc = make_service(kafka, truth, failing, everything, rng, slow=slow, **settings)
            svc.reader.round_start = BASE.timestamp() + 100 * r
            owned = set(range(UNITS))
        if kafka.violations:
            break
    missing = everything - svc.shared.consumer.assigned
    if missing:
        assign(svc, missing)
    if not kafka.violations:
        finished = drain(svc, kafka, failing, logs)
    else:
        finished = True
    stop(svc)
    return kafka, truth, finished, settings


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzz_no_commit_past_an_undelivered_event(seed):
    kafka, truth, finished, settings = run_seed(seed)
    assert not kafka.violations, (settings, kafka.violations[:3])
    assert finished, ("not drained", settings, {tp: kafka.committed.get(tp) for tp in kafka.logs})
    assert not order_violations(truth), order_violations(truth)[:5]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzz_slow_deliveries_left_behind_by_revocations_and_partial_revocations(seed):
    kafka, truth, finished, settings = run_seed(1000 + seed, slow=0.01, partial=True)
    assert not kafka.violations, (settings, kafka.violations[:3])
    assert finished, ("not drained", settings, {tp: kafka.committed.get(tp) for tp in kafka.logs})
    assert not order_violations(truth), order_violations(truth)[:5]
