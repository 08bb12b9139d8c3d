"""The fleet routes on the broker: runs and dead letters of two tenants' connections listed in
cursor pages from the API's index, a request followed by its id, a dead letter re-driven twice
published once, and the re-drive mark restored by another API process from the topics."""
from __future__ import annotations

import subprocess
import sys

import requests
from kafka import KafkaProducer

import pytest

from hostspec.control.tokens import write_token
from tests.hostspec.control.test_fleet_index import letter, status

from .conftest import read_topic
from .test_api_roles import bearer, body
from .test_control_plane import session, start_api
from .test_publisher import eventually

pytestmark = pytest.mark.kafka


def pages(http: requests.Session, url: str, headers: dict | None = None) -> tuple[list[dict], set[int]]:
    items, totals, cursor = [], set(), None
    while True:
        got = http.get(url, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=headers,
                       timeout=30).json()
        items += got["items"]
        totals.add(got["total"])
        cursor = got["next_cursor"]
        if cursor is None:
            return items, totals


def test_fleet_lists_requests_and_a_redrive_published_once(tmp_path, bootstrap, prefix, topics):
    tokens_file = tmp_path / "tokens.toml"
    acme = write_token(tokens_file, "acme-admin", role="tenant_admin", tenant="acme")
    api, url = start_api(tmp_path, bootstrap, prefix, "api", "--tokens-file", str(tokens_file))
    api2 = None
    http = session()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for tenant in ("acme", "beta"):
            assert http.post(f"{url}/connections", json={"connection": f"{tenant}-c", **body(tenant)},
                             timeout=30).status_code == 201
        # what workers would have published: two runs and three dead letters per connection
        for tenant in ("acme", "beta"):
            for n in range(3):
                event = letter(n + (10 if tenant == "beta" else 0), connection=f"{tenant}-c", tenant=tenant)
                producer.send(topics.dead_letter, key=event.key.encode(), value=event.to_json().encode())
            for n in range(2):
                event = status(f"{tenant}-r{n}", "completed", run_id=f"{tenant}-run{n}", tenant=tenant,
                               connection=f"{tenant}-c", minute=n)
                producer.send(topics.status, key=event.key.encode(), value=event.to_json().encode())
        producer.flush(30)

        letters, totals = pages(http, f"{url}/deadletters")
        assert totals == {6} and len({d["id"] for d in letters}) == 6                  # every one, once
        assert [d["time"] for d in letters] == sorted((d["time"] for d in letters), reverse=True)
        assert {d["connection"] for d in letters} == {"acme-c", "beta-c"} and letters[0]["errors"] == {
            "title": ["missing"]}
        runs, run_totals = pages(http, f"{url}/runs")
        assert run_totals == {4} and {r["run_id"] for r in runs} == {"acme-run0", "acme-run1", "beta-run0", "beta-run1"}
        own, own_totals = pages(http, f"{url}/deadletters", headers=bearer(acme))
        assert own_totals == {3} and {d["tenant"] for d in own} == {"acme"}

        # a request, followed by its id: known at once, then its status and the run it merged into
        rid = requests.post(f"{url}/connections/acme-c/syncs", json={}, headers=bearer(acme), timeout=30).json()[
            "request_id"]
        fresh = requests.get(f"{url}/requests/{rid}", headers=bearer(acme), timeout=30)
        assert fresh.status_code == 200 and fresh.json()["status"] is None, fresh.text
        for event in (status(rid, "started", run_id="acme-run0", connection="acme-c", minute=3, merged_into="acme-r0"),
                      status(rid, "completed", run_id="acme-run0", connection="acme-c", minute=4,
                             merged_into="acme-r0")):
            producer.send(topics.status, key=event.key.encode(), value=event.to_json().encode())
        producer.flush(30)
        followed = requests.get(f"{url}/requests/{rid}", headers=bearer(acme), timeout=30).json()
        assert (followed["status"]["phase"], followed["merged_into"]) == ("completed", "acme-run0")
        assert http.get(f"{url}/requests/no-such-request", timeout=30).status_code == 404

        # one dead letter re-driven twice: one request on the requests topic
        one = [d["id"] for d in own][0]
        first = http.post(f"{url}/connections/acme-c/deadletters/redrive", json={"ids": [one]}, timeout=60).json()
        second = http.post(f"{url}/connections/acme-c/deadletters/redrive", json={"ids": [one]}, timeout=60).json()
        assert first["redriven"] == [one] and second["redriven"] == [] and one in second["already_redriven"]
        marked = http.get(f"{url}/deadletters", params={"redriven": "true"}, timeout=30).json()
        assert [d["id"] for d in marked["items"]] == [one]
        assert marked["items"][0]["redriven"] == {**marked["items"][0]["redriven"], "by": "api:ops",
                                                  "request_id": first["requests"][0]}

        # another API process restores the index from the topics: the mark holds there too
        api2, url2 = start_api(tmp_path, bootstrap, prefix, "api2")
        again = http.post(f"{url2}/connections/acme-c/deadletters/redrive", json={"ids": [one]}, timeout=60).json()
        assert again["redriven"] == [] and again["already_redriven"][one]["request_id"] == first["requests"][0]

        # the command line re-drives through the same index: nothing again
        cli = subprocess.run([sys.executable, "-m", "hostspec", "deadletters", "redrive", "--id", one,
                              "--bootstrap-servers", bootstrap, "--topic-prefix", prefix],
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0 and f"already re-driven {one}" in cli.stderr, cli.stderr
        assert "0 dead letters re-driven" in cli.stdout

        def redrives() -> list[dict]:
            return [v["data"] for v in read_topic(bootstrap, topics.requests, timeout=30)
                    if v["data"]["requested_by"].startswith("redrive:")]
        eventually(lambda: len(redrives()) >= 1, timeout=30, what="the re-drive's request")
        assert len(redrives()) == 1
    finally:
        producer.close()
        http.close()
        for process in (api, api2):
            if process is not None:
                process.stop(timeout=20)
