"""The web console's files (``/ui``): served without a token, with their types and the browser's
security headers, and nothing but the bundle's files; the JSON API keeps asking for a token.
(tests/integration/test_console.py drives the console in a real browser.)"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
from setuptools.config.setupcfg import read_configuration

from hostspec.control import console
from hostspec.control.access import BROWSER_HEADERS
from tests.hostspec.api_fakes import Api


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
