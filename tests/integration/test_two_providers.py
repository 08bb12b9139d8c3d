"""Coursera and LinkedIn Learning connections of one tenant, synced by one worker on the broker."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from connector_linkedin.sandbox import LinkedInSandbox, LinkedInSpec
from hostspec.requests import SyncRequest

from .conftest import final_status, publish_raw, read_topic

pytestmark = pytest.mark.kafka


def test_one_worker_syncs_both_providers_of_a_tenant(tmp_path, bootstrap, topics, workers):
    with CourseraSandbox(OrgSpec(contents=7, learners=5, enrollments=20)) as coursera, \
            LinkedInSandbox(LinkedInSpec(courses=6, learners=4, activities=15)) as linkedin:
        conns = tmp_path / "c.toml"
        conns.write_text(f"""
[connections.acme-coursera]
tenant = "acme"
provider = "coursera"
group_id = "65a000000000000000000001"
[connections.acme-coursera.settings]
org_id = "{coursera.spec.org_id}"
client_id = "standin-key"
client_secret = {{ env = "IT_COURSERA_SECRET" }}
base_url = "{coursera.url}"

[connections.acme-linkedin]
tenant = "acme"
provider = "linkedin_learning"
group_id = "65a000000000000000000001"
[connections.acme-linkedin.settings]
client_id = "{linkedin.client_id}"
client_secret = "{linkedin.client_secret}"
api_url = "{linkedin.url}"
token_url = "{linkedin.url}/oauth/v2/accessToken"
""")
        conns.chmod(0o600)
        worker = workers(conns)
        worker.wait_for(r"serves partitions \[")
        now = datetime.now(timezone.utc)
        ids = {}
        for connection, provider in (("acme-coursera", "coursera"), ("acme-linkedin", "linkedin_learning")):
            request = SyncRequest(str(uuid.uuid4()), connection, provider, "all", "test")
            publish_raw(bootstrap, topics.requests, request.to_event(now).to_json().encode(), key=connection.encode())
            ids[provider] = request.request_id
        statuses = {p: final_status(bootstrap, topics, rid) for p, rid in ids.items()}
        expected = {"coursera": (coursera.catalog_size(), len(coursera.report_rows())),
                    "linkedin_learning": (6, len(linkedin.rows_between(0, 2**62)))}
    assert {p: s["phase"] for p, s in statuses.items()} == {"coursera": "completed", "linkedin_learning": "completed"}
    assert {s["worker"] for s in statuses.values()} == {worker.name}
    total_courses = sum(c for c, _ in expected.values())
    total_stats = sum(s for _, s in expected.values())
    courses = read_topic(bootstrap, topics.courses, until=lambda v: len(v) >= total_courses)
    stats = read_topic(bootstrap, topics.learner_stats, until=lambda v: len(v) >= total_stats)
    for provider, (n_courses, n_stats) in expected.items():
        assert sum(c["data"]["provider"] == provider for c in courses) == n_courses
        assert sum(s["data"]["provider"] == provider for s in stats) == n_stats
    assert {c["data"]["tenant"] for c in courses + stats} == {"acme"}
    assert all(e["partitionkey"].startswith(f"acme/{e['data']['connection']}/{e['data']['provider']}/")
               for e in courses + stats)
