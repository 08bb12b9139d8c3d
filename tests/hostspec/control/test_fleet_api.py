"""The fleet routes of the admin API on the in-memory topics: GET /runs, /deadletters and
/requests/{id} across connections and tenants, re-drives marked and not repeated, a deleted
connection's history kept (tests/integration/test_fleet.py runs the same on the broker)."""
from __future__ import annotations

import pytest

from hostspec import events as ev
from tests.hostspec.api_fakes import Api, body, rejected, run
from tests.hostspec.control.test_fleet_index import letter, status


@pytest.fixture
def api(plugins, tmp_path, monkeypatch):
    return Api(plugins, tmp_path, monkeypatch)


def requests_published(api) -> list[dict]:
    return [e.data for e in api.plane.published if e.type == ev.SYNC_REQUESTED]


def test_fleet_lists_span_connections_and_keep_each_tenant_to_its_own(api):
    api.plane.published += [run("acme-c", "acme", 4), run("beta-c", "beta", 5), rejected("acme-c", "acme", 3)]
    runs = api.call("root", "GET", "/runs").json
    assert runs["total"] == 5 and {r["connection"] for r in runs["items"]} == {"acme-c", "beta-c"}
    acme = api.call("acme-admin", "GET", "/runs").json
    assert sorted(r["request_id"] for r in acme["items"]) == ["r1", "r4"] and acme["total"] == 2
    assert api.call("acme-admin", "GET", "/runs?tenant=beta").json["total"] == 0
    assert api.call("root", "GET", "/runs?tenant=beta&connection=beta-c").json["total"] == 2
    assert api.call("root", "GET", "/runs?phase=completed").json["total"] == 0
    assert api.call("root", "GET", "/runs?phase=nonsense").status_code == 422

    letters = api.call("root", "GET", "/deadletters").json
    assert letters["total"] == 3 and [d["id"] for d in letters["items"]] == [         # newest first
        rejected("acme-c", "acme", 3).id, rejected("beta-c", "beta", 2).id, rejected("acme-c", "acme", 1).id]
    assert all(d["redriven"] is None and "errors" in d and d["connection_deleted"] is False
               for d in letters["items"])
    own = api.call("acme-admin", "GET", "/deadletters").json
    assert own["total"] == 2 and {d["tenant"] for d in own["items"]} == {"acme"}
    assert api.call("acme-trigger", "GET", "/deadletters").status_code == 403


def test_cursor_pages_cover_every_item_once(api):
    for n in range(10, 17):
        api.plane.published.append(letter(n, connection="beta-c" if n % 2 else "acme-c",
                                          tenant="beta" if n % 2 else "acme"))
    seen, cursor = [], None
    while True:
        got = api.call("root", "GET", "/deadletters" + (f"?limit=3&cursor={cursor}" if cursor else "?limit=3")).json
        assert got["total"] == 9
        seen += [d["id"] for d in got["items"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 9 == len(set(seen))
    assert api.call("root", "GET", "/deadletters?cursor=garbage").status_code == 422
    assert api.call("root", "GET", "/deadletters?limit=0").status_code == 400


def test_a_dead_letter_redriven_twice_is_published_once_and_marked(api):
    first = api.call("acme-admin", "POST", "/connections/acme-c/deadletters/redrive", json={}).json
    assert len(first["redriven"]) == 1 and first["already_redriven"] == {}
    assert len(requests_published(api)) == 1
    marked = api.call("acme-admin", "GET", "/deadletters?redriven=true").json["items"]
    assert [d["id"] for d in marked] == first["redriven"]
    assert marked[0]["redriven"]["by"] == "api:acme-admin" and marked[0]["redriven"]["request_id"] == first["requests"][0]
    assert api.call("acme-admin", "GET", "/deadletters?redriven=false").json["total"] == 0
    listed = api.call("acme-admin", "GET", "/connections/acme-c/deadletters").json
    assert listed[0]["redriven"]["request_id"] == first["requests"][0]

    second = api.call("acme-admin", "POST", "/connections/acme-c/deadletters/redrive", json={}).json
    assert second["redriven"] == [] and second["requests"] == []
    assert second["already_redriven"][first["redriven"][0]]["request_id"] == first["requests"][0]
    assert len(requests_published(api)) == 1                        # nothing published the second time
    forced = api.call("acme-admin", "POST", "/connections/acme-c/deadletters/redrive", json={"force": True}).json
    assert forced["redriven"] == first["redriven"] and len(requests_published(api)) == 2
    assert api.call("acme-admin", "POST", "/connections/acme-c/deadletters/redrive",
                    json={"force": "yes"}).status_code == 422


def test_a_request_shows_its_status_its_run_and_its_dead_letters(api):
    asked = api.call("acme-trigger", "POST", "/connections/acme-c/syncs", json={"scope": "catalog"}).json
    rid = asked["request_id"]
    fresh = api.call("acme-trigger", "GET", f"/requests/{rid}")
    assert fresh.status_code == 200, fresh.text          # read-your-writes: before any status
    assert (fresh.json["tenant"], fresh.json["status"], fresh.json["merged_into"]) == ("acme", None, None)
    assert fresh.json["requested_by"] == "api:acme-trigger"
    assert api.call("beta-admin", "GET", f"/requests/{rid}").status_code == 404

    api.plane.published += [status("main", "started", run_id="run-7", minute=1),
                            status(rid, "started", run_id="run-7", minute=1, merged_into="main"),
                            status(rid, "completed", run_id="run-7", minute=2, merged_into="main"),
                            letter(40, request_id=rid)]
    got = api.call("acme-trigger", "GET", f"/requests/{rid}").json
    assert got["status"]["phase"] == "completed" and got["merged_into"] == "run-7"
    assert got["merged_into_request"] == "main"
    assert [d["id"] for d in got["dead_letters"]] == [letter(40, request_id=rid).id]
    assert api.call("root", "GET", "/requests/nobody").status_code == 404


def test_a_deleted_connections_history_stays_its_tenants_and_a_new_life_shows_none_of_it(api):
    assert api.call("acme-admin", "DELETE", "/connections/acme-c").status_code == 204
    status_ = api.call("acme-admin", "GET", "/connections/acme-c/status")
    assert status_.status_code == 200 and status_.json["deleted"] is True
    assert sorted(r["request_id"] for r in status_.json["runs"]) == ["r1", "r3"]
    assert api.call("beta-admin", "GET", "/connections/acme-c/status").status_code == 404
    runs = api.call("acme-admin", "GET", "/runs?connection=acme-c").json["items"]
    assert [(r["request_id"], r["connection_deleted"]) for r in runs] == [("r1", True)]

    assert api.call("root", "PUT", "/connections/acme-c", json=body("beta")).status_code == 201   # beta's now
    reborn = api.call("beta-admin", "GET", "/connections/acme-c/status").json
    assert reborn["deleted"] is False and "r1" not in [r["request_id"] for r in reborn["runs"]]
    assert api.call("beta-admin", "GET", "/connections/acme-c/deadletters").json == []
    assert api.call("acme-admin", "GET", "/connections/acme-c/status").status_code == 404
    # acme's history under the name stays acme's, through the fleet routes
    assert [r["request_id"] for r in api.call("acme-admin", "GET", "/runs?connection=acme-c").json["items"]] == ["r1"]
    assert api.call("acme-admin", "GET", "/deadletters?connection=acme-c").json["total"] == 1
    assert api.call("beta-admin", "GET", "/deadletters?connection=acme-c").json["total"] == 0
