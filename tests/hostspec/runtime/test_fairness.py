"""Fair request queues: the caps on pending requests per connection and per tenant, the refusals
beyond them, and whose turn it is when a thread is free (no Kafka: the worker's admission and
dispatch on a partition task of its own)."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from hostspec import events as ev
from hostspec.config.connections import ConnectionStore
from hostspec.engine.emit import REQUEST_DONE
from hostspec.requests import SyncRequest
from hostspec.errors import ConfigError
from hostspec.runtime.fairness import TOO_MANY_PENDING, Admission, PendingCaps, held_requests, next_turn
from hostspec.runtime.ratebudget import AccountBudgets
from hostspec.engine.state import StateDB, StateSession
from hostspec.runtime.tasks import PartitionTask, Running, home_partition
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import InboundMessage
from hostspec.runtime.worker import MAX_BACKLOG, Worker, WorkerSettings

DAY = datetime(2024, 1, 1, tzinfo=timezone.utc)


# -- the pure rules --------------------------------------------------------------------------------
def test_a_connection_holds_at_most_its_cap_and_its_neighbours_are_not_counted_with_it():
    admission = Admission(PendingCaps(per_connection=3, per_tenant=10), [])
    assert [admission.take("acme", "a") for _ in range(3)] == [None, None, None]
    refused = admission.take("acme", "a")
    assert refused is not None and "connection 'a' has 3 requests waiting or running (at most 3)" in refused.reason
    assert "retry later" in refused.reason and TOO_MANY_PENDING in refused.errors["connection"][0]
    assert admission.take("acme", "b") is None          # another connection of the same tenant
    assert admission.take("initech", "c") is None       # another tenant


def test_a_tenant_holds_at_most_its_cap_whatever_the_number_of_its_connections():
    admission = Admission(PendingCaps(per_connection=3, per_tenant=5), [])
    taken = [admission.take("acme", name) for name in ("a", "b", "c", "d", "e")]
    assert taken == [None] * 5
    refused = admission.take("acme", "f")
    assert refused is not None and "tenant 'acme' on this partition has 5 requests" in refused.reason
    assert admission.take("initech", "g") is None


def test_what_a_partition_already_holds_counts_running_and_merged_requests_included():
    def pending(tenant, name, followers=0):
        connection = SimpleNamespace(tenant=tenant, name=name)
        return SimpleNamespace(connection=connection, followers=[object()] * followers)

    waiting = {"a": [pending("acme", "a"), pending("acme", "a", followers=2)], "z": [pending("zeta", "z")]}
    running = {"b": SimpleNamespace(pending=pending("acme", "b", followers=1))}
    held = sorted(held_requests(waiting, running))
    assert held == [("acme", "a")] * 4 + [("acme", "b")] * 2 + [("zeta", "z")]
    admission = Admission(PendingCaps(per_connection=4, per_tenant=7), held)
    assert admission.take("acme", "a") is not None          # 4 held for a: at its cap
    assert admission.take("acme", "b") is None              # 7th of acme
    assert admission.take("acme", "c") is not None          # acme at its cap
    assert admission.take("zeta", "z") is None


@pytest.mark.parametrize("caps, words", [
    (dict(per_connection=0), "per connection must be a whole number of at least 1, not 0"),
    (dict(per_tenant=True), "per tenant must be a whole number"),
    (dict(per_connection=2.5), "not 2.5"),
    (dict(per_tenant=500), "per tenant (500) must be below 500"),
])
def test_caps_that_cannot_work_are_refused_with_a_clear_error(caps, words):
    with pytest.raises(ConfigError) as raised:
        PendingCaps(**caps)
    assert words in str(raised.value) and raised.value.kind == "config"


def test_the_next_turn_goes_to_the_least_busy_tenant_then_in_queue_order():
    candidates = [("n1", "noisy"), ("n2", "noisy"), ("q", "quiet"), ("o", "other")]
    assert next_turn(candidates, {}) == "n1"
    assert next_turn(candidates, {"noisy": 2}) == "q"
    assert next_turn(candidates, {"noisy": 2, "quiet": 1}) == "o"
    assert next_turn(candidates, {"noisy": 1, "quiet": 1, "other": 1}) == "n1"
    with pytest.raises(ValueError):
        next_turn([], {})


# -- the worker's admission and dispatch, on a partition task of its own ---------------------------
def _names(count: int, stem: str) -> list[str]:
    return [n for n in (f"{stem}{i}" for i in range(400)) if home_partition(n, 6) == 0][:count]


NOISY, QUIET = _names(3, "noisy"), _names(1, "quiet")[0]


@pytest.fixture
def worker(plugins, monkeypatch):
    monkeypatch.setenv("FAIRNESS_SECRET", "s")

    def entry(tenant):
        return {"tenant": tenant, "provider": "coursera", "group_id": "65a1b2c3d4e5f60718293a4b",
                "settings": {"org_id": "o", "client_id": tenant, "client_secret": {"env": "FAIRNESS_SECRET"}}}

    store = ConnectionStore({**{n: entry("noisy") for n in NOISY}, QUIET: entry("quiet")}, source="test")
    source = SimpleNamespace(source="test", store=lambda: store, catch_up=lambda timeout_s=5: False)
    w = Worker(plugins, source, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(),
               WorkerSettings(max_pending_per_connection=5, max_pending_per_tenant=8, concurrency=2))
    w.resources.state_partitions = 6
    w.resources.budgets = AccountBudgets(plugins, 6)
    started: list[str] = []

    def start(task, pending):          # a run without its thread: the dispatch is what is tested
        task.started(pending.connection.name, Running(pending, Future()))
        w.runner.running += 1
        started.append(pending.connection.name)

    monkeypatch.setattr(w.runner, "start", start)
    w.started = started
    return w


@pytest.fixture
def task():
    t = PartitionTask(("learning.sync.requests", 0), state_partition=0, membership=lambda: None)
    t.store = StateDB()
    t.start_offset = 0
    t.start()
    yield t
    t.store.close()


def _replay(connection: str, day: int, request_id: str | None = None) -> SyncRequest:
    """A dry-run replay of one day: no two days merge."""
    return SyncRequest(request_id or str(uuid.uuid4()), connection, "coursera", "progress", "test", dry_run=True,
                       since=DAY + timedelta(days=day), until=DAY + timedelta(days=day, hours=12))


def _read(task: PartitionTask, requests: list[SyncRequest], first: int = 0) -> None:
    """What the poll loop does with the requests it reads (offsets from ``first``)."""
    for offset, r in enumerate(requests, first):
        task.fetched(offset)
        task.backlog.append(InboundMessage(task.tp[0], 0, offset, r.connection.encode(),
                                           r.to_event(DAY).to_json().encode()))


def _held(task: PartitionTask) -> dict[str, int]:
    return {name: len(queue) for name, queue in task.waiting.items()}


def _events(outgoing, type_):
    return [json.loads(r.value) for o in outgoing for r in o.records if json.loads(r.value)["type"] == type_]


def test_a_flood_beyond_the_caps_is_refused_at_once_and_the_next_tenant_is_queued(worker, task):
    flood = [_replay(NOISY[i % 3], i) for i in range(1_000)]
    other = _replay(QUIET, 0)
    _read(task, [*flood, other])
    outgoing = []
    worker.admitter.admit(task, outgoing)

    held = _held(task)
    assert held[QUIET] == 1                                       # read and queued, behind no one
    assert sum(held[n] for n in NOISY) == 8 and all(held[n] <= 5 for n in NOISY)
    assert len(outgoing) == 1_000 - 8 and {o.outcome for o in outgoing} == {TOO_MANY_PENDING}
    assert task.unfinished == 1_001 and task.unfinished - len(outgoing) < MAX_BACKLOG   # held: 9
    statuses = _events(outgoing, ev.SYNC_STATUS)
    letters = _events(outgoing, ev.RECORD_REJECTED)
    flood_ids = {r.request_id for r in flood}
    assert len(statuses) == len(letters) == len(outgoing)
    assert {s["data"]["request_id"] for s in statuses} <= flood_ids
    for s in statuses:
        assert s["data"]["phase"] == "failed" and s["data"]["error"]["kind"] == TOO_MANY_PENDING
        assert s["data"]["tenant"] == "noisy" and "retry later" in s["data"]["error"]["message"]
    assert all(d["data"]["stage"] == "request" and d["data"]["raw_value"] for d in letters)   # kept, to re-drive


def test_a_request_over_the_cap_that_already_ran_ends_as_it_did_not_refused(worker, task):
    """Read again after a take-over (the previous owner ran it): over the cap it ends silently,
    as it would have at its turn; never a failed status after its completed one."""
    name = NOISY[0]
    requests = [_replay(name, i) for i in range(6)]
    session = StateSession(task.store, worker.connections.store().get(name, worker.plugins).state_scope)
    session.set_checkpoint(f"{REQUEST_DONE}{requests[5].request_id}",
                           {"origin": f"{task.tp[0]}:0:5", "outcome": "completed"})   # its offset: 5
    session.commit()
    _read(task, requests)
    outgoing = []
    worker.admitter.admit(task, outgoing)
    assert _held(task) == {name: 5}
    assert [o.outcome for o in outgoing] == ["redelivered"] and outgoing[0].records == []


def test_room_made_by_ended_requests_is_given_to_later_ones(worker, task):
    name = NOISY[0]
    _read(task, [_replay(name, i) for i in range(7)])
    outgoing = []
    worker.admitter.admit(task, outgoing)
    assert _held(task) == {name: 5} and len(outgoing) == 2
    for _ in range(2):                                   # two requests end
        task.waiting[name].popleft()
    _read(task, [_replay(name, 10), _replay(name, 11), _replay(name, 12)], first=7)
    outgoing = []
    worker.admitter.admit(task, outgoing)
    assert _held(task) == {name: 5} and len(outgoing) == 1


def test_a_free_thread_goes_to_the_tenant_with_fewest_runs(worker, task):
    _read(task, [*(_replay(n, i) for i in range(2) for n in NOISY), _replay(QUIET, 0)])
    worker.admitter.admit(task, [])
    worker.membership.tasks[task.tp] = task
    worker.dispatcher.dispatch([])
    assert worker.started == [NOISY[0], QUIET]           # concurrency 2: one each, not two of noisy
    # the noisy run ends: the next turn is another noisy connection's, not the same one again
    task.ended(NOISY[0])
    worker.runner.running -= 1
    worker.dispatcher.dispatch([])
    assert worker.started[2] == NOISY[1]
