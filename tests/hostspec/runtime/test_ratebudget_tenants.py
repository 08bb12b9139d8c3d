"""A provider account's budget belongs to its owner: another tenant naming the same client id can
neither lower it nor pause it (issue 27). An account is the tenant, the provider, the client id
and the secret held (:mod:`hostspec.accounts`); the operator's policy alone shares one across
tenants."""
from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.accounts import account_key, shared_accounts
from hostspec.config.connections import ConnectionStore
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import ConfigError
from hostspec.config.policy import SettingsPolicy
from hostspec.runtime.ratebudget import AccountBudgets, RunCalls
from hostspec.engine.sinks import MemorySink
from tests.hostspec.runtime.test_ratebudget import max_in_any_window

P = 6


def _entry(tenant, *, client_id="acme-app", secret="acme-secret", calls=None, base_url="http://127.0.0.1:9",
           org_id="o"):
    e = {"tenant": tenant, "provider": "coursera", "group_id": "65a1b2c3d4e5f60718293a4b",
         "settings": {"org_id": org_id, "client_id": client_id, "client_secret": secret, "base_url": base_url,
                      "page_size": 5, "max_retry_after_s": 0.2}}
    if calls:
        e["account_calls_per_second"] = calls
    return e


def _budgets(plugins, store, **kw):
    budgets = AccountBudgets(plugins, P, **kw)
    budgets.owned(range(P), store)        # one worker owning every partition: the whole budgets are its
    return budgets


def test_another_tenant_naming_the_client_id_gets_its_own_budget_and_cannot_lower_the_first(plugins):
    store = ConnectionStore({"acme-coursera": _entry("acme", calls=8),
                             "evil-coursera": _entry("evilcorp", secret="guess", calls=1),
                             "evil-same-secret": _entry("evilcorp", calls=1)}, source="<test>")
    budgets = _budgets(plugins, store)
    acme, evil, evil_same = (budgets.gate(store.get(n, plugins), store)
                             for n in ("acme-coursera", "evil-coursera", "evil-same-secret"))
    assert acme.allowance == 8                       # not min(8, 1): evilcorp's setting is its own budget's
    assert evil.allowance == 1 and evil_same.allowance == 1
    assert len({id(acme), id(evil), id(evil_same)}) == 3   # even holding acme's secret, evilcorp is not acme
    assert acme.account == "acme:coursera/acme-app" and evil.account == "evilcorp:coursera/acme-app"


def test_within_a_tenant_only_holders_of_the_same_secret_share_a_budget(plugins):
    store = ConnectionStore({"a1": _entry("acme", calls=8), "a2": _entry("acme", calls=6),
                             "a3": _entry("acme", secret="a-wrong-secret", calls=1)}, source="<test>")
    budgets = _budgets(plugins, store)
    g1, g2, g3 = (budgets.gate(store.get(n, plugins), store) for n in ("a1", "a2", "a3"))
    assert g1 is g2 and g1.allowance == 6            # the tenant's own connections: the smallest of theirs
    assert g3 is not g1 and g3.allowance == 1        # a wrong secret lowers nothing of the real account's


def test_a_429_of_another_tenant_pauses_only_its_own_gates_on_every_worker(plugins):
    """The signal travels under the account's opaque id: a worker pauses the gate of that account only."""
    store = ConnectionStore({"acme-coursera": _entry("acme", calls=8),
                             "evil-coursera": _entry("evilcorp", calls=8)}, source="<test>")
    other_worker = _budgets(plugins, store)
    this_worker = _budgets(plugins, store, on_throttle=other_worker.signal)
    acme_there = other_worker.gate(store.get("acme-coursera", plugins), store)
    evil_there = other_worker.gate(store.get("evil-coursera", plugins), store)
    this_worker.gate(store.get("evil-coursera", plugins), store).throttled(30.0)
    assert evil_there.allowance == 4 and evil_there._paused_until > time.monotonic() + 20
    assert acme_there.allowance == 8 and acme_there._paused_until < time.monotonic()


def test_a_signal_names_no_tenant_client_id_or_secret(plugins, caplog):
    sent = []
    store = ConnectionStore({"acme-coursera": _entry("acme", secret="s3cr3t-value")}, source="<test>")
    budgets = _budgets(plugins, store, on_throttle=lambda account, pause_s: sent.append(account))
    with caplog.at_level(logging.DEBUG):
        gate = budgets.gate(store.get("acme-coursera", plugins), store)
        gate.throttled(1.0)
    (account_id,) = sent
    assert all(part not in account_id for part in ("acme", "acme-app", "s3cr3t-value"))
    assert account_id not in caplog.text and "s3cr3t-value" not in caplog.text
    assert "call budget of acme:coursera/acme-app: paused" in caplog.text
    assert account_id not in repr(gate) and account_id not in repr(budgets.key(store.get("acme-coursera", plugins),
                                                                              store))


