"""The web console's files (``/ui``): served without a token, with their types and the browser's
security headers, and nothing but the bundle's files; the JSON API keeps asking for a token.
(tests/integration/test_console.py drives the console in a real browser.)"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
from setuptools.config.setupcfg import read_configuration

from hostspec import events as ev
from hostspec.control import console
from hostspec.control.access import BROWSER_HEADERS
from hostspec.ledger_records import DeliveryFact
from tests.hostspec.api_fakes import NOW, Api


@pytest.fixture
def api(plugins, tmp_path, monkeypatch):
    return Api(plugins, tmp_path, monkeypatch)


@pytest.mark.parametrize("path, content_type", [
    ("/ui", "text/html; charset=utf-8"),
    ("/ui/static/console.js", "text/javascript; charset=utf-8"),
    ("/ui/static/console.css", "text/css; charset=utf-8"),
    ("/ui/static/icon.svg", "image/svg+xml"),
])
def test_the_console_files_are_public_typed_and_carry_the_browser_headers(api, path, content_type):
    answer = api.call(None, "GET", path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == content_type
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    for header, value in BROWSER_HEADERS.items():
        assert answer.headers[header] == value, header
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert answer.content == (console.STATIC / ("index.html" if path == "/ui" else path.rsplit("/", 1)[1])).read_bytes()


def test_the_page_loads_its_script_as_a_module_and_holds_no_inline_script_or_style():
    page = (console.STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S)
    assert scripts == [(' type="module" src="/ui/static/console.js"', "")]
    assert "style=" not in page and "<style" not in page
    assert not re.search(r"\son[a-z]+=", page)                       # no inline event handlers either
    script = (console.STATIC / "console.js").read_text()
    assert "innerHTML" not in script and "eval(" not in script   # data goes on the page as text only


def test_only_the_bundles_files_are_served_and_the_api_still_needs_a_token(api):
    for path in ("/ui/static/missing.js", "/ui/static/..%2F__init__.py", "/ui/static/__init__.py",
                 "/ui/static/index.html"):
        answer = api.call(None, "GET", path)
        assert answer.status_code == 404, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert api.call(None, "GET", "/ui/").status_code == 301
    assert api.call(None, "GET", "/ui/").headers["Location"].endswith("/ui")
    assert api.call(None, "POST", "/ui").status_code == 405
    refused = api.call(None, "GET", "/connections")
    assert refused.status_code == 401 and "Content-Security-Policy" not in refused.headers
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert api.call(None, "GET", "/uiconnections").status_code == 401      # not the console's: a token needed


def test_the_package_data_ships_the_console_files():
    """setup.cfg's package data (wheels) and MANIFEST.in (source distributions) name every file of
    the bundle."""
    root = Path(__file__).resolve().parents[3]
    wanted = {f"hostspec/control/console/static/{p.name}" for p in console.STATIC.iterdir() if p.is_file()}
    patterns = read_configuration(root / "setup.cfg")["options"]["package_data"]["hostspec.control.console"]
    for name in wanted:
        assert any(fnmatch.fnmatch(name.removeprefix("hostspec/control/console/"), p) for p in patterns), name
    assert any(line.split()[:2] == ["recursive-include", "hostspec/control/console/static"]
               for line in (root / "MANIFEST.in").read_text().splitlines())


def test_a_file_of_an_unknown_type_beside_the_bundle_is_not_served(tmp_path):
    import falcon
    import falcon.testing

    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "extra.js").write_text("export {};")
    (tmp_path / "deploy.env").write_text("TOKEN=x")
    app = falcon.App()
    console.add_routes(app, tmp_path)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/ui/static/extra.js").status_code == 200
    assert client.simulate_get("/ui/static/deploy.env").status_code == 404
    assert client.simulate_get("/ui").text == "<!doctype html>"


def _status(n: int, phase: str, started: str, seconds: int) -> dict:
    return {"request_id": f"00000000-0000-4000-8000-00000000000{n}", "run_id": f"run-{n}", "tenant": "acme",
            "connection": "acme-c", "provider": "coursera", "scope": "all", "phase": phase, "dry_run": False,
            "counts": {"courses_emitted": 10 * n, "stats_emitted": n, "rejected": n - 1},
            "error": {"kind": "provider", "message": "the provider answered 503"} if phase == "failed" else None,
            "started_at": f"2026-03-01T12:{started}Z", "ended_at": f"2026-03-01T12:{started[:3]}{int(started[3:5]) + seconds:02d}.000Z",
            "worker": "w1"}


RUNS = [_status(3, "failed", "20:00.000", 4), _status(2, "partial", "10:00.000", 9), _status(1, "completed", "00:00.000", 6)]
LETTERS = [
    {"id": "dl-2", "time": "2026-03-01T12:10:05.000Z", "stage": "validation", "reason": "a record the schema refused",
     "connection": "acme-c", "provider": "coursera", "record_id": "c-2", "request_id": RUNS[1]["request_id"],
     "partition": 0, "offset": 2, "errors": {"title": ["required"]}, "redriven": None},
    {"id": "dl-1", "time": "2026-03-01T12:00:05.000Z", "stage": "mapping", "reason": "a record the mapping refused",
     "connection": "acme-c", "provider": "coursera", "record_id": "c-1", "request_id": RUNS[2]["request_id"],
     "partition": 0, "offset": 1, "errors": None,
     "redriven": {"by": "api:root", "at": "2026-03-01T12:15:00.000Z", "request_id": "r-9"}},
]


class _Page:
    """A fleet route as the fleet and delivery helpers serve it (``{"items", "total", "next_cursor"}``)."""

    def __init__(self, items):
        self.items = items

    def on_get(self, req, resp, **_params):
        items = [i for i in self.items if req.get_param("connection") in (None, i.get("connection"))]
        resp.media = {"items": items, "total": len(items), "next_cursor": None}


def _delivered(board) -> None:
    """Three items delivered and two dead-lettered at delivery, on the API's delivery board."""
    for n in range(3):
        board.journal(DeliveryFact(f"course/acme-c/c{n}", "delivered", "acme-c", "acme", NOW.timestamp() + n))
    for n in range(2):
        data = {"stage": "delivery", "reason": "target_config", "errors": "refused", "record_id": f"course/acme-c/d{n}",
                "record": None, "request_id": None, "run_id": None, "tenant": "acme", "connection": "acme-c",
                "provider": "coursera", "origin": None, "raw_value": None, "raw_encoding": None}
        board.dead_letter(ev.make_event(ev.RECORD_REJECTED, data, key=f"acme/acme-c/coursera/d{n}", source="/test",
                                        subject=f"course/acme-c/d{n}", time=NOW, id_content=f"d{n}"))


