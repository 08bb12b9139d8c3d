"""Learner statistics as xAPI 1.0.3 statements, following cmi5's verb conventions (pure).

One ``learning.learner_stat.upserted.v1`` becomes one statement:

* verb: ``completed`` when the course is completed, plus ``passed`` / ``failed`` when the
  provider gave a result (the result verb then wins, with ``completion: true``); otherwise
  ``progressed`` (an ADL verb) carrying the progress in the cmi5 ``progress`` extension;
* actor: the learner by ``mbox`` (``mailto:``) when the e-mail is known, else an ``account``
  on the provider's home page;
* object: the course as an Activity whose id is a URN of provider and course, whatever else the
  export holds (a statement id always comes with the same object); its launch URL, when the
  export knows it, is the definition's ``moreInfo``;
* result: ``score.scaled`` (0..1) and ``score.raw``/``min``/``max`` (0..100), ``success``,
  ``completion``, ``duration`` as an ISO 8601 duration;
* timestamp: completion date, else last activity, else ``as_of``;
* id: a UUIDv5 of the stat's fingerprint and verb, so exporting twice gives the same ids and an
  LRS can drop duplicates.
"""
from __future__ import annotations

import uuid
from typing import Any, Mapping

VERBS = {
    "completed": "http://adlnet.gov/expapi/verbs/completed",
    "passed": "http://adlnet.gov/expapi/verbs/passed",
    "failed": "http://adlnet.gov/expapi/verbs/failed",
    "progressed": "http://adlnet.gov/expapi/verbs/progressed",
}
PROGRESS_EXTENSION = "https://w3id.org/xapi/cmi5/result/extensions/progress"
COURSE_TYPE = "http://adlnet.gov/expapi/activities/course"
STATEMENT_NAMESPACE = uuid.UUID("4d0f3a7e-5f51-4a8a-9c5e-33e2a4f0b6c1")
PROVIDER_HOMES = {"coursera": "https://www.coursera.org"}


def iso_duration(seconds: int) -> str:
    """``PT#H#M#S`` (xAPI durations are ISO 8601; hours never roll into days)."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    body = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (f"{secs}S" if secs or not (hours or minutes) else "")
    return "PT" + body


def verb_of(stat: Mapping[str, Any]) -> str:
    if stat.get("result") in ("passed", "failed"):
        return stat["result"]
    return "completed" if stat.get("completion_status") == "completed" else "progressed"


def to_statement(stat: Mapping[str, Any], *, launch_url: str | None = None) -> dict[str, Any]:
    verb = verb_of(stat)
    learner = stat.get("learner") or {}
    home = PROVIDER_HOMES.get(stat.get("provider", ""), f"urn:learning-connectors:{stat.get('provider')}")
    actor: dict[str, Any] = ({"objectType": "Agent", "mbox": f"mailto:{learner['email']}"} if learner.get("email")
                             else {"objectType": "Agent", "account": {"homePage": home, "name": learner["provider_id"]}})
    activity_id = f"urn:learning-connectors:{stat['provider']}:course:{stat['course_external_id']}"
    definition: dict[str, Any] = {"type": COURSE_TYPE, **({"moreInfo": launch_url} if launch_url else {})}
    result: dict[str, Any] = {"completion": stat.get("completion_status") == "completed"}
    if stat.get("result") in ("passed", "failed"):
        result["success"] = stat["result"] == "passed"
    if stat.get("score_percent") is not None:
        raw = float(stat["score_percent"])
        result["score"] = {"scaled": round(raw / 100, 4), "raw": raw, "min": 0, "max": 100}
    if stat.get("time_spent_seconds") is not None:
        result["duration"] = iso_duration(stat["time_spent_seconds"])
    if verb == "progressed" and stat.get("progress_percent") is not None:
        result["extensions"] = {PROGRESS_EXTENSION: int(round(stat["progress_percent"]))}
    timestamp = stat.get("completed_at") or stat.get("last_activity_at") or stat["as_of"]
    return {
        "id": str(uuid.uuid5(STATEMENT_NAMESPACE, f"{stat['fingerprint']}/{verb}")),
        "actor": actor,
        "verb": {"id": VERBS[verb], "display": {"en-US": verb}},
        "object": {"objectType": "Activity", "id": activity_id, "definition": definition},
        "result": result,
        "context": {"platform": stat.get("provider"),
                    "registration": str(uuid.uuid5(STATEMENT_NAMESPACE, f"{stat['connection']}/{stat['attempt_id']}")),
                    "extensions": {"https://w3id.org/learning-connectors/attempt": stat["attempt_id"]}},
        "timestamp": timestamp,
        "version": "1.0.3",
    }
