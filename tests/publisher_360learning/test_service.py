"""The publisher's batch loop with a fake consumer and sink: a transient failure rewinds, an
unexpected error is retried and then dead-letters the batch instead of stopping the publisher."""
from __future__ import annotations

from hostspec import events as ev
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import InboundMessage
from publisher_360learning.delivery import Deliverer, Outcome
from publisher_360learning.errors import TransientError
from publisher_360learning.ledger import Ledger
from publisher_360learning.service import PublisherService, ServiceSettings
from tests.hostspec.test_events import stat_data


class FakeConsumer:
    def __init__(self):
        self.seeks, self.commits = [], []

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def commit_many(self, offsets):
        self.commits.append(dict(offsets))
        return True


class FakeSink:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)

    def flush(self, timeout_s=None):
        pass


class Exploding(Deliverer):
    def __init__(self, error):
        super().__init__({}, Ledger())
        self.error, self.calls = error, 0

    def deliver(self, inbound):
        self.calls += 1
        raise self.error


def service(deliverer, failures=3) -> PublisherService:
    svc = PublisherService(deliverer, KafkaConfig(), Topics(),
                           ServiceSettings(backoff_s=0, max_batch_failures=failures))
    svc._consumer, svc._sink = FakeConsumer(), FakeSink()
    return svc


def message(offset: int) -> InboundMessage:
    from datetime import datetime, timezone
    event = ev.make_event(ev.LEARNER_STAT_UPSERTED, stat_data(), key="k", source="t", subject=None,
                          time=datetime.now(timezone.utc))
    return InboundMessage("learning.learner-stats", 3, offset, b"k", event.to_json().encode())


def test_transient_failure_rewinds_and_commits_nothing():
    svc = service(Exploding(TransientError("360Learning down")))
    svc._pending = [message(10), message(11)]
    svc._process()
    assert svc._consumer.seeks == [(("learning.learner-stats", 3), 10)] and svc._consumer.commits == []


def test_unexpected_errors_are_retried_then_dead_lettered_and_committed():
    deliverer = Exploding(RuntimeError("bug"))
    svc = service(deliverer, failures=3)
    for _ in range(3):
        svc._pending = [message(10), message(11)]
        svc._process()
    assert deliverer.calls == 3
    assert len(svc._consumer.seeks) == 2                                # rewound twice, then given up
    assert svc._consumer.commits == [{("learning.learner-stats", 3): 12}]
    dead = [e.data for e in svc._sink.events]
    assert len(dead) == 2 and {d["reason"] for d in dead} == {"publisher_error"}
    assert all(d["stage"] == "delivery" for d in dead)


def test_a_good_batch_resets_the_failure_count():
    deliverer = Exploding(RuntimeError("bug"))
    svc = service(deliverer, failures=2)
    svc._pending = [message(1)]
    svc._process()
    deliverer.deliver = lambda inbound: Outcome()                      # healthy again
    svc._pending = [message(1)]
    svc._process()
    assert svc._failures == 0 and svc._consumer.commits == [{("learning.learner-stats", 3): 2}]
