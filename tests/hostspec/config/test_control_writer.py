"""The control topic's writer without a broker: connected on the first write only, a fenced or
timed-out write retried once on a new connection, bounded in time, and an API write Kafka did not
store answered 503 with a JSON body, never 500 (tests/integration/test_control_writers.py runs
the same on the broker)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError, ProducerFencedError

from hostspec.cli import admin
from hostspec.config import control_topic, documents as docs
from hostspec.config.control_topic import ConnectionWriter, Documents
from hostspec.control.plane import ControlPlane
from hostspec.errors import DeliveryError, RevisionConflict
from hostspec.transport.config import KafkaConfig
from tests.hostspec.api_fakes import Api, body

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CONFIG = KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1")


class Log(Documents):
    """A reader that is always at the topic's end; the fake producers store into it."""

    def __init__(self):
        super().__init__("control (test)", None)
        self._ready.set()

    def catch_up(self, timeout_s: float = 5) -> bool:
        return True

    def store_doc(self, doc, offset, event_id=None):
        with self._cond:
            self._docs[doc["connection"]] = dict(doc)
            self._where[doc["connection"]] = (0, offset)
            if event_id is not None:
                self._remember(event_id, (0, offset), dict(doc))
            self._changed()


class Producer:
    """A transactional producer: ``fail`` names the step that raises (or blocks) and how."""

    made: list["Producer"] = []

    def __init__(self, log: Log, fail: dict):
        self.log, self.fail, self.sent, self.committed = log, fail, [], []
        Producer.made.append(self)

    def _step(self, name):
        how = self.fail.get(name)
        if how == "block":
            threading.Event().wait(60)
        elif how is not None:
            raise how

    def init_transactions(self):
        self._step("init")

    def begin_transaction(self):
        self.sent = []

    def send(self, topic, key, value, headers):
        self._step("send")
        self.sent.append(value)
        return SimpleNamespace(get=lambda _t: SimpleNamespace(partition=0, offset=len(Producer.made) * 10))

    def commit_transaction(self):
        import json
        if self.fail.get("commit") == "block":      # never reaches the broker
            self._step("commit")
        for value in self.sent:
            event = json.loads(value)
            self.log.store_doc(event["data"], len(Producer.made) * 10, event["id"])
        self.committed += self.sent
        self._step("commit")

    def abort_transaction(self):
        self.sent = []

    def close(self, timeout=None):
        pass


def writer_with(monkeypatch, *failures: dict) -> tuple[ConnectionWriter, Log]:
    """A writer whose n-th connection fails as ``failures[n]`` says (later ones succeed)."""
    log, plan = Log(), list(failures)
    Producer.made = []
    monkeypatch.setattr(control_topic, "make_producer",
                        lambda *_a, **_k: Producer(log, plan.pop(0) if plan else {}))
    return ConnectionWriter(CONFIG, "control", log), log


def doc(revision: int, client_id: str = "c") -> dict:
    return docs.document("acme", body("acme", client_id=client_id), revision=revision, changed_by="t", now=NOW)


def test_a_writer_connects_on_its_first_write_only(monkeypatch):
    writer, _log = writer_with(monkeypatch)
    writer.close()
    assert Producer.made == [] and not writer.connected      # created and closed: nothing written, nobody fenced
    writer.write(doc(1), NOW, based_on=0)
    writer.write(doc(2), NOW, based_on=1)
    assert len(Producer.made) == 1 and writer.connects == 1


def test_a_read_only_admin_command_opens_no_writer_and_creates_no_topic(monkeypatch, plugins):
    opened = []
    monkeypatch.setattr(control_topic, "make_producer", lambda *_a, **_k: opened.append("producer"))
    monkeypatch.setattr(control_topic.ConnectionLog, "open", classmethod(lambda *_a, **_k: opened.append("topics")))
    monkeypatch.setattr(control_topic.ConnectionLog, "start", lambda self, **_k: self)
    args = SimpleNamespace(bootstrap_servers="127.0.0.1:1", topic_prefix=None, policy=None, allow_sandboxes=False)
    plane = admin.control_plane(args, plugins)
    assert plane.connections() == []
    plane.close()
    assert opened == []


@pytest.mark.parametrize("error", [ProducerFencedError(), KafkaTimeoutError(), AssertionError("a client bug")])
def test_a_write_fenced_or_timed_out_connects_again_rereads_and_is_stored(monkeypatch, error):
    writer, log = writer_with(monkeypatch, {"send": error})
    writer.write(doc(1), NOW, based_on=0)
    assert writer.connects == 2 and log.document("acme")["revision"] == 1
    assert [len(p.committed) for p in Producer.made] == [0, 1]


