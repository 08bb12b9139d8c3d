"""Learner stats as xAPI statements: checked against the xAPI 1.0.3 statement rules and cmi5's
verb conventions, over every stat the Coursera sandbox produces."""
from __future__ import annotations

import json
import re
import uuid

import pytest

from connector_coursera.sandbox import OrgSpec
from hostspec.cli import main as cli
from hostspec import events as ev
from hostspec.xapi import PROGRESS_EXTENSION, VERBS, iso_duration, to_statement
from tests.conftest import sandbox_sync_events

ISO_DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
IRI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")


def statement_problems(s: dict) -> list[str]:
    """The xAPI 1.0.3 rules a statement of ours must follow (Data section 2.4) and cmi5's verb rules."""
    p = []
    if str(uuid.UUID(s["id"])) != s["id"]:
        p.append("id is not a canonical UUID")
    actor = s["actor"]
    ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in actor]
    if actor.get("objectType", "Agent") != "Agent" or len(ifis) != 1:
        p.append("actor must be an Agent with exactly one inverse functional identifier")
    if "mbox" in actor and not re.match(r"^mailto:[^@\s]+@[^@\s]+$", actor["mbox"]):
        p.append("mbox must be a mailto IRI")
    if "account" in actor and not (IRI.match(actor["account"].get("homePage", "")) and actor["account"].get("name")):
        p.append("account needs homePage (IRL) and name")
    if not IRI.match(s["verb"]["id"]) or not s["verb"].get("display"):
        p.append("verb needs an IRI id and a display")
    obj = s["object"]
    if obj.get("objectType", "Activity") != "Activity" or not IRI.match(obj["id"]):
        p.append("object must be an Activity with an IRI id")
    result = s.get("result", {})
    score = result.get("score")
    if score is not None:
        if not -1 <= score["scaled"] <= 1:
            p.append("score.scaled outside -1..1")
        if not score["min"] <= score["raw"] <= score["max"]:
            p.append("score.raw outside min..max")
    if "duration" in result and not ISO_DURATION.match(result["duration"]):
        p.append("duration is not ISO 8601")
    if not ISO_TIMESTAMP.match(s["timestamp"]):
        p.append("timestamp is not ISO 8601 with a zone")
    if not s["version"].startswith("1.0."):
        p.append("version must be 1.0.x")
    verb = s["verb"]["display"]["en-US"]
    if s["verb"]["id"] != VERBS[verb]:
        p.append("verb id and display disagree")
    if verb == "passed" and not (result.get("success") is True and result.get("completion") is True):
        p.append("cmi5: passed needs success true")
    if verb == "failed" and result.get("success") is not False:
        p.append("cmi5: failed needs success false")
    if verb == "completed" and result.get("completion") is not True:
        p.append("cmi5: completed needs completion true")
    if verb == "progressed" and not 0 <= result.get("extensions", {}).get(PROGRESS_EXTENSION, 0) <= 100:
        p.append("progress extension outside 0..100")
    return p


@pytest.fixture(scope="module")
def stats():
    return sandbox_sync_events(OrgSpec(contents=20, learners=25, enrollments=200))


def test_every_stat_becomes_a_valid_statement(stats):
    statements = [to_statement(e.data) for e in stats.of_type(ev.LEARNER_STAT_UPSERTED)]
    assert len(statements) == 200
    problems = {s["id"]: statement_problems(s) for s in statements}
    assert {k: v for k, v in problems.items() if v} == {}
    verbs = {s["verb"]["display"]["en-US"] for s in statements}
    assert {"passed", "progressed"} <= verbs      # the sandbox marks every completion passed
    assert len({s["id"] for s in statements}) == 200


def test_the_rules_catch_bad_statements(stats):
    good = to_statement(stats.of_type(ev.LEARNER_STAT_UPSERTED)[0].data)
    bad = json.loads(json.dumps(good))
    bad["result"]["duration"] = "90 minutes"
    bad["actor"] = {"objectType": "Agent", "mbox": "ada@acme.test"}
    bad["timestamp"] = "2026-01-01 10:00"
    assert len(statement_problems(bad)) == 3


def test_verbs_scores_durations_and_stable_ids():
    stat = {"provider": "coursera", "connection": "c", "course_external_id": "ml", "attempt_id": "a1",
            "learner": {"email": None, "provider_id": "sso-42"}, "completion_status": "completed",
            "progress_percent": 100.0, "score_percent": 92.5, "result": "passed", "time_spent_seconds": 5430,
            "first_activity_at": None, "last_activity_at": None, "completed_at": "2026-01-04T17:30:00+00:00",
            "as_of": "2026-01-05T00:00:00+00:00", "fingerprint": "f" * 64}
    s = to_statement(stat, launch_url="https://www.coursera.org/learn/ml")
    assert s["verb"]["id"] == VERBS["passed"] and s["result"] == {
        "completion": True, "success": True, "score": {"scaled": 0.925, "raw": 92.5, "min": 0, "max": 100},
        "duration": "PT1H30M30S"}
    assert s["actor"] == {"objectType": "Agent", "account": {"homePage": "https://www.coursera.org", "name": "sso-42"}}
    assert s["object"]["id"] == "urn:learning-connectors:coursera:course:ml" and s["timestamp"] == stat["completed_at"]
    assert s["object"]["definition"]["moreInfo"] == "https://www.coursera.org/learn/ml"
    alone = to_statement(stat)              # the same statement without the course events in the file
    assert (alone["id"], alone["object"]["id"]) == (s["id"], s["object"]["id"])
    assert to_statement(stat)["id"] == s["id"]
    assert to_statement({**stat, "result": None})["id"] != s["id"]
    assert statement_problems(s) == []
    assert [iso_duration(x) for x in (0, 59, 3600, 90061)] == ["PT0S", "PT59S", "PT1H", "PT25H1M1S"]


def test_export_xapi_command(tmp_path, stats, capsys):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(e.to_json() + "\n" for e in stats.events))
    out = tmp_path / "statements.jsonl"
    assert cli.main(["export-xapi", str(events), "--out", str(out)]) == 0
    statements = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(statements) == 200 and all(s["object"]["definition"]["moreInfo"].startswith("https://")
                                          for s in statements)
    assert "200 xAPI statements written" in capsys.readouterr().err
