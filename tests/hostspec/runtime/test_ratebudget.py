"""The call budget of a provider account: gates, shares by home partition, 429s for everyone."""
from __future__ import annotations

import threading

import pytest
import requests

from hostspec.config.connections import ConnectionStore
from hostspec.errors import RunAbandoned
from hostspec.kit.http import gate_session
from hostspec.runtime.ratebudget import (
    GUARD_S,
    WINDOW_S,
    AccountBudgets,
    CallGate,
    RunCalls,
    shares,
)
from hostspec.runtime.tasks import home_partition


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def gate(allowance, t, **kw):
    return CallGate("coursera/app", allowance, clock=t.clock, sleep=t.sleep, **kw)


def max_in_any_window(times, window=WINDOW_S):
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


def test_a_gate_lets_its_allowance_start_in_any_one_second_window():
    t = FakeTime()
    g = gate(4, t)
    starts = []
    for _ in range(40):
        g.acquire()
        starts.append(t.now)
        g.done()
    assert max_in_any_window(starts) == 4
    assert starts[-1] - starts[0] == pytest.approx(9 * (WINDOW_S + GUARD_S), abs=0.3)   # 10 windows' worth


def test_a_call_counts_from_its_end_so_a_late_arrival_never_crowds_a_window():
    """Two calls in flight fill an allowance of two; the next may start only a second after one
    of them ended: it arrives at least a second after any earlier call arrived."""
    t = FakeTime()
    g = gate(2, t)
    g.acquire()
    g.acquire()
    with pytest.raises(RunAbandoned):             # both still in flight: a third waits (here: for ever)
        g.acquire(should_stop=lambda: t.now > 1030)
    t.now = 1040.0
    g.done()                                      # the first one ends at 1040
    g.acquire()
    assert t.now >= 1040.0 + WINDOW_S


def test_a_429_pauses_until_retry_after_halves_the_allowance_and_tells_the_others():
    t, told = FakeTime(), []
    g = gate(8, t, on_throttle=lambda account, until: told.append((account, until)), recover_s=10)
    g.acquire()
    g.done()
    g.throttled(3.0)
    assert told == [("coursera/app", 3.0)] and g.allowance == 4
    g.acquire()
    g.done()
    assert t.now >= 1003.0                      # nothing before the Retry-After
    for _ in range(400):                        # grows back by one call every 10 s without 429
        g.acquire()
        g.done()
    assert g.allowance == 8


def test_a_signal_from_another_worker_pauses_this_gate_without_echoing_it():
    t, told = FakeTime(), []
    g = gate(4, t, on_throttle=lambda *a: told.append(a))
    g.pause(5)
    g.acquire()
    assert t.now >= 1005.0 and told == [] and g.allowance == 2


def test_a_run_told_to_stop_makes_no_further_call():
    t = FakeTime()
    g = gate(1, t)
    stop = threading.Event()
    calls = RunCalls(g, stop.is_set)
    calls.acquire()
    calls.done()
    stop.set()
    with pytest.raises(RunAbandoned):
        calls.acquire()


@pytest.mark.parametrize("budget, homes, expected", [
    (4, {0: 1, 3: 1}, {0: 2, 3: 2}),
    (5, {0: 1, 3: 1}, {0: 3, 3: 2}),            # largest remainder, ties to the lower partition
    (10, {1: 3, 2: 1}, {1: 7, 2: 3}),
    (2, {0: 1, 1: 1, 2: 1}, {0: 1, 1: 1, 2: 1}),   # at least one each
    (4, {}, {}),
])
def test_shares_split_the_budget_among_home_partitions(budget, homes, expected):
    assert shares(budget, homes) == expected
    if homes and budget >= len(homes):
        assert sum(shares(budget, homes).values()) == budget


def _names_on_two_partitions():
    names, homes = [], set()
    for i in range(100):
        name = f"group-{i}"
        if home_partition(name, 6) not in homes:
            names.append(name)
            homes.add(home_partition(name, 6))
        if len(names) == 2:
            return names
    raise AssertionError("no two names on two partitions")