def test_the_retry_checks_the_revision_again(monkeypatch):
    """Fenced because another process wrote revision 1 meanwhile: the retry refuses, never overwrites."""
    writer, log = writer_with(monkeypatch, {"send": ProducerFencedError()})
    real_connect = writer._connect

    def connect_after_the_other_wrote():
        if writer.connects == 1:
            log.store_doc(doc(1, client_id="the-other"), 5)
        real_connect()

    monkeypatch.setattr(writer, "_connect", connect_after_the_other_wrote)
    with pytest.raises(RevisionConflict):
        writer.write(doc(1), NOW, based_on=0)
    assert log.document("acme")["settings"]["client_id"] == "the-other"


def test_a_commit_that_timed_out_but_went_through_is_not_written_twice(monkeypatch):
    writer, log = writer_with(monkeypatch, {"commit": KafkaTimeoutError()})
    assert writer.write(doc(1), NOW, based_on=0) == (0, 10)     # where the first attempt stored it
    assert [len(p.committed) for p in Producer.made] == [1, 0]


def test_fenced_twice_is_a_delivery_error_and_a_write_is_bounded_in_time(monkeypatch):
    writer, log = writer_with(monkeypatch, {"send": ProducerFencedError()}, {"send": ProducerFencedError()})
    with pytest.raises(DeliveryError, match="not stored"):
        writer.write(doc(1), NOW, based_on=0)
    assert log.document("acme") is None

    monkeypatch.setattr(ConnectionWriter, "WRITE_TIMEOUT_S", 1.0)
    monkeypatch.setattr(ConnectionWriter, "STEP_TIMEOUT_S", 0.5)
    writer, log = writer_with(monkeypatch, {"commit": "block"}, {"commit": "block"})
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="commit took longer"):
        writer.write(doc(1), NOW, based_on=0)
    assert time.monotonic() - started < 3


def test_an_api_write_kafka_did_not_store_answers_503_with_a_message(plugins, tmp_path, monkeypatch):
    api = Api(plugins, tmp_path, monkeypatch)

    def refused(*_a, **_k):
        raise DeliveryError("connection 'acme-c' not stored: the control topic could not be written")

    monkeypatch.setattr(api.control, "write", refused)
    answer = api.call("root", "PUT", "/connections/acme-c", json=body("acme"))
    assert answer.status_code == 503, answer.text
    assert answer.json["error_code"] == 503 and "not stored" in answer.json["message"]


@pytest.mark.parametrize("error", [KafkaTimeoutError("metadata not available"), AssertionError("a client bug")])
def test_a_sync_request_or_redrive_kafka_did_not_take_answers_503_not_500(plugins, tmp_path, monkeypatch, error):
    from hostspec.control import plane as plane_module

    class Broken:
        def partitions_for(self, _topic):
            return {0}

        def send(self, *_a, **_k):
            raise error

        def close(self, timeout=None):
            pass

    api = Api(plugins, tmp_path, monkeypatch)
    monkeypatch.setattr(api.plane, "_publish", ControlPlane._publish.__get__(api.plane))
    monkeypatch.setattr(plane_module, "make_producer", lambda *_a, **_k: Broken())
    answer = api.call("root", "POST", "/connections/acme-c/syncs", json={})
    assert answer.status_code == 503, answer.text
    assert answer.json["error_code"] == 503 and "Kafka did not acknowledge it" in answer.json["message"]
    assert api.plane._sink is None           # dropped: the next request starts a fresh producer


def test_an_audit_event_kafka_does_not_take_holds_the_answer_back_briefly_and_once(plugins, monkeypatch):
    from hostspec.control import audit

    made, flushed = [], []

    class Away:
        def __init__(self, **settings):
            made.append(settings.get("max_block_ms"))

        def partitions_for(self, _topic):
            return {0}

        def send(self, *_a, **_k):
            return SimpleNamespace(add_errback=lambda *_: None)

        def flush(self, timeout=None):
            flushed.append(timeout)
            raise KafkaTimeoutError("Timeout waiting for future")

        def close(self, timeout=None):
            pass

    monkeypatch.setattr(audit, "make_producer", lambda _config, **settings: Away(**settings))
    trail = audit.KafkaAudit(CONFIG, "audit")
    event = audit.audit_event(principal=None, method="PUT", path="/connections/a", route="/connections/{name}",
                              connection="a", status=503, reason="x", remote_addr="127.0.0.1", now=NOW)
    for _ in range(2):
        with pytest.raises(DeliveryError):
            trail.record(event)
    assert flushed == [audit.KafkaAudit.TIMEOUT_S] * 2 and audit.KafkaAudit.TIMEOUT_S <= 5
    assert made == [5000, 5000]          # the failed producer was dropped: the next event starts afresh