def test_the_operator_policy_shares_an_account_across_named_tenants_with_its_budget(plugins, monkeypatch):
    # each tenant names the secret in its own namespace; the same value is the same account
    for name in ("CONNECTOR_SECRET_ACME__APP", "CONNECTOR_SECRET_ACME_EU__APP", "CONNECTOR_SECRET_EVILCORP__APP"):
        monkeypatch.setenv(name, "acme-secret")
    policy = SettingsPolicy.from_mapping({"allow_sandboxes": True, "shared_accounts": {
        "coursera/acme-app": {"tenants": ["acme", "acme-eu"], "calls_per_second": 10}}})
    store = ConnectionStore({"acme": _entry("acme", secret={"env": "CONNECTOR_SECRET_ACME__APP"}, calls=2),
                             "acme-eu": _entry("acme-eu", secret={"env": "CONNECTOR_SECRET_ACME_EU__APP"}),
                             "acme-eu-other-secret": _entry("acme-eu",
                                                            secret={"env": "CONNECTOR_SECRET_ACME_EU__WRONG"}),
                             "evil": _entry("evilcorp", secret={"env": "CONNECTOR_SECRET_EVILCORP__APP"}, calls=1)},
                            source="<test>", policy=policy)
    budgets = _budgets(plugins, store)
    acme, eu, eu_other, evil = (budgets.gate(store.get(n, plugins), store)
                                for n in ("acme", "acme-eu", "acme-eu-other-secret", "evil"))
    assert acme is eu and acme.allowance == 10 and acme.account == "coursera/acme-app (shared)"
    assert eu_other is not acme                 # listed, but without the secret: not the shared account
    assert evil is not acme and evil.allowance == 1 and evil.account == "evilcorp:coursera/acme-app"


@pytest.mark.parametrize("table, problem", [
    ({"coursera": {"tenants": ["a"], "calls_per_second": 1}}, "provider/client id"),
    ({"coursera/x": {"tenants": [], "calls_per_second": 1}}, "tenants must be a non-empty list"),
    ({"coursera/x": {"tenants": ["a"], "calls_per_second": 0}}, "calls_per_second must be a whole number"),
    ({"coursera/x": {"tenants": ["a"]}}, "exactly tenants"),
    ([], "must map"),
])
def test_a_malformed_shared_account_is_refused_with_its_place(table, problem):
    with pytest.raises(ConfigError, match=problem):
        shared_accounts(table, source="policy.toml")


def test_an_account_key_never_shows_the_secret_digest(plugins):
    store = ConnectionStore({"c": _entry("acme")}, source="<test>")
    key = account_key(store.get("c", plugins), plugins)
    assert key.id not in repr(key) and key.name in repr(key)


# -- measured by the provider over HTTP --------------------------------------------------------------------
BUDGET = 8
RETRY_AFTER = 4


def _calls(sb):
    return [r for r in requests.get(sb.url + "/_sandbox/requests", timeout=5).json()
            if r["path"].startswith("/ent/api/")]


def test_a_tenant_keeps_its_budget_and_runs_on_through_another_tenants_429s(plugins):
    """acme (a budget of 8 calls per second) syncs from its sandbox; evilcorp names acme's client
    id with a budget of 1 and its own secret, at a sandbox that answers it 429 (Retry-After 4 s).
    The gate's 429 signal is looped back into the same budgets, as another worker would apply it."""
    with CourseraSandbox(OrgSpec(contents=60, learners=40, enrollments=300)) as acme_sb, \
            CourseraSandbox(OrgSpec(contents=5, learners=2, enrollments=4), client_secret="evil-secret") as evil_sb:
        store = ConnectionStore({
            "acme-coursera": _entry("acme", client_id=acme_sb.client_id, secret=acme_sb.client_secret,
                                    calls=BUDGET, base_url=acme_sb.url, org_id=acme_sb.spec.org_id),
            "evil-coursera": _entry("evilcorp", client_id=acme_sb.client_id, secret=evil_sb.client_secret,
                                    calls=1, base_url=evil_sb.url, org_id=evil_sb.spec.org_id)}, source="<test>")
        holder: dict[str, AccountBudgets] = {}
        budgets = holder["b"] = _budgets(plugins, store, on_throttle=lambda a, s: holder["b"].signal(a, s))

        def run(name, out):
            connection = store.get(name, plugins)
            engine = SyncEngine(plugins, MemorySink(),
                                calls=lambda c: RunCalls(budgets.gate(c, store), lambda: False))
            out[name] = engine.run(SyncRequest(f"r-{name}", name, "coursera"), connection)

        requests.post(evil_sb.url + "/_sandbox/faults", timeout=5,
                      json={"route": "/ent/api/*", "action": "status_429", "retry_after": str(RETRY_AFTER),
                            "times": 3})
        reports: dict = {}
        acme = threading.Thread(target=run, args=("acme-coursera", reports))
        acme.start()
        while len(_calls(acme_sb)) < 10:                # acme is running at full speed ...
            time.sleep(0.05)
        run("evil-coursera", reports)                   # ... when evilcorp is answered 429 (and signals it)
        acme.join(120)
        acme_calls, evil_calls = _calls(acme_sb), _calls(evil_sb)
        acme_gate = budgets.gate(store.get("acme-coursera", plugins), store)
    assert reports["acme-coursera"].outcome == "completed"
    throttled = [c["at"] for c in evil_calls if c["status"] == 429]
    assert throttled, "evilcorp was never answered 429: the test proves nothing"
    times = sorted(c["at"] for c in acme_calls)
    peak = max_in_any_window(times)
    mean = (len(times) - 1) / (times[-1] - times[0])
    assert peak == BUDGET, f"acme's calls peaked at {peak} per second, its budget is {BUDGET}"
    assert mean > BUDGET / 2, f"acme made {mean:.1f} calls per second on average"
    after = [t for t in times if t > throttled[0]]
    assert after and after[0] - throttled[0] < 1.0, "acme paused by evilcorp's 429"
    gaps = [b - a for a, b in zip(after, after[1:])]
    assert max(gaps, default=0) < RETRY_AFTER / 2, f"acme waited {max(gaps):.1f}s between two calls"
    assert acme_gate.allowance == BUDGET                # not halved by evilcorp's 429s
