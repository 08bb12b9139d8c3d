"""A Python client generated from ``schemas/admin-api.openapi.json`` by openapi-python-client, used
against the API and a worker on the broker: create a connection, request a sync, read the run's
status once the worker ran it (``error`` null, counts as a named model), list the dead letters of
its broken records, re-drive them, and read a refusal's flat field errors. The generated code
goes to tmp_path; the client is built with ``raise_on_unexpected_status``, so a status the
document does not list fails here, as does an answer its models cannot parse."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import time

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec

from tests.conftest import SCHEMAS

from .conftest import ServiceProcess
from .test_control_plane import TOKEN, start_api

pytestmark = pytest.mark.kafka
GROUP = "65a1b2c3d4e5f60718293a4b"


@pytest.fixture(scope="module")
def admin_client(tmp_path_factory):
    """The generated package, imported (its name is unique to this test)."""
    if shutil.which("openapi-python-client") is None:
        pytest.skip("needs openapi-python-client (the test extra)")
    where = tmp_path_factory.mktemp("generated")
    made = subprocess.run(["openapi-python-client", "generate", "--path", str(SCHEMAS / "admin-api.openapi.json"),
                           "--output-path", str(where / "t29_admin_client"), "--meta", "none", "--overwrite"],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Warning" not in made.stdout + made.stderr, made.stdout + made.stderr   # every schema understood
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("t29_admin_client")
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m.split(".")[0] == "t29_admin_client"]:
            del sys.modules[name]


def until(what, check, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_generated_client_creates_syncs_reads_status_and_redrives(admin_client, tmp_path, bootstrap, prefix):
    from t29_admin_client import AuthenticatedClient
    from t29_admin_client.api.default import (
        create_connection, get_connection, list_dead_letters, redrive, request_sync, status)
    from t29_admin_client.models import Error, NewConnection, RedriveSelection, SyncParameters
    from t29_admin_client.models.sync_status import SyncStatus

    # the run's error is the named, nullable RunError (an inline ["object", "null"] type makes
    # generators invent a model per use, and openapi-generator refuse "error": null)
    assert SyncStatus.__annotations__["error"] == "None | RunError", SyncStatus.__annotations__

    with CourseraSandbox(OrgSpec(contents=15, learners=10, enrollments=60, broken_every=7)) as coursera:
        secrets = {"CONNECTOR_SECRET_ACME__COURSERA": coursera.client_secret}
        api, url = start_api(tmp_path, bootstrap, prefix)
        worker = ServiceProcess(tmp_path, "worker", [
            sys.executable, "-m", "hostspec", "--connections", "kafka", "--allow-sandboxes", "run",
            "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}group",
            "--worker-id", "w1", "--session-timeout-ms", "6000", "--metrics-port", "0",
            "--metrics-addr", "127.0.0.1"], secrets)
        client = AuthenticatedClient(base_url=url, token=TOKEN, raise_on_unexpected_status=True, timeout=60)
        body = {"tenant": "acme", "provider": "coursera", "group_id": GROUP,
                "settings": {"org_id": coursera.spec.org_id, "client_id": coursera.client_id,
                             "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}, "base_url": coursera.url,
                             "max_retry_after_s": 0.2}}
        try:
            worker.wait_for(r"serves partitions \[0", timeout=90)
            refused = create_connection.sync(client=client, body=NewConnection.from_dict(
                {"connection": "acme", **body, "settings": {**body["settings"], "token_url": "https://x.test/t"}}))
            assert isinstance(refused, Error) and refused.error_code == 422
            assert "settings.token_url" in refused.errors.additional_properties, refused   # flat field errors

            created = create_connection.sync(client=client, body=NewConnection.from_dict({"connection": "acme", **body}))
            assert created.revision == 1 and created.tenant == "acme", created
            missing = get_connection.sync("nobody", client=client)
            assert isinstance(missing, Error) and missing.error_code == 404

            asked = request_sync.sync("acme", client=client, body=SyncParameters.from_dict({"mode": "full"}))
            ended = until("the run's final status", lambda: next(
                (r for r in status.sync("acme", client=client).runs
                 if r.request_id == asked.request_id and r.phase.value in ("completed", "partial", "failed")), None))
            assert ended.phase.value == "partial" and ended.error is None, ended     # "error": null parsed
            assert ended.counts.rejected > 0 and ended.counts.courses_emitted > 0, ended.counts

            letters = until("dead letters", lambda: list_dead_letters.sync("acme", client=client))
            assert {d.stage for d in letters} <= {"mapping", "validation"} and all(d.request_id for d in letters)
            again = redrive.sync("acme", client=client, body=RedriveSelection.from_dict({"ids": [letters[0].id]}))
            assert again.redriven == [letters[0].id] and len(again.requests) == 1, again
            queued = until("the re-drive's status", lambda: next(
                (r for r in status.sync("acme", client=client).runs if r.request_id == again.requests[0]), None))
            assert queued.redrive_of == [letters[0].id]
            for process in (worker, api):
                assert process.proc.poll() is None, process.log()[-3000:]
        finally:
            for process in (worker, api):
                process.stop(timeout=30)
