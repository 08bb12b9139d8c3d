"""One call budget per provider account across the fleet, measured where the provider sees it.

Two connections of one company share a Coursera client id; their home partitions belong to two
different workers, which run them at the same time. The sandbox logs when each call arrived: in
no one-second window may the two together exceed the account's budget, and a 429 answered to
one worker pauses the other too (issue 15).
"""
from __future__ import annotations

import re
import time

import pytest
import requests as http

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.runtime.tasks import home_partition
from tests.conftest import connections_toml
from tests.integration.conftest import final_status, publish_raw, request_event

pytestmark = pytest.mark.kafka
BUDGET = 4


def max_in_any_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


def _two_workers_two_homes(tmp_path, sb, workers):
    """Two workers sharing the six partitions, and two connections of one account whose homes
    belong one to each (the connections file is written once the assignment is known)."""
    path = tmp_path / "c.toml"
    path.write_text(connections_toml(sb.url, secret_env="IT_COURSERA_SECRET", names=("idle",), org_id=sb.spec.org_id))
    fleet = [workers(path, f"w{i}") for i in (1, 2)]
    deadline = time.monotonic() + 120
    while sorted(p for w in fleet for p in w.assigned()) != list(range(6)) or not all(w.assigned() for w in fleet):
        assert time.monotonic() < deadline, [w.log()[-2000:] for w in fleet]
        time.sleep(0.2)
    names = []
    for worker in fleet:
        owned = set(worker.assigned())
        names.append(next(f"group-{i}" for i in range(200) if home_partition(f"group-{i}", 6) in owned))
    text = connections_toml(sb.url, secret_env="IT_COURSERA_SECRET", names=tuple(names), org_id=sb.spec.org_id,
                            page_size=10)
    text = re.sub(r'(group_id = "[0-9a-f]+"\n)', rf"\1account_calls_per_second = {BUDGET}\n", text)
    path.write_text(text)
    return fleet, names


def _sync_both(bootstrap, topics, names):
    ids = {}
    for name in names:
        ids[name], value = request_event(name)
        publish_raw(bootstrap, topics.requests, value, key=name.encode(), partition=home_partition(name, 6))
    return {name: final_status(bootstrap, topics, rid, timeout=240) for name, rid in ids.items()}


def _api_calls(sb):
    return [r for r in http.get(sb.url + "/_sandbox/requests", timeout=5).json()
            if r["path"].startswith("/ent/api/") or "token" in r["path"]]


def test_two_workers_running_one_account_never_exceed_its_budget(tmp_path, bootstrap, topics, workers, figures):
    with CourseraSandbox(OrgSpec(contents=30, learners=40, enrollments=300)) as sb:
        fleet, names = _two_workers_two_homes(tmp_path, sb, workers)
        http.delete(sb.url + "/_sandbox/requests", timeout=5)
        finals = _sync_both(bootstrap, topics, names)
        calls = _api_calls(sb)
    assert [f["phase"] for f in finals.values()] == ["completed", "completed"], finals
    assert {f["worker"] for f in finals.values()} == {"w1", "w2"}      # one run on each worker
    runs = sorted((f["started_at"], f["ended_at"]) for f in finals.values())
    assert runs[1][0] < runs[0][1], f"the two runs did not overlap: {runs}"
    times = [c["at"] for c in calls]
    peak = max_in_any_window(times)
    mean = (len(times) - 1) / (max(times) - min(times))      # calls per second between the first and the last
    figures.add("API calls of the two runs (seen by the sandbox)", len(times))
    figures.add("most calls in any one-second window", peak, f"<= {BUDGET}", peak <= BUDGET)
    figures.add("mean calls per second", round(mean, 2), f"<= {BUDGET}", mean <= BUDGET)
    assert len(times) >= 40
    assert peak <= BUDGET


