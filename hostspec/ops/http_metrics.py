"""Prometheus metrics of an HTTP API's own traffic: a falcon middleware (:class:`RequestMetrics`).

Every request is counted by its route *template* (``/connections/{name}``, never the path a
client sent, so the series stay few), its method and the status answered, and timed in a
histogram by route and method. A request no route matched is counted under ``(unmatched)``; a
method falcon does not route under ``OTHER``. Put it first in the middleware list: it then also
counts what a later middleware refused (401, 403, 429) before falcon routed the request; give
it the app's router (``find``) so that such a request is counted under its route too.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import falcon

from hostspec.ops import metrics

METHODS = frozenset(falcon.constants.COMBINED_METHODS)
UNMATCHED = "(unmatched)"


def labels(method: str, template: str | None, status: Any) -> tuple[str, str, str]:
    """(method, route, status) of one request, each from a small set of values."""
    code = getattr(status, "value", status)   # falcon 4: an int, an http.HTTPStatus or "200 OK"
    return (method if method in METHODS else "OTHER", template or UNMATCHED, str(code).split(" ", 1)[0])


class RequestMetrics:
    """Counts and times each request (see the module's text). ``find``: the app's router's
    ``find(path)`` (falcon's ``CompiledRouter.find``), for requests refused before routing."""

    def __init__(self, find: Callable[[str], Any] | None = None):
        self._find = find

    def _template(self, req: falcon.Request) -> str | None:
        if req.uri_template or self._find is None:
            return req.uri_template
        try:
            found = self._find(req.path)
        except Exception:  # noqa: BLE001 - a path the router cannot read is simply unmatched
            return None
        return found[3] if found else None

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _succeeded: bool) -> None:
        started = getattr(req.context, "metrics_started", None)
        method, route, status = labels(req.method, self._template(req), resp.status_code)
        metrics.API_REQUESTS.labels(route, method, status).inc()
        if started is not None:
            metrics.API_REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)


__all__ = ["RequestMetrics", "labels"]
