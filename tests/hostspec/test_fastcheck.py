"""The compiled pre-check never clears data marshmallow would reject, and clears real events."""
from __future__ import annotations

import copy
import random

import pytest

from hostspec import events as ev
from hostspec.event_schemas import LearnerStatDataSchema
from hostspec.fastcheck import compile_check

ODD_VALUES = [None, "", " ", "x", 0, 1, -1, 100, 100.0001, -0.0001, 1e308, float("nan"), float("inf"), True, False,
              [], {}, ["x"], {"a": 1}, "2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z",
              "2026-02-30T00:00:00.000Z", "2026-01-01T00:00:00.1234567Z", "2026-01-01T24:00:00Z",
              "2026-01-01T00:00:00+0100", "2026-01-01T00:00:00.000+01:00", "2026-01-01 00:00:00Z",
              "not-an-email", "a@b", "a@b.c", "https://x", "ftp://x", "javascript:x", "completed", "passed",
              "native", "retained", "course", "en", "pt_BR", "EN", "0" * 64, "f" * 63, b"bytes", 12.5, "12.5"]


def mutations(sample, rng, n):
    """n random mutations of ``sample``: values replaced, keys dropped or added, at any depth."""
    def paths(obj, prefix=()):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield prefix + (k,)
                yield from paths(v, prefix + (k,))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield prefix + (i,)
                yield from paths(v, prefix + (i,))

    all_paths = list(paths(sample))
    for _ in range(n):
        data = copy.deepcopy(sample)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            path = rng.choice(all_paths)
            parent = data
            try:
                for part in path[:-1]:
                    parent = parent[part]
                action = rng.random()
                if action < 0.15 and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                elif action < 0.25 and isinstance(parent, dict):
                    parent[rng.choice(["extra", "Title", "fingerprint2", "completion_status"])] = rng.choice(ODD_VALUES)
                else:
                    parent[path[-1]] = rng.choice(ODD_VALUES)
            except (KeyError, IndexError, TypeError):
                continue
        yield data


@pytest.fixture(scope="module")
def samples():
    from tests.hostspec.test_contracts import sample_events as _unused  # noqa: F401  (documents origin)
    from connector_coursera.sandbox import OrgSpec
    from tests.conftest import sandbox_sync_events

    return sandbox_sync_events(OrgSpec(contents=15, learners=10, enrollments=80, broken_every=9)).events


def test_real_events_take_the_fast_path(samples):
    for event in samples:
        assert ev._fast_checks[event.type](event.data), event.type


@pytest.mark.parametrize("type_", [ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED, ev.SYNC_STATUS, ev.RECORD_REJECTED])
def test_fast_check_never_clears_what_marshmallow_rejects(samples, type_):
    rng = random.Random(hash(type_) & 0xFFFF)
    fast, schema = ev._fast_checks[type_], ev.DATA_SCHEMAS[type_]()
    bases = [e.data for e in samples if e.type == type_][:12]
    cleared = rejected = 0
    for base in bases:
        for data in mutations(base, rng, 600):
            verdict = schema.validate(data) == {}
            if fast(data):
                cleared += 1
                assert verdict, (data, schema.validate(data))
            if not verdict:
                rejected += 1
    assert rejected > 500 and cleared > 50  # the mutations really exercised both sides


def test_rules_run_in_the_fast_path_too():
    check = compile_check(LearnerStatDataSchema)
    from tests.hostspec.test_events import stat_data

    assert check(stat_data())
    assert not check(stat_data(completion_status="completed", progress_percent=50.0))


def test_a_remembered_check_asks_once_per_value_and_forgets_at_its_bound():
    """Regular-expression checks are remembered per value (a run repeats tenants, emails, dates);
    the memory is bounded: past MEMO_SIZE newer values, an old one is asked again."""
    from hostspec.fastcheck import MEMO_SIZE, _memo

    asked = []
    check = _memo(lambda v: asked.append(v) or v.startswith("ok"))
    assert [check("ok-1"), check("bad"), check("ok-1"), check("bad")] == [True, False, True, False]
    assert asked == ["ok-1", "bad"]
    for i in range(MEMO_SIZE):
        check(f"ok-{i}-x")
    asked.clear()
    check("ok-1")
    assert asked == ["ok-1"]          # forgotten once the memory filled up
