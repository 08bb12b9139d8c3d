"""The browser of the console's tests: Playwright for Python driving the system's Chromium.

Missing under dev/test (``REQUIRE_KAFKA=1``) is a failure, since dev/test installs Chromium from
the Debian packages when it is missing; elsewhere the test is skipped.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox"]
WAIT_MS = 60_000          # a busy CI machine: every wait has a minute


def playwright_or_skip():
    """``(sync_playwright, expect)``, expectations set to wait :data:`WAIT_MS`."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        expect = sync_playwright = None
    if sync_playwright is None or not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        if os.environ.get("REQUIRE_KAFKA") == "1":
            pytest.fail(f"the console's browser tests need Playwright for Python and Chromium at {CHROMIUM}")
        pytest.skip("no Playwright or no Chromium")
    expect.set_options(timeout=WAIT_MS)
    return sync_playwright, expect


def page_errors(page) -> list[str]:
    """The page's uncaught errors and console errors, as they come (answers the page expects,
    such as 401 or an optional route's 404, are not errors)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    return errors
