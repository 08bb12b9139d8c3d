"""The runner's outcome table: what a run's exception does to its request (no Kafka: a run's
future set by hand, its endings kept in a list)."""
from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from hostspec.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    ProviderError,
    RunAbandoned,
    TransportError,
)
from hostspec.runtime.resources import Resources
from hostspec.runtime.runner import OUTCOMES, Runner, outcome_of
from hostspec.runtime.settings import WorkerSettings
from hostspec.runtime.tasks import PartitionTask, Pending, Running
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.transactions import ProducerBroken


@pytest.mark.parametrize("exc, retry, read_back", [
    (RunAbandoned("moved"), True, False),
    (DeliveryError("timed out"), True, True),
    (ProducerBroken("fenced"), True, True),            # nearest class in the table: DeliveryError
    (TransportError("broker away"), True, True),
    (sqlite3.OperationalError("locked"), True, True),
    (PermanentDeliveryError("too large"), False, False),
    (ConfigError("a bug"), False, False),              # a HostError that is no TransportError: a bug here
    (ProviderError("escaped the engine"), False, False),
    (KeyError("x"), False, False),
])
def test_each_exception_takes_the_outcome_of_its_nearest_class(exc, retry, read_back):
    outcome = outcome_of(exc)
    assert outcome is not None and (outcome.retry, outcome.read_back) == (retry, read_back)


def test_only_an_abandoned_run_is_left_to_the_next_owner_and_only_delivery_fails_as_delivery():
    assert [cls for cls, o in OUTCOMES.items() if o.left_if_given_up] == [RunAbandoned]
    assert [cls for cls, o in OUTCOMES.items() if o.kind == "delivery"] == [PermanentDeliveryError]
    assert outcome_of(KeyboardInterrupt()) is None      # not an Exception: never caught


class Endings:
    def __init__(self):
        self.ended = []

    def refusal(self, task, msg, reason, errors, request=None, *, stage="request", kind="invalid_request",
                tenant=None):
        return SimpleNamespace(offset=msg.offset, reason=reason, stage=stage, kind=kind, tenant=tenant)

    def end(self, outgoing):
        self.ended.append(outgoing)


def _ended_with(exc: BaseException, *, revoked: bool = False):
    endings, stopping = Endings(), threading.Event()
    runner = Runner(WorkerSettings(), None, None, None, None, Resources(), endings, stopping)
    task = PartitionTask(("req", 0), state_partition=0, membership=lambda: None)
    connection = SimpleNamespace(name="acme", tenant="acme-tenant", state_scope="acme")
    pending = Pending(InboundMessage("req", 0, 7, b"k", b"v"), SimpleNamespace(request_id="r1"), connection)
    pending.followers = [Pending(InboundMessage("req", 0, 8, b"k", b"v"), None, connection)]
    running = Running(pending, Future())
    running.future.set_exception(exc)
    task.started("acme", running)
    runner.running = 1
    if revoked:
        task.begin_revoke()
    runner.finish_ended(task)
    assert runner.running == 0 and not task.running
    return endings.ended, task.waiting.get("acme")


def test_a_run_refused_for_good_fails_each_request_it_answered_as_delivery():
    ended, waiting = _ended_with(PermanentDeliveryError("record too large"))
    assert waiting is None and len(ended) == 1
    assert [(o.offset, o.stage, o.kind, o.tenant) for o in ended[0]] == [(7, "delivery", "delivery", "acme-tenant"),
                                                                        (8, "delivery", "delivery", "acme-tenant")]
    assert ended[0][0].reason == "Kafka refused the run's events: record too large"


def test_a_crashed_run_fails_its_request_naming_only_the_exception_type():
    ended, _ = _ended_with(ZeroDivisionError("secret detail"))
    assert [o.reason for o in ended[0]] == ["the worker failed on this request: ZeroDivisionError"] * 2
    assert {(o.stage, o.kind) for o in ended[0]} == {("request", "invalid_request")}


def test_a_transient_error_runs_the_request_again_before_the_connections_others():
    ended, waiting = _ended_with(TransportError("broker away"))
    assert not ended and [p.msg.offset for p in waiting] == [7] and waiting[0].attempts == 1


def test_an_abandoned_run_is_left_uncommitted_when_its_partition_moved():
    assert _ended_with(RunAbandoned("revoked"), revoked=True) == ([], None)
    ended, waiting = _ended_with(RunAbandoned("evicted"))    # noticed first by the run: it runs again
    assert not ended and waiting[0].attempts == 1
