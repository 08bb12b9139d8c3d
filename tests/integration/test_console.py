"""The web console in a real browser (Chromium driven by Playwright), on the real broker: an
operator signs in with a token, opens a connection made through the API, requests a sync, sees
its run appear, re-drives one dead letter with the page's button and sees the re-drive's request
and then its run; the fleet overview shows the connection's health and counts.

The screenshots of docs/console.md are taken on the way: into docs/img/ when the test runs with
``UPDATE_SCREENSHOTS=1`` (their ids and times differ at every run, so an ordinary run does not
rewrite them), else into the test's temporary folder.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from tests.browser import ARGS, CHROMIUM, WAIT_MS, page_errors, playwright_or_skip

from .conftest import ServiceProcess, read_topic
from .test_control_plane import TOKEN, session, start_api

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
GROUP = "65a1b2c3d4e5f60718293a4b"


def _shots(tmp_path: Path) -> Path:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG
    return tmp_path


def _connection(coursera) -> dict:
    """Without a 360Learning target: the records stay on the topics (no publisher in this test)."""
    return {"tenant": "acme", "provider": "coursera", "group_id": GROUP,
            "settings": {"org_id": coursera.spec.org_id, "client_id": coursera.client_id,
                         "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA_A"}, "base_url": coursera.url,
                         "max_retry_after_s": 0.2}}


class _Table:
    """Small helpers on the console page (locators by the page's data attributes)."""

    def __init__(self, page):
        self.page = page

    def run(self, request_id: str, phases: str = "completed|partial"):
        return self.page.locator(f'#runs tr[data-request="{request_id}"]').filter(
            has=self.page.locator("span.badge", has_text=re.compile(f"^({phases})$")))


def test_the_console_shows_a_sync_and_redrives_a_dead_letter(tmp_path, bootstrap, prefix, topics):
    sync_playwright, expect = playwright_or_skip()

    shots = _shots(tmp_path)
    spec = OrgSpec(contents=6, learners=4, enrollments=12, broken_every=4)     # some records refused by the mapping
    with CourseraSandbox(spec) as coursera:
        secrets = {"CONNECTOR_SECRET_ACME__COURSERA_A": coursera.client_secret}
        api, url = start_api(tmp_path, bootstrap, prefix)
        worker = ServiceProcess(tmp_path, "worker", [
            sys.executable, "-m", "hostspec", "--connections", "kafka", "--allow-sandboxes", "run",
            "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}group",
            "--worker-id", "w1", "--session-timeout-ms", "6000", "--metrics-port", "0",
            "--metrics-addr", "127.0.0.1"], secrets)
        http = session()
        try:
            created = http.post(f"{url}/connections", json={"connection": "acme-coursera", **_connection(coursera)},
                                timeout=30)
            assert created.status_code == 201, created.text
            other = {**_connection(coursera), "tenant": "beta"}          # a second tenant's, paused
            other["settings"] = {**other["settings"], "client_secret": {"env": "CONNECTOR_SECRET_BETA__COURSERA"}}
            assert http.post(f"{url}/connections", json={"connection": "beta-coursera", **other},
                             timeout=30).status_code == 201
            assert http.put(f"{url}/connections/beta-coursera/pause", timeout=30).status_code == 202
            worker.wait_for(r"serves partitions \[0", timeout=90)

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 860}, color_scheme="light")
                page.set_default_timeout(WAIT_MS)
                errors = page_errors(page)

                # signed out: the page asks for a token; a wrong one is refused, the right one kept
                page.goto(f"{url}/ui?poll=1000")
                page.fill("#token", "not-a-token")
                page.click("#signin button[type=submit]")
                expect(page.locator("#signin .error")).to_contain_text("refused the token")
                page.fill("#token", TOKEN)
                page.click("#signin button[type=submit]")

                # the fleet: the connection, by tenant, with no run yet
                fleet_row = page.locator('tr[data-connection="acme-coursera"]')
                expect(fleet_row.get_by_test_id("health")).to_have_text("no runs")
                expect(page.locator('tr[data-connection="beta-coursera"]').get_by_test_id("health")).to_have_text("paused")
                fleet_row.get_by_role("link", name="acme-coursera").click()

                # its page: request a sync, see the run come and its dead letters
                expect(page.get_by_test_id("health")).to_have_text("no runs")
                page.click("#request-sync")
                asked = page.locator("#notice").filter(has_text="Sync requested")
                expect(asked).to_be_visible()
                request_id = re.search(r"Sync requested: ([0-9a-f-]{36})", asked.inner_text()).group(1)
                table = _Table(page)
                expect(table.run(request_id, "partial")).to_have_count(1)
                expect(page.get_by_test_id("health")).to_have_text("degraded")
                letters = page.locator("#deadletters tr[data-deadletter]")
                expect(letters.first).to_be_visible()
                expect(page.locator('svg[data-testid="runs-chart"] rect.bar')).to_have_count(1)
                page.screenshot(path=str(shots / "console-connection.png"), full_page=True)

                # re-drive the newest dead letter with its button: the API's answer on the page
                letter = letters.first
                letter_id = letter.get_attribute("data-deadletter")
                letter.get_by_role("button", name="Re-drive").click()
                result = page.get_by_test_id("redrive-result")
                expect(result).to_contain_text("Re-drive accepted: 1 dead letter sent again")
                redrive_request = result.locator("code.request-id").first.inner_text()
                assert re.fullmatch(r"[0-9a-f-]{36}", redrive_request), redrive_request

                # what the button asked for is what the API did: one request naming that dead letter
                queued = [v["data"] for v in read_topic(bootstrap, topics.status, timeout=10)
                          if v["data"]["phase"] == "queued"]
                assert [(q["request_id"], q["redrive_of"]) for q in queued] == [(redrive_request, [letter_id])]

                # and its run shows on the page, noted as the re-drive it is
                rerun = table.run(redrive_request)
                expect(rerun).to_have_count(1)
                expect(rerun.locator("td.note")).to_have_text("re-drive of 1 dead letter")
                rejected = rerun.locator("td").nth(5).inner_text()
                assert int(rejected) >= 1, rejected                  # the broken records, refused again
                page.screenshot(path=str(shots / "console-redrive.png"), full_page=True)

                # pause and resume with the page's button: the API's document follows
                page.click("#pause")
                expect(page.get_by_test_id("paused")).to_be_visible()
                assert http.get(f"{url}/connections/acme-coursera", timeout=30).json()["paused"] is True
                expect(page.locator("#pause")).to_have_text("Resume")
                page.click("#pause")
                expect(page.get_by_test_id("paused")).to_have_count(0)
                assert http.get(f"{url}/connections/acme-coursera", timeout=30).json()["paused"] is False

                # back on the fleet overview: health and counts of the connection
                page.click("a.brand")
                expect(fleet_row.get_by_test_id("health")).not_to_have_text("no runs")
                expect(fleet_row.get_by_test_id("rejected")).to_have_text(rejected)      # the re-drive's run
                expect(fleet_row.get_by_test_id("delivered")).to_have_text(re.compile(r"^\d+$"))   # no publisher: 0
                page.screenshot(path=str(shots / "console-fleet.png"), full_page=True)
                browser.close()
            assert errors == [], errors
            for process in (worker, api):
                assert process.proc.poll() is None, process.log()[-3000:]
        finally:
            http.close()
            for process in (worker, api):
                process.stop(timeout=30)
