"""The JSON Schema files in schemas/ and the marshmallow schemas in code say the same thing."""
from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator
from marshmallow import ValidationError

from hostspec.cli import contracts
from hostspec import events as ev
from tests.conftest import SCHEMAS


def json_validator(type_):
    schema = json.loads((SCHEMAS / f"{type_}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_files_are_generated_from_the_code():
    assert contracts.differences(SCHEMAS) == [], "run: python -m hostspec.cli.contracts --write"


def test_asyncapi_names_every_topic_and_type():
    doc = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == set(ev.EVENT_TYPES)


def test_the_asyncapi_bundle_is_self_contained_and_says_what_the_split_files_say():
    """A registry given only asyncapi.bundle.json resolves every payload (issue 29)."""
    split = json.loads((SCHEMAS / "asyncapi.json").read_text())
    bundle = json.loads((SCHEMAS / "asyncapi.bundle.json").read_text())
    refs = [v for _p, node in _nodes(bundle) for k, v in node.items() if k == "$ref"]
    assert refs and all(r.startswith("#/") for r in refs), [r for r in refs if not r.startswith("#/")]
    assert {k: v for k, v in bundle.items() if k != "components"} == {k: v for k, v in split.items() if k != "components"}
    for key, message in bundle["components"]["messages"].items():
        payload = bundle["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
        own = json.loads((SCHEMAS / split["components"]["messages"][key]["payload"]["$ref"]).read_text())
        assert payload == {k: v for k, v in own.items() if k not in ("$schema", "$id")}, key


def _nodes(value, path=""):
    if isinstance(value, dict):
        yield path, value
        for k, v in value.items():
            yield from _nodes(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, f"{path}/{i}")


@pytest.mark.parametrize("type_", ev.EVENT_TYPES)
def test_no_event_schema_takes_a_null_subject(type_):
    """CloudEvents' spec and SDKs refuse a null attribute: the schema says a subject is a string
    (left out when unknown), and the code writes none null."""
    schema = json_validator(type_).schema
    assert schema["properties"]["subject"] == {"type": "string", "minLength": 1}
    envelope = {"specversion": "1.0", "id": "i", "source": "s", "type": type_, "subject": None,
                "time": "2026-01-01T00:00:00Z", "datacontenttype": "application/json",
                "dataschema": schema["$id"], "partitionkey": "k", "data": {}}
    assert any(e.path and e.path[0] == "subject" for e in json_validator(type_).iter_errors(envelope))


def test_an_older_event_s_null_subject_is_read_as_left_out(sample_events):
    event = next(e for e in sample_events if e.type == ev.SYNC_STATUS)
    raw = {**json.loads(event.to_json()), "subject": None}
    assert "subject" not in ev.parse_event(json.dumps(raw)).body
    with pytest.raises(ValidationError):
        ev.parse_event(json.dumps({**raw, "subject": ""}))


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


# -- the published schemas accept exactly what the code accepts (issue 16) -------------------------
ODD_VALUES = [None, "", "x", "x" * 300, "x" * 10_001, 0, -1, 1, 1.5, 100, 101, True, [], ["a"], [""], ["a"] * 3,
              {}, {"k": 1}, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123+02:00", "2026-13-01T00:00:00Z",
              "2026-01-01", "not a date", "a@b.test", "https://x.test/a", "ftp://x.test", "en", "en_AU", "EN-us",
              "completed", "in_progress", "not_started", "native", "derived", "course", "catalog", "all",
              "x@", "@x", "2026-01-01T00:00Z", "2026-01-01t00:00:00z", "2026-01-01T00:00:60Z", "1", "true",
              2**63, -0.0, 1e300, 99.99, " ", "a b"]


def _paths(value, prefix=()):
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _edited(data, path, action, value):
    data = copy.deepcopy(data)
    *parents, last = path
    target = data
    for p in parents:
        target = target[p]
    if action == "drop" and isinstance(target, dict):
        target.pop(last)
    elif action == "add" and isinstance(target, dict):
        target[f"unknown_{last}"] = value
    else:
        target[last] = value
    return data


def _bases(sample_events):
    from datetime import datetime, timezone

    from hostspec.requests import SyncRequest

    by_type = {}
    for e in sample_events:
        by_type.setdefault(e.type, []).append(e.data)
    request = SyncRequest("r1", "acme", "coursera", "progress", "me", learners=("a@b.test",), courses=("c1",),
                          since=datetime(2026, 1, 1, tzinfo=timezone.utc))
    by_type[ev.SYNC_REQUESTED] = [request.to_event(datetime(2026, 2, 1, tzinfo=timezone.utc)).data]
    course = by_type[ev.COURSE_UPSERTED][0]
    identity = {k: course[k] for k in ("tenant", "connection", "provider", "group_id")}
    by_type[ev.COURSE_REMOVED] = [{**identity, "external_id": course["external_id"], "reason": "not_in_catalog",
                                   "last_seen_at": "2026-01-01T00:00:00.000Z"}]
    stat = next(e for e in sample_events if e.type == ev.LEARNER_STAT_UPSERTED)
    by_type[ev.STAT_PARKED] = [{"reason": "learner_unknown", "detail": "no such learner", "attempts": 1,
                                "first_parked_at": "2026-01-01T00:00:00.000Z",
                                "parked_at": "2026-01-02T00:00:00.000Z", "tenant": identity["tenant"],
                                "connection": identity["connection"], "provider": identity["provider"],
                                "event": json.loads(stat.to_json())}]
    by_type[ev.CONNECTION] = [
        {"connection": "acme-coursera", "revision": 3, "deleted": False, "tenant": "acme", "provider": "coursera",
         "group_id": "65a1b2c3d4e5f60718293a4b", "paused": False,
         "settings": {"org_id": "o1", "client_id": "c1", "client_secret": {"env": "CONNECTOR_SECRET_ACME"}},
         "options": {"max_removal_share": 0.1, "catalog_complete_days": None, "progress_lookback_hours": 48,
                     "account_calls_per_second": 4},
         "schedule": {"timezone": "Europe/Paris"}, "target": {"region": "eu", "client_id": "x"},
         "changed_by": "api:ops", "changed_at": "2026-01-01T00:00:00.000Z"},
        {"connection": "acme-coursera", "revision": 4, "deleted": True, "changed_by": "api:ops",
         "changed_at": "2026-01-02T00:00:00.000Z"}]
    by_type[ev.AUDIT] = [
        {"principal": "acme-admin", "role": "tenant_admin", "tenant": "acme", "method": "PUT",
         "path": "/connections/acme-coursera", "route": "/connections/{name}", "connection": "acme-coursera",
         "status": 409, "outcome": "refused", "reason": "connection 'acme-coursera' is at revision 4, not 3",
         "remote_addr": "10.0.0.7"},
        {"principal": None, "role": None, "tenant": None, "method": "GET", "path": "/connections", "route": None,
         "connection": None, "status": 401, "outcome": "refused", "reason": None, "remote_addr": None}]
    for type_, data in by_type.items():
        ev.validate_data(type_, data[0])      # every base is valid: the edits make the difference
    return by_type


ORDER_MESSAGES = ("must not be earlier than first_activity_at", "must be later than since")


def _accepted_by_code(type_, data):
    """Whether the code takes ``data``, leaving out the date orders JSON Schema cannot state
    (they are named in the schema's ``$comment``)."""
    try:
        ev.validate_data(type_, data)
        return True
    except ValidationError as exc:
        messages = [m for ms in exc.normalized_messages().values() for m in (ms if isinstance(ms, list) else [ms])]
        return bool(messages) and all(isinstance(m, str) and m in ORDER_MESSAGES for m in messages)


@pytest.mark.parametrize("type_", ev.EVENT_TYPES)
def test_generated_payloads_pass_the_published_schema_if_and_only_if_the_code_takes_them(sample_events, type_):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    bases = _bases(sample_events)[type_]
    validator = json_validator(type_)
    @st.composite
    def payloads(draw):
        data = draw(st.sampled_from(bases))
        for _ in range(draw(st.integers(1, 2))):
            paths = list(_paths(data))
            path = draw(st.sampled_from(paths))
            data = _edited(data, path, draw(st.sampled_from(["set", "set", "drop", "add"])),
                           draw(st.sampled_from(ODD_VALUES)))
        return data

    schema_of_data = {**validator.schema["properties"]["data"], "$schema": validator.schema["$schema"]}
    data_validator = Draft202012Validator(schema_of_data, format_checker=Draft202012Validator.FORMAT_CHECKER)

    @settings(max_examples=400, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(payloads())
    def check(data):
        by_file = not list(data_validator.iter_errors(data))
        by_code = _accepted_by_code(type_, data)
        assert by_file == by_code, (f"the file {'accepts' if by_file else 'refuses'} and the code "
                                    f"{'accepts' if by_code else 'refuses'}: {json.dumps(data)[:600]}")

    check()


def test_the_asyncapi_document_passes_the_asyncapi_parser():
    """The AsyncAPI Initiative's own parser (JavaScript) finds no error: headers, the Kafka key,
    partition counts and topic configuration included (issue 16). Needs node and npm."""
    import shutil
    import subprocess
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "asyncapi"
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("needs node and npm")
    if not (folder / "node_modules" / "@asyncapi" / "parser").exists():
        install = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=folder, capture_output=True,
                                 text=True, timeout=600)
        assert install.returncode == 0, install.stderr[-2000:]
    for name in ("asyncapi.json", "asyncapi.bundle.json"):     # the split files, and the one-file bundle
        check = subprocess.run(["node", "validate.mjs", str(SCHEMAS / name)], cwd=folder,
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        summary = json.loads(check.stdout.strip().splitlines()[-1])
        assert summary["errors"] == 0 and summary["channels"] == len(json.loads((SCHEMAS / name).read_text())["channels"])


def test_the_provider_guide_s_field_rules_are_generated_from_the_schemas():
    from hostspec.field_rules import DOC, rendered_doc

    text = DOC.read_text(encoding="utf-8")
    assert text == rendered_doc(text), "run: python -m hostspec.cli.contracts --write"
    assert "| `language` | yes |" in text and "never a datetime object" in text
