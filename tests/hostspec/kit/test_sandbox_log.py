"""A sandbox's request log holds a request by the time its answer arrives: a client that reads
the log right after an answer finds it there, however late the server thread runs on."""
from __future__ import annotations

import threading

import requests

from hostspec.kit import SandboxRequestHandler, SandboxServer


class Slow(SandboxServer):
    """Answers, then is held up before its handler returns (a busy machine, made certain)."""

    def __init__(self) -> None:
        self.log: list[dict] = []
        self.release = threading.Event()
        server = self

        class Handler(SandboxRequestHandler):
            def _handle(self, method: str) -> None:
                if self.path == "/reset":
                    self.note_request(server.log, {"path": self.path, "status": None})
                    self.note_unanswered(0)               # nothing was answered: logged now
                    return self.reply(200, b"{}", "application/json")
                self.note_request(server.log, {"path": self.path, "status": None, "retry_after": None})
                self.reply(429, b"{}", "application/json", {"Retry-After": "3"})
                server.release.wait(5)

        self.bind("127.0.0.1", 0, Handler)


def test_the_log_holds_a_request_before_its_answer_is_read():
    sandbox = Slow().start()
    try:
        answer = requests.get(sandbox.url + "/data", timeout=5)
        assert answer.status_code == 429
        assert sandbox.log == [{"path": "/data", "status": 429, "retry_after": "3"}]   # read at once
    finally:
        sandbox.release.set()
        sandbox.close()


def test_a_request_left_unanswered_is_logged_with_its_status():
    sandbox = Slow().start()
    try:
        requests.get(sandbox.url + "/reset", timeout=5)
        assert sandbox.log == [{"path": "/reset", "status": 0}]     # once: the answer after adds none
    finally:
        sandbox.release.set()
        sandbox.close()
