"""A bulk operation's results are paired with the inputs by the ``input`` each echoes, never by
position: the sandbox returns them shuffled, as 360Learning may."""
from __future__ import annotations

import pytest

from hostspec import events as ev
from publisher_360learning.delivery import Deliverer
from publisher_360learning.ledger import Ledger
from publisher_360learning.results import UnpairedResults, pair_results
from publisher_360learning.sandbox import Learning360Sandbox
from publisher_360learning.settings import target_from_settings

from .conftest import Api, course, fault
from .test_delivery import fast_client, inbound
from .test_sandbox import integration, submit
from .test_stats_delivery import CONNECTION, NOW, course_event


def test_the_sandbox_shuffles_results_each_with_its_input():
    items = [course(f"c{i:02d}") for i in range(12)]
    orders = []
    for seed in (360, 360, None):
        with Learning360Sandbox(stage_s=0.005, results_seed=seed) as lms:
            api = Api(lms)
            location = submit(api, "PUT", integration(api), items).headers["Location"]
            api.wait(location)
            results = api("GET", location + "/results").json()
        assert sorted(r["input"]["externalId"] for r in results) == [i["externalId"] for i in items]
        assert all(r["input"] == items[int(r["input"]["externalId"][1:])] for r in results)
        orders.append([r["input"]["externalId"] for r in results])
    shuffled, again, in_order = orders
    assert shuffled == again != in_order == [i["externalId"] for i in items]      # seeded: runs repeat


def test_results_pair_by_input_whatever_their_order():
    inputs = [{"externalId": "a"}, {"externalId": "b"}, {"externalId": "a"}]
    results = [{"input": {"externalId": "b"}, "status": "error"}, {"input": {"externalId": "a"}, "status": "success"},
               {"input": {"externalId": "a"}, "status": "success"}]
    assert [r["status"] for r in pair_results(inputs, results)] == ["success", "error", "success"]


def test_an_echo_that_differs_pairs_by_what_identifies_the_item_or_not_at_all():
    stat = {"courseIdentifier": {"type": "externalId", "value": "c"}, "userIdentifier": {"type": "internalId",
                                                                                         "value": "u"},
            "firstActivityAt": "2026-01-01T00:00:00.000Z"}
    echoed = {**stat, "firstActivityAt": "2026-01-01T00:00:00Z"}
    assert pair_results([{"externalId": "x"}, stat], [{"input": echoed, "status": "success"},
                                                      {"input": {"externalId": "x"}, "status": "error"}])[1]["input"] == echoed
    with pytest.raises(UnpairedResults):
        pair_results([stat, {**stat, "progress": 1}], [{"input": echoed}, {"input": {**echoed, "progress": 1}}])
    with pytest.raises(UnpairedResults):
        pair_results([{"externalId": "x"}], [{"input": {"externalId": "y"}}])
    with pytest.raises(UnpairedResults):
        pair_results([{"externalId": "x"}, {"externalId": "y"}], [{"input": {"externalId": "x"}}])


def course_events(n):
    events = []
    for i in range(n):
        e = course_event(external_id=f"crs-{i}", title=f"Course {i}")
        events.append(ev.make_event(ev.COURSE_UPSERTED, e.data, key=f"acme/{CONNECTION}/coursera/course/crs-{i}",
                                    source="/t", subject=f"crs-{i}", time=NOW))
    return events


def test_a_refused_course_among_shuffled_results_is_the_one_dead_lettered():
    with Learning360Sandbox(stage_s=0.005, enforce_rate_limits=False) as lms:
        ledger = Ledger()
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)"})
        deliverer = Deliverer({CONNECTION: target}, ledger, client_factory=fast_client)
        fault(lms, action="item_error", route="/api/v2/bulk/integrations/*", external_id="crs-0", times=1)
        out = deliverer.deliver(inbound(course_events(8)))
        deliverer.close()
        (dead,) = out.dead
        assert dead.data["record_id"].endswith("crs-0") and out.counts["course_delivered"] == 7
        c = lms.company
        for (iid, ext), course_id in c.by_external.items():
            assert c.courses[course_id]["name"] == f"Course {ext.split('-')[1]}"
            assert ledger.course_id(iid, ext) == (None if ext == "crs-0" else course_id)
            tags = {c.tags[t["tagId"]]["name"] for t in c.course_tags[course_id]}
            assert tags == (set() if ext == "crs-0" else {"SQL"})       # merged into the right courses
