"""What ``/ready`` of the worker, the publisher and the admin API say about the broker and the
group, and the metrics of issue 29: the admin API's request metrics, the connections' source
gauges exported only where that source exists, the publisher's parked total."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import falcon.testing
import pytest

from hostspec.config.connections import ConnectionStore
from hostspec.config.control_topic import MemoryControl
from hostspec.control import api as admin_api
from hostspec.control.plane import ControlPlane
from hostspec.ops import metrics
from hostspec.ops.http_metrics import UNMATCHED, labels
from hostspec.runtime.worker import Worker, WorkerSettings
from hostspec.secrets import Secret
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from publisher_360learning.reading import Reader
from publisher_360learning.service import PublisherService, ServiceSettings

TOKEN = "ops-token-ready-0123456789"
NOWHERE = KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1")


def member(ok: bool = True):
    return SimpleNamespace(in_group=lambda limit_s: ok, assignment=lambda: set())


@pytest.fixture
def worker(plugins):
    source = SimpleNamespace(source="test", store=lambda: ConnectionStore({}, source="test"),
                             catch_up=lambda timeout_s=5: False)
    w = Worker(plugins, source, NOWHERE, Topics(), WorkerSettings())
    w.resources.consumer = member()
    w.loop.last_poll = time.monotonic()
    return w


def test_the_worker_is_ready_only_while_kafka_answers_and_it_is_a_member_of_its_group(worker):
    worker.broker.liveness.answered()
    assert worker.readiness() == {"kafka": True, "group": True, "partitions": True, "connections": True}
    worker.broker.liveness.last_answer = time.monotonic() - 8          # the probe heard nothing for 8 s
    assert worker.readiness()["kafka"] is False
    worker.broker.liveness.answered()
    worker.resources.consumer = member(False)                          # evicted, or its session expired
    ready = worker.readiness()
    assert ready["group"] is False and ready["partitions"] is False


def test_the_publisher_is_ready_only_while_kafka_answers_and_it_is_a_member_of_its_group():
    service = PublisherService.__new__(PublisherService)
    service.shared = SimpleNamespace(settings=ServiceSettings(), consumer=member(), ready=set())
    service._stop, service._last_poll = threading.Event(), time.monotonic()
    from hostspec.transport.liveness import BrokerProbe
    service.broker = BrokerProbe(NOWHERE)
    service.broker.liveness.answered()
    assert service.readiness() == {"kafka": True, "group": True, "partitions": True}
    service.broker.liveness.last_answer = time.monotonic() - 8
    assert service.readiness()["kafka"] is False
    service.shared.consumer = member(False)
    assert service.readiness()["group"] is False


@pytest.fixture
def app(plugins, monkeypatch):
    monkeypatch.setenv("API_TOKEN_READY", TOKEN)
    control = MemoryControl()
    plane = ControlPlane(plugins, NOWHERE, Topics(), None, log=control, writer=control)
    kafka = {"alive": True}
    client = falcon.testing.TestClient(admin_api.make_app(plane, {"ops": Secret(env="API_TOKEN_READY")},
                                                          kafka=lambda: kafka["alive"]))
    client.kafka = kafka
    return client


def test_the_api_is_not_ready_while_kafka_does_not_answer(app):
    ready = app.simulate_get("/ready")
    assert ready.status_code == 200 and ready.json["checks"] == {"control_topic": True, "kafka": True}
    app.kafka["alive"] = False
    ready = app.simulate_get("/ready")
    assert ready.status_code == 503 and ready.json["checks"] == {"control_topic": True, "kafka": False}


def _value(name: str, **labels_: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels_) or 0.0


def test_the_api_counts_and_times_its_requests_by_route_template_method_and_status(app):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    route = "/connections/{name}"
    before = {s: _value("connector_api_requests_total", route=route, method="GET", status=s) for s in ("404", "401")}
    timed = _value("connector_api_request_duration_seconds_count", route=route, method="GET")
    unmatched = _value("connector_api_requests_total", route=UNMATCHED, method="GET", status="404")
    assert app.simulate_get("/connections/nope", headers=auth).status_code == 404
    assert app.simulate_get("/connections/other").status_code == 401          # refused by a middleware
    assert app.simulate_get("/no/such/route", headers=auth).status_code == 404
    assert _value("connector_api_requests_total", route=route, method="GET", status="404") == before["404"] + 1
    assert _value("connector_api_requests_total", route=route, method="GET", status="401") == before["401"] + 1
    assert _value("connector_api_request_duration_seconds_count", route=route, method="GET") == timed + 2
    assert _value("connector_api_requests_total", route=UNMATCHED, method="GET", status="404") == unmatched + 1


def test_request_labels_stay_few():
    assert labels("GET", "/connections/{name}", 200) == ("GET", "/connections/{name}", "200")
    assert labels("BREW", None, "405 Method Not Allowed") == ("OTHER", UNMATCHED, "405")


def test_each_source_gauge_is_exported_only_by_a_process_reading_that_source(tmp_path):
    """A control-plane process has no connections file: its file gauge must not read 0 (the
    README's alert fired on every control-plane deployment)."""
    program = (
        "import sys\n"
        "from prometheus_client import generate_latest\n"
        "from hostspec.ops import metrics\n"
        "from hostspec.config.sources import ConnectionsFile\n"
        "import hostspec.config.control_topic\n"
        "text = generate_latest().decode()\n"
        "assert 'connector_connections_file_ok' not in text and 'connector_control_topic_ok' not in text, text\n"
        "ConnectionsFile(sys.argv[1])\n"
        "text = generate_latest().decode()\n"
        "assert 'connector_connections_file_ok ' in text and 'connector_control_topic_ok' not in text, text\n")
    path = tmp_path / "connections.toml"
    path.write_text("")
    done = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_control_topic_gauge_says_whether_the_topic_is_followed():
    """1 once read to its end while its polls work and the broker answers; 0 while a poll fails,
    or while this process's probe hears no broker (kafka-python mostly reports an outage as
    empty polls)."""
    from hostspec.config.control_topic import ConnectionLog
    from hostspec.transport import liveness

    log = ConnectionLog(NOWHERE, "t.connections")
    log.export_gauge()
    polls = iter([{}, RuntimeError("broker away"), {}])
    seen: list[float] = []

    def poll(timeout_ms):
        seen.append(_value("connector_control_topic_ok"))
        outcome = next(polls, None)
        if outcome is None:
            log._stop.set()
            return {}
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    log._consumer = SimpleNamespace(poll=poll, assignment=lambda: set(), position=lambda tp: 0)
    log._stop.wait = lambda timeout: None                 # no second's pause after the failure
    log._follow({})
    assert seen == [0.0, 1.0, 0.0, 1.0]                   # not read yet, read, a failed poll, read again
    log._stop.clear()
    probe = liveness.BrokerProbe(NOWHERE, ask=lambda: None)
    liveness._running.append(probe)                       # as start() does, without the thread
    try:
        assert _value("connector_control_topic_ok") == 0.0     # the probe has heard nothing yet
        probe.liveness.answered()
        assert _value("connector_control_topic_ok") == 1.0
    finally:
        probe.close()


def test_the_publisher_exports_its_parked_total_even_when_nothing_is_parked():
    ledger = SimpleNamespace(parked_by_connection=lambda: parked)
    reader = Reader(SimpleNamespace(ledger=ledger), Topics(), SimpleNamespace(), SimpleNamespace())
    parked = {"acme": 3, "beta": 4}
    reader.gauges(force=True)
    assert metrics.PUBLISHER_PARKED_ALL._value.get() == 7
    parked = {}
    reader.gauges(force=True)
    assert metrics.PUBLISHER_PARKED_ALL._value.get() == 0 and reader.parked_now == 0


def test_the_scheduler_is_ready_only_while_it_polls_and_kafka_answers():
    from hostspec.runtime.scheduler import Scheduler

    source = SimpleNamespace(source="test", store=lambda: ConnectionStore({}, source="test"))
    scheduler = Scheduler(source, NOWHERE, Topics())
    scheduler._last_poll = time.monotonic()
    scheduler.broker.liveness.answered()
    assert scheduler.readiness() == {"kafka": True, "connections": True}
    scheduler.broker.liveness.last_answer = time.monotonic() - 8
    assert scheduler.readiness() == {"kafka": False, "connections": True}
