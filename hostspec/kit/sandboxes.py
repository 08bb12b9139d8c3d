"""Building blocks of the providers' and the publisher's sandbox servers.

* :class:`FaultRule` / :class:`FaultBook`: switchable faults, matched against each request by
  route glob and method, fired a number of ``times`` and/or with a seeded ``probability``, after
  ``after_n_calls`` requests went through. Each sandbox names its own actions.
* :func:`is_loopback`: sandboxes and their control endpoints bind to loopback only.
* :class:`SandboxRequestHandler`: the HTTP handler base (quiet, keep-alive without Nagle delays,
  clients that hang up are not errors); a sandbox implements ``_handle(method)``.
* :class:`SandboxServer`: the life cycle (bind on loopback, serve from a daemon thread, ``url``,
  ``start``/``close``, ``with``); a sandbox calls ``bind(host, port, handler)`` first thing.

The extension points a provider's sandbox uses (public, documented in
docs/writing-a-provider.md): ``SandboxServer.bind``, ``expected``, ``inject``, ``DATA_ROUTE``;
``SandboxRequestHandler._handle`` (to implement), ``reply``, ``start_reply``, ``transport_fault``;
``FaultBook.add_json``, ``pick``, ``rules`` (the active rules as JSON, for a control endpoint),
``seen``; :func:`retry_after_header`. The underscore spellings of the handler's and server's
methods remain as aliases.
"""
from __future__ import annotations

import collections
import email.utils
import fnmatch
import ipaddress
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Collection, Mapping

from hostspec.ops.console import bind_error