def _store(names, *, client_id="shared-app", calls=None):
    entries = {}
    for n in names:
        entries[n] = {"tenant": "acme", "provider": "coursera", "group_id": "65a1b2c3d4e5f60718293a4b",
                      "settings": {"org_id": "o", "client_id": client_id, "client_secret": "x",
                                   "base_url": "http://127.0.0.1:9"}}
        if calls:
            entries[n]["account_calls_per_second"] = calls
    return ConnectionStore(entries, source="<test>")


def test_a_worker_spends_the_shares_of_the_partitions_it_owns(plugins):
    a, b = _names_on_two_partitions()
    store = _store([a, b], calls=6)
    pa, pb = home_partition(a, 6), home_partition(b, 6)
    one, both = AccountBudgets(plugins, 6), AccountBudgets(plugins, 6)
    one.owned({pa})
    both.owned({pa, pb})
    conn = store.get(a, plugins)
    assert one.key(conn, store).name == "acme:coursera/shared-app"
    assert one.gate(conn, store).allowance == 3          # half of 6: the other half is the owner of pb's
    assert both.gate(conn, store).allowance == 6         # one worker owning both pools them
    one.owned({pa, pb})                                  # it took pb over: its gate follows
    assert one.gate(conn, store).allowance == 6


def test_connections_of_different_accounts_have_their_own_gates(plugins):
    a, b = _names_on_two_partitions()
    store = ConnectionStore({**_store([a], client_id="app-1")._raw, **_store([b], client_id="app-2")._raw},
                            source="<test>")
    budgets = AccountBudgets(plugins, 6)
    budgets.owned(range(6))
    ga, gb = budgets.gate(store.get(a, plugins), store), budgets.gate(store.get(b, plugins), store)
    assert ga is not gb and ga.allowance == gb.allowance == 4     # Coursera's default budget each


def test_a_session_through_a_gate_paces_its_calls_and_reports_429s(sandbox):
    got = []
    g = CallGate("coursera/app", 3, on_throttle=lambda account, until: got.append(until))
    session = gate_session(requests.Session(), RunCalls(g, lambda: False))
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    requests.post(sandbox.url + "/_sandbox/faults", timeout=5,
                  json={"route": "/ent/api/businesses.v1/*", "action": "status_429", "retry_after": "1",
                        "after_n_calls": 6, "times": 1})
    for _ in range(9):
        session.get(sandbox.url + f"/ent/api/businesses.v1/{sandbox.spec.org_id}", timeout=5)
    log = requests.get(sandbox.url + "/_sandbox/requests", timeout=5).json()
    assert max_in_any_window([r["at"] for r in log]) <= 3
    throttled = [r for r in log if r["status"] == 429]
    assert len(throttled) == 1 and len(got) == 1
    after = [r["at"] for r in log if r["at"] > throttled[0]["at"]]
    assert after and min(after) >= throttled[0]["at"] + 0.95     # paused for the Retry-After


def test_a_coursera_run_spends_its_calls_through_the_gate_the_host_gives_it(sandbox, plugins):
    from hostspec.engine.run import SyncEngine
    from hostspec.requests import SyncRequest
    from hostspec.engine.sinks import MemorySink
    from tests.conftest import sandbox_connection

    connection = sandbox_connection(sandbox, plugins, page_size=10)
    g = CallGate("coursera/app", 5)
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    report = SyncEngine(plugins, MemorySink(), calls=lambda c: RunCalls(g, lambda: False)).run(
        SyncRequest("r", connection.name, "coursera"), connection)
    log = requests.get(sandbox.url + "/_sandbox/requests", timeout=5).json()
    assert report.outcome == "completed" and len(log) >= 12
    assert max_in_any_window([r["at"] for r in log]) == 5 and g.waited_s > 0