def test_with_the_fleet_and_delivery_routes_the_console_shows_their_figures_and_keeps_to_the_token(
        plugins, tmp_path, monkeypatch):
    """The fleet routes the console reads when the API serves them (GET /runs, /deadletters in the
    agreed shapes, faked here on the in-memory API) and the delivery health; and a tenant_trigger
    token, to which the fleet routes answer 403, sees its tenant only and no dead letters."""
    from hostspec.ops.health import HttpServer
    from tests.browser import ARGS, CHROMIUM, page_errors, playwright_or_skip

    sync_playwright, expect = playwright_or_skip()
    api = Api(plugins, tmp_path, monkeypatch)
    app = api.client.app
    app.add_route("/runs", _Page(RUNS))
    app.add_route("/deadletters", _Page(LETTERS))
    _delivered(api.plane.delivery)
    server = HttpServer(app, 0, "127.0.0.1").start()
    url = f"http://127.0.0.1:{server.port}/ui?poll=60000"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            errors = page_errors(page)
            page.goto(url)
            page.fill("#token", api.tokens["root"])
            page.click("#signin button[type=submit]")
            row = page.locator('tr[data-connection="acme-c"]')
            expect(row.get_by_test_id("health")).to_have_text("failing")       # the newest of /runs
            expect(row.get_by_test_id("rejected")).to_have_text("2")                # its counts
            expect(row.get_by_test_id("delivered")).to_have_text("3")
            expect(row.get_by_test_id("dead-lettered")).to_have_text("2")
            expect(page.locator('tr[data-connection="beta-c"]')).to_have_count(1)

            row.get_by_role("link", name="acme-c").click()
            expect(page.get_by_test_id("delivered")).to_have_text("3")
            expect(page.get_by_test_id("verdict")).to_have_text("delivering")
            redriven = page.locator('tr[data-deadletter="dl-1"] td').nth(6)
            expect(redriven).to_have_text("2026-03-01 12:15:00Z by api:root")
            expect(page.locator('tr[data-deadletter="dl-2"] td').nth(6)).to_have_text("no")

            page.click("#signout")
            page.fill("#token", api.tokens["acme-trigger"])
            page.click("#signin button[type=submit]")
            expect(page.locator("#deadletters")).to_contain_text("This token may not read dead letters.")
            page.click("a.brand")
            expect(page.locator('tr[data-connection="acme-c"]')).to_have_count(1)
            expect(page.locator('tr[data-connection="beta-c"]')).to_have_count(0)
            expect(page.locator('tr[data-connection="acme-c"]').get_by_test_id("delivered")).to_have_text("3")
            browser.close()
        assert errors == [], errors
    finally:
        server.close()
