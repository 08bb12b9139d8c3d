"""Exactly-once on the real broker: a worker SIGKILLed at random points of one large sync."""
from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec

from .conftest import final_status, publish_raw, read_topic, request_event, slow_reports, write_connections

pytestmark = pytest.mark.kafka
KILLS = 10


def test_ten_random_kills_lose_nothing_and_duplicate_nothing(tmp_path, bootstrap, topics, workers):
    rng = random.Random(20261128)
    # 6000 rows in pages of 50 at 0.25 s a page: about 30 s of fetching, more than ten kills take
    with CourseraSandbox(OrgSpec(contents=40, learners=200, enrollments=6000)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, page_size=50)
        slow_reports(sb, 0.25)
        # the same worker id every time: a restart fences its predecessor's open transactions
        extra = ("--batch-size", "150", "--transaction-timeout-ms", "15000")
        request_id, value = request_event("acme")
        kill_points, killed = [], []
        for attempt in range(KILLS):
            worker = workers(conns, "wk", None, *extra)
            if attempt == 0:
                worker.wait_for(r"assigned partitions \[0")  # topics exist now
                publish_raw(bootstrap, topics.requests, value, key=b"acme", partition=0)
            worker.wait_for(r"request .* from 0@0", timeout=90)
            delay = rng.uniform(0.3, 2.5)
            time.sleep(delay)
            worker.kill()
            kill_points.append(round(delay, 2))
            killed.append(worker)
        final = workers(conns, "wk", None, *extra)
        status = final_status(bootstrap, topics, request_id, timeout=180)
        attempts = [*killed, final]
        resumed = sum("resuming request" in w.log() for w in attempts)
        expected_courses = {c["contentId"] for c in sb.org.visible_contents(clips=False)}
        expected_stats = {(sb.org.row(i)["contentId"], sb.org.row(i)["externalId"]) for i in sb.report_rows()}

    assert status["phase"] == "completed", status
    courses = read_topic(bootstrap, topics.courses, until=lambda v: len(v) >= len(expected_courses), timeout=60)
    stats = read_topic(bootstrap, topics.learner_stats, until=lambda v: len(v) >= len(expected_stats), timeout=60)
    # read to the end once more: anything delivered twice would show up now
    courses = read_topic(bootstrap, topics.courses, timeout=30)
    stats = read_topic(bootstrap, topics.learner_stats, timeout=30)

    course_ids = Counter(e["data"]["external_id"] for e in courses)
    stat_ids = Counter((e["data"]["course_external_id"], e["data"]["learner"]["provider_id"]) for e in stats)
    assert set(course_ids) == expected_courses, "course events missing or unexpected"
    assert set(stat_ids) == expected_stats, "learner-stat events missing or unexpected"
    twice = [k for k, n in (course_ids + stat_ids).items() if n > 1]
    assert twice == [], f"delivered more than once after kills at {kill_points}: {twice[:5]}"
    assert len({e["id"] for e in courses + stats}) == len(courses) + len(stats)
    assert "state rebuilt from" in final.log()
    assert resumed >= 1, "no attempt resumed from a committed page cursor"
