"""JSON logs carry the run's context and no secret; Prometheus counters move during a sync."""
from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.request

import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.cli import main as cli
from hostspec.ops import metrics
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.ops.logs import log_context, setup_logging
from hostspec.engine.sinks import MemorySink
from tests.conftest import connections_toml, sandbox_connection


def test_json_lines_with_context_and_without_secrets(tmp_path, monkeypatch, capsys):
    with CourseraSandbox(OrgSpec(contents=6, learners=4, enrollments=12, broken_every=4)) as sb:
        path = tmp_path / "connections.toml"
        path.write_text(connections_toml(sb.url, secret_env="LOG_TEST_SECRET", names=("acme",), org_id=sb.spec.org_id))
        monkeypatch.setenv("LOG_TEST_SECRET", "standin-secret")
        requests.post(sb.url + "/_sandbox/faults", json={"action": "status_429", "times": 1}, timeout=5)
        code = cli.main(["--log-format", "json", "--log-level", "DEBUG", "--connections", str(path),
                         "sync", "coursera", "--connection", "acme", "--out", str(tmp_path / "e.jsonl"),
                         "--state", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert code == 3  # some records broken on purpose
    lines = [line for line in err.splitlines() if line.startswith("{")]
    docs = [json.loads(line) for line in lines]
    assert len(docs) >= 3 and all({"ts", "level", "logger", "message"} <= set(d) for d in docs)
    in_run = [d for d in docs if d.get("run_id")]
    assert in_run and all(d["connection"] == "acme" and d["provider"] == "coursera" for d in in_run)
    assert any(d["level"] == "WARNING" and "retrying" in d["message"] for d in in_run)
    assert "standin-secret" not in err


def test_text_format_and_context_nesting():
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    log = logging.getLogger("t")
    with log_context(connection="acme"):
        with log_context(run_id="r1"):
            log.info("inside")
        log.info("outer")
    log.info("outside")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("inside [connection=acme run_id=r1]") and lines[1].endswith("outer [connection=acme]")
    assert lines[2].endswith("t: outside")
    setup_logging("WARNING")


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def total(samples: dict[str, float], prefix: str, **labels: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix + "{")
               and all(f'{lk}="{lv}"' in k for lk, lv in labels.items()))


def test_metrics_endpoint_moves_during_a_sandbox_sync(plugins):
    server = metrics.serve(0, "127.0.0.1")
    port = server.server_port
    try:
        with CourseraSandbox(OrgSpec(contents=20, learners=30, enrollments=600)) as sb:
            expected = len(sb.report_rows())
            requests.post(sb.url + "/_sandbox/faults", timeout=5, json={
                "route": "*/enrollmentReports", "action": "latency", "delay_s": 0.15, "times": None})
            connection = sandbox_connection(sb, plugins, page_size=50)
            engine = SyncEngine(plugins, MemorySink(), batch_size=50)
            before = scrape(port)
            thread = threading.Thread(target=engine.run, args=(SyncRequest("m1", connection.name, "coursera", "all"),
                                                               connection))
            thread.start()
            time.sleep(1.0)
            during = scrape(port)
            thread.join(60)
        after = scrape(port)
    finally:
        server.shutdown()
    stats = dict(connection=connection.name, type="stat", result="emitted")
    assert total(before, "connector_records_total", **stats) < total(during, "connector_records_total", **stats) \
        < total(after, "connector_records_total", **stats)
    assert total(after, "connector_records_total", **stats) - total(before, "connector_records_total", **stats) == expected
    calls = total(after, "connector_provider_calls_total", provider="coursera", status="200") - \
        total(before, "connector_provider_calls_total", provider="coursera", status="200")
    assert calls >= expected / 50
    runs = dict(connection=connection.name, outcome="completed")
    assert total(after, "connector_runs_total", **runs) - total(before, "connector_runs_total", **runs) == 1
    assert after[f'connector_last_success_timestamp_seconds{{connection="{connection.name}",scope="progress"}}'] > 0
