"""Readiness tells the truth about the broker: the worker, the publisher and the admin API answer
``/ready`` 503 within 10 s of the broker dying and 200 again once it is back, and the worker's
log says so in a few lines, not forty a second.

The broker is this test's own (dev/kafka/kafka.sh on a free port, its own data folder): it is
killed and started again, which the shared broker of ``KAFKA_BOOTSTRAP`` must never be.
"""
from __future__ import annotations

import calendar
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hostspec.ops.logs import ConnectionErrorLimit

from .conftest import ServiceProcess
from .test_control_plane import TOKEN, health_url, start_api

pytestmark = pytest.mark.kafka
KAFKA_SH = Path(__file__).resolve().parents[2] / "dev" / "kafka" / "kafka.sh"
LOST_WITHIN_S = 10.0


def _free_port_pair() -> int:
    """A port whose next one (the controller's) is free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65530:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free pair of ports")


class OwnBroker:
    def __init__(self, data: Path):
        self.port = _free_port_pair()
        self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DATA": str(data),
                    "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m"}     # a second JVM beside the shared broker
        self.pidfile = data / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _sh(self, command: str) -> None:
        subprocess.run(["bash", str(KAFKA_SH), command], env=self.env, check=True, timeout=180,
                       stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self._sh("start")

    def restart(self) -> None:
        self._sh("restart")          # the same storage: the topics and the groups are still there

    def kill(self) -> None:
        """SIGKILL to the JVM: the broker is gone at once (the hardest case for a probe)."""
        shell = int(self.pidfile.read_text().strip())
        children = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
        for pid in [*map(int, children), shell]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the broker still accepts connections after SIGKILL")

    def stop(self) -> None:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=self.env, timeout=60, stdout=subprocess.DEVNULL)


def _status(url: str) -> int:
    try:
        return requests.get(url + "/ready", timeout=2).status_code
    except requests.RequestException:
        return 0


def _until_all(urls: dict[str, str], status: int, timeout: float) -> dict[str, float]:
    """Seconds until each url's /ready answered ``status`` (from now); fails past ``timeout``."""
    started, seen = time.monotonic(), {}
    while len(seen) < len(urls) and time.monotonic() - started < timeout:
        for name, url in urls.items():
            if name not in seen and _status(url) == status:
                seen[name] = time.monotonic() - started
        time.sleep(0.2)
    missing = sorted(set(urls) - set(seen))
    assert not missing, f"/ready of {missing} not {status} within {timeout}s (the others: {seen})"
    return seen


def _metrics(url: str) -> str:
    return requests.get(url + "/metrics", timeout=5).text


def connection_error_lines(log_text: str) -> list[tuple[float, str, str]]:
    """(time, broker, message) of the Kafka clients' connection-error lines in a JSON log."""
    lines = []
    for line in log_text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        message, level = str(doc.get("message", "")), getattr(logging, str(doc.get("level")), logging.INFO)
        if ConnectionErrorLimit.is_connection_error(doc.get("logger", ""), level, message):
            ts = calendar.timegm(time.strptime(doc["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + int(doc["ts"][20:23]) / 1000
            lines.append((ts, ConnectionErrorLimit.broker_of(message), message))
    return lines


def test_ready_turns_503_within_seconds_of_the_broker_dying_and_back_to_200_when_it_returns(tmp_path, bootstrap,
                                                                                             prefix):
    del bootstrap    # only says that broker tests run here; this test has a broker of its own
    broker = OwnBroker(tmp_path / "kafka")
    broker.start()
    processes: list[ServiceProcess] = []
    try:
        api, api_url = start_api(tmp_path, broker.bootstrap, prefix)
        processes.append(api)
        worker = ServiceProcess(tmp_path, "worker", [
            sys.executable, "-m", "hostspec", "--connections", "kafka", "run", "--bootstrap-servers",
            broker.bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}group", "--worker-id", "w1",
            "--session-timeout-ms", "6000", "--metrics-port", "0", "--metrics-addr", "127.0.0.1"], {})
        publisher = ServiceProcess(tmp_path, "publisher", [
            sys.executable, "-m", "publisher_360learning.cli", "run", "--targets", "kafka",
            "--ledger", str(tmp_path / "ledger.sqlite"), "--bootstrap-servers", broker.bootstrap,
            "--topic-prefix", prefix, "--group-id", f"{prefix}publisher", "--instance", "pub-1",
            "--metrics-port", "0", "--metrics-addr", "127.0.0.1"], {})
        processes += [worker, publisher]
        urls = {"api": api_url, "worker": health_url(worker), "publisher": health_url(publisher)}
        _until_all(urls, 200, timeout=120)
        assert requests.get(api_url + "/ready", timeout=5).json() == {
            "ready": True, "checks": {"control_topic": True, "kafka": True}}
        for name in ("api", "worker"):       # control-topic mode: its gauge, no connections file's
            text = _metrics(urls[name])
            assert "connector_control_topic_ok 1.0" in text and "connector_connections_file_ok" not in text, name
        assert 'connector_api_requests_total{method="GET",route="/ready",status="200"}' in _metrics(api_url)

        broker.kill()
        killed_at = time.time()
        lost = _until_all(urls, 503, timeout=LOST_WITHIN_S)
        # the worker may have said "not a member" first; its kafka check follows within the 10 s too
        while requests.get(urls["worker"] + "/ready", timeout=5).json()["checks"]["kafka"]:
            assert time.time() - killed_at < LOST_WITHIN_S, "the worker's kafka check still true"
            time.sleep(0.2)
        assert "connector_control_topic_ok 0.0" in _metrics(urls["worker"])
        time.sleep(max(0.0, 12 - (time.time() - killed_at)))   # an outage long enough to log about

        broker.restart()
        back = _until_all(urls, 200, timeout=150)
        restarted_at = time.time()
        print(f"/ready 503 after the broker was killed: {lost}; 200 after it was back: {back}")

        # the worker's log: at most one connection-error line per broker every 30 s, with a count
        outage = [line for line in connection_error_lines(worker.log()) if killed_at - 1 <= line[0] <= restarted_at]
        assert outage, "no connection-error line at all during the outage: nothing to rate-limit?"
        by_broker: dict[str, list[float]] = {}
        for ts, key, _message in outage:
            by_broker.setdefault(key, []).append(ts)
        for key, times in by_broker.items():
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert all(gap >= 29 for gap in gaps), (key, gaps, outage)
    finally:
        for process in processes:
            process.stop(timeout=20)
        broker.stop()
