"""The fleet-wide call budget under attack: the shares in use must never add up to more than an
account's budget, and a 429 must pause the account, not the worker.

Written by a reviewer who saw none of the design (issue 15); each test failed against the first
version of hostspec.runtime.ratebudget.
"""
from __future__ import annotations

from datetime import datetime, timezone

from hostspec.config.connections import ConnectionStore
from hostspec.requests import SyncRequest
from hostspec.errors import RunAbandoned
from hostspec.runtime.membership import Membership
from hostspec.runtime.ratebudget import AccountBudgets, CallGate, RunCalls, shares
from hostspec.runtime.runner import Runner
from hostspec.runtime.tasks import home_partition
from hostspec.runtime.worker import admit
from tests.hostspec.runtime.test_ratebudget import FakeTime

P = 6   # state partitions


def _names_on_partitions(k):
    names, homes = [], set()
    for i in range(1000):
        name = f"group-{i}"
        if home_partition(name, P) not in homes:
            names.append(name)
            homes.add(home_partition(name, P))
        if len(names) == k:
            return names
    raise AssertionError


def _entry(*, calls=None, enabled=True):
    e = {"tenant": "acme", "provider": "coursera", "group_id": "65a1b2c3d4e5f60718293a4b",
         "settings": {"org_id": "o", "client_id": "shared-app", "client_secret": "x", "base_url": "http://127.0.0.1:9"}}
    if calls:
        e["account_calls_per_second"] = calls
    if not enabled:
        e["enabled"] = False
    return e


# --- B1: a connections file edit re-splits the budget on one worker but not on the one already running -------
def test_adding_a_connection_of_the_account_shrinks_the_running_workers_gate(plugins):
    a, b = _names_on_partitions(2)
    pa, pb = home_partition(a, P), home_partition(b, P)
    before = ConnectionStore({a: _entry(calls=4)}, source="<v1>")
    after = ConnectionStore({a: _entry(calls=4), b: _entry(calls=4)}, source="<v2>")   # b added live
    worker_a, worker_b = AccountBudgets(plugins, P), AccountBudgets(plugins, P)
    worker_a.owned({pa}, before)
    gate_a = worker_a.gate(before.get(a, plugins), before)      # a long sync of `a` is running on worker A
    assert gate_a.allowance == 4
    # the file is edited: worker B, owning b's home, starts b's first sync with the new shares
    worker_b.owned({pb}, after)
    gate_b = worker_b.gate(after.get(b, plugins), after)
    assert gate_b.allowance == 2
    # worker A's loop reads the file again (Admitter.admit) and hands the new version over
    worker_a.refresh(after)
    assert gate_a.allowance + gate_b.allowance <= 4, \
        f"{gate_a.allowance} + {gate_b.allowance} calls per second on an account whose budget is 4"


# --- B2: a disabled connection still runs, but its home partition gets no share ------------------------------
def test_a_disabled_connection_that_runs_spends_beyond_the_budget(plugins):
    a, b = _names_on_partitions(2)
    pa, pb = home_partition(a, P), home_partition(b, P)
    store = ConnectionStore({a: _entry(calls=4), b: _entry(calls=4, enabled=False)}, source="<test>")
    # a request for the disabled connection is admitted (a replay, or one queued before it was disabled)
    event = SyncRequest("r1", b, "coursera", "catalog").to_event(datetime.now(timezone.utc))
    admitted = admit(event.to_json().encode(), store, plugins)
    assert isinstance(admitted, tuple), admitted
    worker_a, worker_b = AccountBudgets(plugins, P), AccountBudgets(plugins, P)
    worker_a.owned({pa})
    worker_b.owned({pb})
    ga = worker_a.gate(store.get(a, plugins), store)
    gb = worker_b.gate(store.get(b, plugins), store)
    assert ga.allowance + gb.allowance <= 4, f"{ga.allowance} + {gb.allowance} on a budget of 4"


# --- B3: a pause is unbounded: a huge Retry-After (or a signal from a machine whose clock is ahead) ----------
def test_a_huge_retry_after_does_not_stall_the_accounts_runs_for_days():
    t = FakeTime()
    g = CallGate("coursera/app", 4, clock=t.clock, sleep=t.sleep)
    g.throttled(7 * 86_400)        # "Retry-After: 604800" (or an HTTP-date a week ahead), seen once
    start = t.now
    stuck = {"s": 0.0}

    def should_stop():
        stuck["s"] = t.now - start
        return stuck["s"] > 3 * 3600     # give up the experiment after three hours of waiting
    try:
        RunCalls(g, should_stop).acquire()
    except RunAbandoned:
        pass
    # the provider clients cap their own waits at max_retry_after_s (120 s by default, 3600 at most)
    assert stuck["s"] <= 3600, f"every run of the account waits {stuck['s'] / 3600:.0f}h+ in acquire()"


def test_a_signal_from_a_worker_whose_clock_runs_ahead_does_not_pause_this_one_for_an_hour():
    """Signals carry durations (hostspec.transport.signals): whatever the sender's clock says, a
    1-second Retry-After pauses the receiver about a second from when it reads the signal."""
    import json

    from hostspec.transport.signals import RateSignals

    received = []
    signals = RateSignals.__new__(RateSignals)          # its decoding only: no broker
    signals._worker, signals._on_signal = "w2", lambda account, pause_s: received.append((account, pause_s))
    signals._apply(json.dumps({"account": "coursera/app", "pause_s": 1.0, "worker": "w1"}).encode())
    assert received == [("coursera/app", 1.0)]
    receiver = FakeTime()
    g = CallGate("coursera/app", 4, clock=receiver.clock, sleep=receiver.sleep)
    g.pause(received[0][1])
    start = receiver.now
    RunCalls(g, lambda: receiver.now - start > 7200).acquire()
    assert receiver.now - start <= 60, f"paused {receiver.now - start:.0f}s for a 1-second Retry-After"


# --- B4: a run thread must not set the owned partitions (its snapshot may be older than a revocation) -------
def test_only_the_main_loop_tells_the_budgets_which_partitions_it_owns():
    import inspect

    assert ".owned(" not in inspect.getsource(Runner._run)
    assert ".owned(" in inspect.getsource(Membership.log_partitions)


# --- B5: more home partitions than calls per second: the documented floor, and a warning ------------------
def test_a_budget_below_the_number_of_home_partitions_is_raised_to_it_and_said(plugins, caplog):
    homes = {p: 1 for p in range(6)}          # six groups of one company, a budget of 4
    assert sum(shares(4, homes).values()) == 6
    names = _names_on_partitions(6)
    store = ConnectionStore({n: _entry(calls=4) for n in names}, source="<test>")
    budgets = AccountBudgets(plugins, P)
    budgets.owned(range(P), store)
    assert budgets.gate(store.get(names[0], plugins), store).allowance == 6
    assert "a budget of 4 calls per second for connections on 6 partitions" in caplog.text