@dataclass
class FaultRule:
    action: str
    route: str = "*"
    method: str | None = None
    times: int | None = 1
    probability: float | None = None
    after_n_calls: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    @classmethod
    def from_json(cls, doc: dict[str, Any], actions: Collection[str]) -> "FaultRule":
        if not isinstance(doc, dict) or doc.get("action") not in actions:
            raise ValueError(f"a fault needs an action among {sorted(actions)}")
        known = {"action", "route", "method", "times", "probability", "after_n_calls"}
        times = doc.get("times", 1 if "probability" not in doc else None)
        probability = doc.get("probability")
        if probability is not None and not 0 <= float(probability) <= 1:
            raise ValueError("probability must be within 0..1")
        return cls(action=doc["action"], route=doc.get("route", "*"),
                   method=(doc.get("method") or None) and doc["method"].upper(),
                   times=None if times is None else int(times),
                   probability=None if probability is None else float(probability),
                   after_n_calls=int(doc.get("after_n_calls", 0)),
                   params={k: v for k, v in doc.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "route": self.route, "method": self.method, "times": self.times,
                "probability": self.probability, "after_n_calls": self.after_n_calls,
                "fired": self.fired, **self.params}


@dataclass(frozen=True)
class Picked:
    """One request a :class:`FaultBook` saw: when (the sandbox's monotonic clock), what, and the
    rule that fired on it (None: served normally)."""

    at: float
    method: str
    path: str
    rule: "FaultRule | None"


class FaultBook:
    """The active rules; ``pick`` returns the rule to apply to one request, if any, and keeps
    the latest requests it saw in ``seen`` (:class:`Picked`, at most ``SEEN_KEPT``), so that a
    test can tell when a client came back after a fault (the conformance suite's Retry-After
    check)."""

    SEEN_KEPT = 2000

    def __init__(self, actions: Collection[str], seed: int = 42, clock: Any = time.monotonic):
        self.actions = frozenset(actions)
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._clock = clock
        self.seen: collections.deque[Picked] = collections.deque(maxlen=self.SEEN_KEPT)

    def add_json(self, docs: Any) -> None:
        """Add one rule or a list of rules given as JSON; ValueError/TypeError on a bad one."""
        for doc in docs if isinstance(docs, list) else [docs]:
            self.add(FaultRule.from_json(doc, self.actions))

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def pick(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            rule = self._pick(method, path)
            self.seen.append(Picked(self._clock(), method, path, rule))
            return rule

    def _pick(self, method: str, path: str) -> FaultRule | None:
        for rule in self._rules:
            if rule.method and rule.method != method:
                continue
            if not fnmatch.fnmatchcase(path, rule.route):
                continue
            if rule.times is not None and rule.fired >= rule.times:
                continue
            rule.seen += 1
            if rule.seen <= rule.after_n_calls:
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            return rule
        return None


def sandbox_epoch(days_back: int = 20, *, now: datetime | None = None, hour: int = 9) -> datetime:
    """The first instant of a sandbox's data, relative to the clock: ``hour`` o'clock UTC,
    ``days_back`` days before today (``now``: the run's clock; default the wall clock).

    A sandbox dating its records from this epoch over ``days_back`` days has activity inside the
    host's incremental progress window (the last 48 hours, ``progress_lookback_hours``), so an
    incremental sync of it sees changes; fixed dates fall out of that window for good."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return now.replace(hour=hour, minute=0, second=0, microsecond=0) - timedelta(days=days_back)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retry_after_header(value: Any) -> dict[str, str]:
    """The ``Retry-After`` header a fault asks for: ``"2"`` (seconds), ``"http-date:2"`` (an
    HTTP-date that many seconds ahead), or None (no header)."""
    if isinstance(value, str) and value.startswith("http-date:"):
        return {"Retry-After": email.utils.formatdate(time.time() + float(value[10:]), usegmt=True)}
    return {} if value is None else {"Retry-After": str(value)}


class SandboxServer:
    """An HTTP server on loopback, served from daemon threads until ``close``.

    What the conformance suite (:mod:`hostspec.kit.testing`) asks of a provider's sandbox, beside
    ``settings`` (the connection settings that reach it):

    * ``expected``: how many records each scope's complete fetch yields (``{"catalog": 12,
      "progress": 30}``), so that a provider reading one page only is caught;
    * ``faults``: a :class:`FaultBook` with the actions ``status_429`` (``retry_after``) and
      ``status_5xx`` (``status``); :meth:`inject` then makes the next answers of the data routes
      (``DATA_ROUTE``, a glob) fail, so that a provider without retries is caught;
    * :meth:`change_progress`: one learner studies a little more, now (the suite's incremental
      check syncs, changes that, and syncs again through the host's real progress window).
    """

    thread_name = "sandbox"
    DATA_ROUTE = "*"        # the routes of the data a provider fetches (its token endpoint excluded)

    @property
    def expected(self) -> dict[str, int] | None:
        return None

    def change_progress(self, at: datetime) -> Mapping[str, Any] | None:
        """Move one learner's progress in one course forward, its activity dated ``at`` (the
        run's clock), as a learner who studied a little more would; returns what changed (the
        sandbox's own ids, for the suite's messages), or None when this sandbox cannot (the
        default: the conformance suite's incremental check is skipped)."""
        return None

    def inject(self, fault: str, times: int = 1, retry_after: float = 0) -> FaultRule:
        """The next ``times`` answers of the data routes: ``"429"`` (``Retry-After: retry_after``)
        or ``"5xx"`` (503). Returns the rule (its ``fired`` counts the answers given)."""
        if fault not in ("429", "5xx"):
            raise ValueError("a conformance fault is '429' or '5xx'")
        action, params = (("status_429", {"retry_after": retry_after}) if fault == "429"
                          else ("status_5xx", {"status": 503}))
        rule = FaultRule(action=action, route=self.DATA_ROUTE, times=times, params=params)
        self.faults.add(rule)  # type: ignore[attr-defined]
        return rule

    def bind(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        """Bind ``handler`` on ``host`` (loopback only) and ``port`` (0: any free one)."""
        if not is_loopback(host):
            raise ValueError(f"the sandbox binds to loopback only, not {host!r}")
        try:
            self._httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:       # the message names the port taken
            raise bind_error(exc, host, port) from None
        self._httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    _bind = bind

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _spawn(self, target: Any, name: str, **kwargs: Any) -> None:
        thread = threading.Thread(target=target, name=name, kwargs=kwargs, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> Any:
        self._spawn(self._httpd.serve_forever, self.thread_name, poll_interval=0.1)
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Any:
        return self.start() if not self._threads else self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # sandboxes keep their own request log
        return

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm and the client's
        # delayed ACK hold every keep-alive answer back by ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        self._log_entry = None           # nothing a request left unlogged passes to the next one
        super().handle_one_request()

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a killed worker, a timeout): nothing to answer

    def _handle(self, method: str) -> None:
        raise NotImplementedError

    def transport_fault(self, action: str | None, params: dict[str, Any]) -> bool:
        """The faults on the connection itself, common to every sandbox: ``reset`` closes it
        without an answer (returns True: answer nothing), ``latency`` waits ``delay_s`` first."""
        if action == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return True
        if action == "latency":
            time.sleep(float(params.get("delay_s", 1.0)))
        return False

    def note_request(self, log: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        """Put ``entry`` in the sandbox's request ``log`` when this request is answered: just before
        the answer's first byte goes out, with the answer's ``status`` (and ``retry_after``, when the
        entry has that key), so a client that reads the log right after its answer finds the request
        there. A request left unanswered (a reset) joins the log at :meth:`note_unanswered`."""
        self._log_entry: tuple[list[dict[str, Any]], dict[str, Any]] | None = (log, entry)

    def note_unanswered(self, status: int) -> None:
        """The request's entry, if no answer put it in the log, goes in now with ``status``."""
        self._log_answer(status, None)

    def _log_answer(self, status: int, headers: dict[str, str] | None) -> None:
        pending = getattr(self, "_log_entry", None)
        if pending is None:
            return
        self._log_entry = None
        log, entry = pending
        entry["status"] = status
        if "retry_after" in entry:
            entry["retry_after"] = (headers or {}).get("Retry-After")
        log.append(entry)

    def start_reply(self, status: int, length: int, content_type: str | None,
                     headers: dict[str, str] | None = None) -> None:
        """Status line and headers of an answer whose body (``length`` bytes) follows."""
        self._log_answer(status, headers)
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def reply(self, status: int, data: bytes, content_type: str | None,
              headers: dict[str, str] | None = None) -> None:
        """A whole answer: status, headers and ``data``."""
        self.start_reply(status, len(data), content_type, headers)
        self.wfile.write(data)

    _transport_fault, _start_reply, _reply = transport_fault, start_reply, reply

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


__all__ = ["FaultBook", "FaultRule", "Picked", "SandboxRequestHandler", "SandboxServer", "is_loopback",
           "retry_after_header", "sandbox_epoch"]
