"""Schemathesis over the whole admin API document (every operation, every check), against the API
served in-process on the in-memory control topic with real connections, runs and dead letters
in it, as a platform admin: the document says what the API does, for any generated client.

Every path of ``schemas/admin-api.openapi.json`` is tested, so routes added later are covered
without a change here. Failures are printed with the call that shows each one (``st`` writes
them); the run is bounded by the examples per operation and a time budget.

One check is told one more expected answer: ``positive_data_acceptance`` takes 422 for a body
the document's schemas accept. 422 is the API's refusal on grounds JSON Schema cannot state (the
provider installed, the provider's own settings schema, the deployment's settings policy, since
before until, a filter given both in the query and the body), as the document says of 422; the
check still fails on any other refusal of schema-valid data (400: the document's patterns and
the parser disagree).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostspec.control import api as admin_api
from hostspec.control.tokens import Tokens
from hostspec.ops.health import HttpServer
from hostspec.secrets import Secret
from tests.conftest import SCHEMAS
from tests.hostspec.api_fakes import Api, body, rejected, run

pytestmark = pytest.mark.filterwarnings("ignore")
pytest.importorskip("schemathesis", reason="needs schemathesis (the test extra)")

# connection names the path parameters take most of the time (the rest are generated): the
# connections that exist, so that the routes behind the 404 are reached
NAMES = ["acme-c", "beta-c", "gamma-c", "delta-c"]
PROVIDERS = ["coursera", "linkedin_learning"]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "100"))
PHASES = os.environ.get("SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful")
CONFIG = """
[generation]
max-examples = {examples}
codec = "utf-8"

[dictionaries]
names = {{ values = {names} }}
providers = {{ values = {providers} }}

[parameters]
"path.name" = {{ dictionary = "names", probability = 0.8 }}
"path.provider" = {{ dictionary = "providers", probability = 0.8 }}

[checks]
enabled = true

[checks.positive_data_acceptance]
expected-statuses = ["2XX", "401", "403", "404", "409", "422", "429"]
"""


@pytest.fixture
def served(plugins, tmp_path, monkeypatch):
    api = Api(plugins, tmp_path, monkeypatch)
    for tenant in ("gamma", "delta"):
        monkeypatch.setenv(f"CONNECTOR_SECRET_{tenant.upper()}__COURSERA", "s")
        api.plane.put(f"{tenant}-c", body(tenant), actor="api:setup")
        api.plane.published += [run(f"{tenant}-c", tenant, 10 + len(tenant)),
                                rejected(f"{tenant}-c", tenant, 10 + len(tenant))]
    app = admin_api.make_app(api.plane, Tokens({"ops": Secret(env="API_TOKEN_OPS")}, api.tokens_file),
                             trail=api.trail)
    server = HttpServer(app, 0, "127.0.0.1", threads=2).start()
    yield f"http://127.0.0.1:{server.port}", api.tokens["root"]
    server.close()


def test_every_operation_passes_every_check(served, tmp_path):
    url, token = served
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(examples=EXAMPLES, names=json.dumps(NAMES), providers=json.dumps(PROVIDERS)),
                      encoding="utf-8")
    report = tmp_path / "report.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         str(SCHEMAS / "admin-api.openapi.json"), "--url", url, "--checks", "all", "--workers", "1",
         "--header", f"Authorization: Bearer {token}", "--seed", "29", "--phases", PHASES,
         "--request-timeout", "30", "--report", "json", "--report-json-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    took = time.monotonic() - started
    print(f"schemathesis: {took:.0f} s")
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
    ran = json.loads(report.read_text())
    print(f"schemathesis: {ran['test_cases']['generated']} cases, {ran['operations']['tested']} operations, "
          f"stopped: {ran['stop_reason']}, phases: {json.dumps(ran['phases'])}")
    assert ran["operations"]["tested"] == ran["operations"]["total"] == len(_operations())
    # every operation got past its checks at least once (the connections exist, the examples are valid)
    unreached = [op for op, phases in ran["valid_rates"].items() if not any(p["accepted"] for p in phases.values())]
    assert unreached == [], unreached
    assert ran["stop_reason"] == "completed", ran["stop_reason"]


def _operations() -> list[tuple[str, str]]:
    doc = json.loads((SCHEMAS / "admin-api.openapi.json").read_text())
    return [(m, p) for p, item in doc["paths"].items() for m in item if m != "parameters"]
