"""``/health``, ``/ready`` and ``/metrics`` of every long-running process (falcon on waitress).

* ``GET /health``: 200 while the process serves HTTP at all (an orchestrator's liveness probe);
* ``GET /ready``: 200 when every readiness check passes, 503 otherwise, with the checks in the
  body: ``{"ready": false, "checks": {"kafka": true, "partitions": false}}``. ``kafka`` is whether
  the cluster answers now (:mod:`hostspec.transport.liveness`: false within seconds of the broker
  going away). The worker is ready when Kafka answers and it is a member of its group (``group``:
  a generation, a heartbeat answered within the session timeout), polled recently and has
  restored every partition it owns; the publisher likewise with its ledgers; the scheduler when
  it polls and Kafka answers; the admin API when it has read the control topic to its end and
  Kafka answers;
* ``GET /metrics``: Prometheus' text format (:mod:`hostspec.ops.metrics`).

The admin API mounts the same routes on its own server (:func:`add_routes`).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from waitress.server import create_server

from hostspec.ops.console import bind_error

Checks = Callable[[], Mapping[str, bool]]


class _Health:
    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "up"}


class _Ready:
    def __init__(self, checks: Checks):
        self._checks = checks

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        try:
            checks = dict(self._checks())
        except Exception as exc:  # noqa: BLE001 - a failing check means not ready, never a 500
            checks = {"checks": False}
            resp.media = {"ready": False, "checks": checks, "error": type(exc).__name__}
            resp.status = falcon.HTTP_503
            return
        ready = all(checks.values())
        resp.media = {"ready": ready, "checks": checks}
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503


class _Metrics:
    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = generate_latest()
        resp.content_type = CONTENT_TYPE_LATEST


def add_routes(app: falcon.App, checks: Checks) -> None:
    app.add_route("/health", _Health())
    app.add_route("/ready", _Ready(checks))
    app.add_route("/metrics", _Metrics())


class HttpServer:
    """A WSGI app served by waitress in a background thread."""

    def __init__(self, app: Any, port: int, addr: str = "0.0.0.0", *, threads: int = 4):
        try:
            self._server = create_server(app, host=addr, port=port, threads=threads, ident="connector-host",
                                         clear_untrusted_proxy_headers=True)
        except OSError as exc:       # the message names the port taken
            raise bind_error(exc, addr, port) from None
        self.port: int = self._server.effective_port  # type: ignore[union-attr]
        self._thread = threading.Thread(target=self._server.run, name=f"http:{self.port}", daemon=True)

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.close()
        self._thread.join(timeout=5)


def serve(port: int, addr: str = "0.0.0.0", checks: Checks = lambda: {}) -> HttpServer:
    """Serve the three routes on ``port`` (0: any free port; ``.port`` says which)."""
    app = falcon.App()
    add_routes(app, checks)
    return HttpServer(app, port, addr, threads=2).start()


__all__ = ["Checks", "HttpServer", "add_routes", "serve"]