def test_a_429_answered_to_one_worker_pauses_the_other(tmp_path, bootstrap, topics, workers, figures):
    with CourseraSandbox(OrgSpec(contents=30, learners=40, enrollments=300)) as sb:
        fleet, names = _two_workers_two_homes(tmp_path, sb, workers)
        http.delete(sb.url + "/_sandbox/requests", timeout=5)
        rule = {"route": "*/enrollmentReports", "action": "status_429", "retry_after": "4", "after_n_calls": 8,
                "times": 1}
        assert http.post(sb.url + "/_sandbox/faults", json=rule, timeout=5).status_code == 201
        finals = _sync_both(bootstrap, topics, names)
        calls = _api_calls(sb)
        signalled = [w.name for w in fleet if "call budget of acme:coursera/standin-key: paused" in w.log()]
    assert [f["phase"] for f in finals.values()] == ["completed", "completed"], finals
    throttled = [c for c in calls if c["status"] == 429]
    assert len(throttled) == 1
    t = throttled[0]["at"]
    during = [c for c in calls if t + 0.5 <= c["at"] < t + 4]      # half a second for the signal to travel
    figures.add("calls by either worker from 0.5 s after the 429 to its Retry-After (4 s)", len(during), "0",
                not during)
    figures.add("workers that paused", len(signalled), "2", len(signalled) == 2)
    assert during == [], during
    assert sorted(signalled) == ["w1", "w2"]
    assert max_in_any_window([c["at"] for c in calls]) <= BUDGET


def test_another_tenant_naming_the_client_id_neither_lowers_nor_pauses_the_first(tmp_path, bootstrap, topics,
                                                                                 workers, figures):
    """acme (a budget of 8) and evilcorp (naming acme's client id with a budget of 1 and its own
    secret, answered 429 with Retry-After 4 s by its sandbox) run on two workers at once (issue 27)."""
    budget = 8
    with CourseraSandbox(OrgSpec(contents=60, learners=40, enrollments=300)) as acme_sb, \
            CourseraSandbox(OrgSpec(contents=20, learners=5, enrollments=20), client_secret="evil-secret") as evil_sb:
        fleet, names = _two_workers_two_homes(tmp_path, acme_sb, workers)
        acme, evil = names
        text = (connections_toml(acme_sb.url, secret_env="IT_COURSERA_SECRET", names=(acme,), org_id=acme_sb.spec.org_id,
                                 page_size=5)
                + connections_toml(evil_sb.url, secret_env="IT_COURSERA_SECRET", names=(evil,),
                                   org_id=evil_sb.spec.org_id, page_size=5))
        text = text.replace('client_secret = { env = "IT_COURSERA_SECRET" }\nbase_url = "' + evil_sb.url,
                            'client_secret = "evil-secret"\nbase_url = "' + evil_sb.url)
        text = text.replace(f'[connections.{evil}]\ntenant = "acme"', f'[connections.{evil}]\ntenant = "evilcorp"')
        text = re.sub(r'(\[connections\.' + re.escape(acme) + r'\]\n(?:.*\n){2}group_id = "[0-9a-f]+"\n)',
                      rf"\1account_calls_per_second = {budget}\n", text)
        text = re.sub(r'(\[connections\.' + re.escape(evil) + r'\]\n(?:.*\n){2}group_id = "[0-9a-f]+"\n)',
                      r"\1account_calls_per_second = 1\n", text)
        assert text.count("account_calls_per_second") == 2 and 'tenant = "evilcorp"' in text
        (tmp_path / "c.toml").write_text(text)
        rule = {"route": "/ent/api/*", "action": "status_429", "retry_after": "4", "after_n_calls": 3, "times": 4}
        assert http.post(evil_sb.url + "/_sandbox/faults", json=rule, timeout=5).status_code == 201
        time.sleep(1.5)                                          # both workers read the file again
        for sb in (acme_sb, evil_sb):
            http.delete(sb.url + "/_sandbox/requests", timeout=5)
        finals = _sync_both(bootstrap, topics, names)
        acme_calls, evil_calls = _api_calls(acme_sb), _api_calls(evil_sb)
        logs = {w.name: w.log() for w in fleet}
    assert finals[acme]["phase"] == "completed", finals
    throttled = [c["at"] for c in evil_calls if c["status"] == 429]
    assert throttled, "evilcorp was never answered 429"
    times = sorted(c["at"] for c in acme_calls)
    peak = max_in_any_window(times)
    after = [t for t in times if throttled[0] <= t]
    gap = max((b - a for a, b in zip(after, after[1:])), default=0.0)
    figures.add("acme: most calls in any one-second window (its budget 8; evilcorp's 1)", peak, "7-8",
                budget - 1 <= peak <= budget)
    figures.add("acme: longest wait between two calls after evilcorp's first 429 (Retry-After 4 s)",
                round(gap, 2), "< 2", gap < 2)
    assert budget - 1 <= peak <= budget
    assert after and gap < 2, f"acme waited {gap:.1f}s"
    assert not any("call budget of acme:" in text for text in logs.values())
    assert any("call budget of evilcorp:coursera/standin-key: paused" in text for text in logs.values())
