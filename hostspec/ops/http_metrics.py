"""Prometheus metrics of an HTTP API's own traffic: a falcon middleware (:class:`RequestMetrics`).

Every request is counted by its route *template* (``/connections/{name}``, never the path a
client sent, so the series stay few), its method and the status answered, and timed in a
histogram by route and method. A request no route matched is counted under ``(unmatched)``; a
method falcon does not route under ``OTHER``. Put it first in the middleware list: it then also
counts what an earlier middleware refused (401, 403, 429).
"""
from __future__ import annotations

import time
from typing import Any

import falcon

from hostspec.ops import metrics

METHODS = frozenset(falcon.constants.COMBINED_METHODS)
UNMATCHED = "(unmatched)"


def labels(method: str, template: str | None, status: Any) -> tuple[str, str, str]:
    """(method, route, status) of one request, each from a small set of values."""
    code = getattr(status, "value", status)   # falcon 4: an int, an http.HTTPStatus or "200 OK"
    return (method if method in METHODS else "OTHER", template or UNMATCHED, str(code).split(" ", 1)[0])


class RequestMetrics:
    """Counts and times each request (see the module's text)."""

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _succeeded: bool) -> None:
        started = getattr(req.context, "metrics_started", None)
        method, route, status = labels(req.method, req.uri_template, resp.status_code)
        metrics.API_REQUESTS.labels(route, method, status).inc()
        if started is not None:
            metrics.API_REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)


__all__ = ["RequestMetrics", "labels"]
