"""The JSON Schema files in schemas/ and the marshmallow schemas in code say the same thing."""
from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator
from marshmallow import ValidationError

from hostspec import contracts
from hostspec import events as ev
from tests.conftest import SCHEMAS


def json_validator(type_):
    schema = json.loads((SCHEMAS / f"{type_}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_files_are_generated_from_the_code():
    assert contracts.differences(SCHEMAS) == [], "run: python -m hostspec.contracts --write"


def test_asyncapi_names_every_topic_and_type():
    doc = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == set(ev.EVENT_TYPES)


@pytest.fixture(scope="module")
def sample_events(tmp_path_factory):
    from connector_coursera.sandbox import OrgSpec
    from tests.conftest import sandbox_sync_events

    return sandbox_sync_events(OrgSpec(contents=15, learners=10, enrollments=60, broken_every=7)).events


def test_every_emitted_event_validates_against_its_file(sample_events):
    types = {e.type for e in sample_events}
    assert {ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED, ev.SYNC_STATUS, ev.RECORD_REJECTED} <= types
    for event in sample_events:
        errors = list(json_validator(event.type).iter_errors(json.loads(event.to_json())))
        assert errors == [], (event.type, [e.message for e in errors])


MUTATIONS = [
    (ev.COURSE_UPSERTED, lambda d: d.update(title="")),
    (ev.COURSE_UPSERTED, lambda d: d.update(content_type="webinar")),
    (ev.COURSE_UPSERTED, lambda d: d.update(extra_field=1)),
    (ev.COURSE_UPSERTED, lambda d: d.pop("launch_url")),
    (ev.COURSE_UPSERTED, lambda d: d.update(duration_minutes=0)),
    (ev.LEARNER_STAT_UPSERTED, lambda d: d.update(progress_percent=101)),
    (ev.LEARNER_STAT_UPSERTED, lambda d: d.update(score_percent=-1)),
    (ev.LEARNER_STAT_UPSERTED, lambda d: d.update(time_spent_seconds=-5)),
    (ev.LEARNER_STAT_UPSERTED, lambda d: d.update(completion_status="done")),
    (ev.LEARNER_STAT_UPSERTED, lambda d: d["provenance"].update(progress_percent="guessed")),
    (ev.LEARNER_STAT_UPSERTED, lambda d: d.update(completion_status="completed", progress_percent=50)),
]


@pytest.mark.parametrize("type_, mutate", MUTATIONS)
def test_code_and_files_reject_the_same_broken_data(sample_events, type_, mutate):
    event = next(e for e in sample_events if e.type == type_
                 and (type_ != ev.LEARNER_STAT_UPSERTED or e.data["completion_status"] == "in_progress"))
    body = copy.deepcopy(json.loads(event.to_json()))
    mutate(body["data"])
    assert list(json_validator(type_).iter_errors(body)), "the JSON Schema file accepted broken data"
    with pytest.raises(ValidationError):
        ev.validate_data(type_, body["data"])
