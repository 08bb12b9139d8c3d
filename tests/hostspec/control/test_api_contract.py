"""The admin API's document as generated clients read it, and the answers schemathesis found apart
from it (issue 29), each pinned in process: statuses, bodies and flat field errors."""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from hostspec.control import field_errors, openapi
from tests.conftest import SCHEMAS
from tests.hostspec.api_fakes import Api, body


@pytest.fixture
def api(plugins, tmp_path, monkeypatch):
    return Api(plugins, tmp_path, monkeypatch)


def _walk(value, path=""):
    if isinstance(value, dict):
        yield path, value
        for k, v in value.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}/{i}")


def test_nullable_values_are_any_of_null_never_type_arrays():
    doc = openapi.document()
    arrays = [p for p, node in _walk(doc) if isinstance(node.get("type"), list)]
    assert arrays == [], arrays
    status = doc["components"]["schemas"]["SyncStatus"]["properties"]
    assert status["error"] == {"anyOf": [{"$ref": "#/components/schemas/RunError"}, {"type": "null"}]}
    assert status["counts"] == {"$ref": "#/components/schemas/RunCounts"}


def test_every_answer_has_its_content_but_a_204():
    for path, item in openapi.document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for code, answer in operation["responses"].items():
                assert ("content" in answer) == (code != "204"), (method, path, code)


def test_the_fields_a_body_must_give_are_never_null():
    schemas = openapi.document()["components"]["schemas"]
    for name in ("ConnectionBody", "NewConnection"):
        for field in schemas[name]["required"]:
            assert "null" not in json.dumps(schemas[name]["properties"][field]), (name, field)


def test_field_errors_are_flat_paths():
    assert field_errors.flat({"settings": {"client_id": ["missing"], "_schema": ["odd"]}, "courses": {0: ["empty"]},
                              "tenant": ["required"]}) == {
        "settings.client_id": ["missing"], "settings._schema": ["odd"], "courses.0": ["empty"], "tenant": ["required"]}
    assert field_errors.flat(["whole"]) == {"_schema": ["whole"]}


def _errors_schema():
    schema = openapi.document()["components"]["schemas"]["FieldErrors"]
    return Draft202012Validator(schema)


def test_a_nested_refusal_answers_flat_errors_as_documented(api):
    refused = api.call("root", "POST", "/connections", json={"connection": "x", **body("acme", base_url="ftp://x")})
    assert refused.status_code == 422
    errors = refused.json["errors"]
    assert "settings.base_url" in errors and list(_errors_schema().iter_errors(errors)) == [], errors
    checked = api.call("root", "PUT", "/providers/coursera/config/validate", json=body("acme", base_url="ftp://x"))
    assert checked.status_code == 200 and "settings.base_url" in checked.json["errors"]
    assert checked.json["error_count"] == sum(len(v) for v in checked.json["errors"].values())


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_a_bad_status_limit_is_a_documented_400(api, limit):
    answer = api.call("root", "GET", f"/connections/acme-c/status?limit={limit}")
    assert answer.status_code == 400 and answer.json["error_code"] == 400
    assert "400" in openapi.document()["paths"]["/connections/{name}/status"]["get"]["responses"]


def test_validate_needs_a_body_and_a_known_provider(api):
    assert api.call("root", "PUT", "/providers/coursera/config/validate").status_code == 400
    unknown = api.call("root", "PUT", "/providers/nope/config/validate", json=body("acme"))
    assert unknown.status_code == 404 and "nope" in unknown.json["message"]
    assert api.call("root", "POST", "/connections").status_code == 400
    not_a_connection = api.call("root", "PUT", "/providers/coursera/config/validate", json={**body("acme"), "x": 1})
    assert not_a_connection.status_code == 422 and "x" in not_a_connection.json["errors"]
    bad_name = api.call("root", "PUT", "/providers/coursera/config/validate", json={**body("acme"), "connection": {}})
    assert bad_name.status_code == 422
    assert api.call("root", "PUT", "/connections/acme-c").status_code == 400


def test_an_unknown_connection_is_404_on_dead_letters_as_on_status(api):
    for method, path in (("GET", "/status"), ("GET", "/deadletters"), ("POST", "/deadletters/redrive")):
        assert api.call("root", method, "/connections/nobody" + path).status_code == 404, path
    api.call("root", "DELETE", "/connections/beta-c")          # a deleted one keeps its history
    assert api.call("root", "GET", "/connections/beta-c/deadletters").status_code == 200


def test_a_redrive_filter_comes_from_the_query_or_the_body_never_both(api):
    bad_query = api.call("root", "POST", "/connections/acme-c/deadletters/redrive?until=yesterday",
                         json={"until": "2026-01-01T00:00:00Z"})
    assert bad_query.status_code == 400
    both = api.call("root", "POST", "/connections/acme-c/deadletters/redrive?until=2026-02-01T00:00:00Z",
                    json={"until": "2026-01-01T00:00:00Z"})
    assert both.status_code == 422 and list(both.json["errors"]) == ["until"]


def test_a_null_required_field_is_refused_without_python_words(api):
    for path, method, extra in (("/connections", "POST", {"connection": "n1"}),
                                ("/connections/n2", "PUT", {}),
                                ("/providers/coursera/config/validate", "PUT", {})):
        answer = api.call("root", method, path, json={**body("acme"), "tenant": None, "provider": None, **extra})
        assert answer.status_code in (403, 422), (path, answer.text)
        assert "None" not in answer.text, (path, answer.text)


def test_if_match_pattern_and_parser_agree(api):
    pattern = openapi.document()["paths"]["/connections/{name}"]["put"]["parameters"][0]["schema"]["pattern"]
    assert pattern == '^"?[0-9]{1,18}"?$'
    assert api.call("root", "PUT", "/connections/acme-c", json=body("acme"),
                    headers={"If-Match": "9" * 19}).status_code == 400
    assert api.call("root", "PUT", "/connections/acme-c", json=body("acme"),
                    headers={"If-Match": "9" * 18}).status_code == 409


def test_pause_and_resume_answer_the_connection_as_listed(api):
    paused = api.call("root", "PUT", "/connections/acme-c/pause")
    assert paused.status_code == 202 and paused.json["paused"] is True and paused.json["connection"] == "acme-c"
    assert set(paused.json) == set(openapi.LISTED) and "settings" not in paused.json
    assert api.call("root", "PUT", "/connections/acme-c/resume").json["paused"] is False


def test_providers_give_their_settings_schema(api):
    providers = {p["name"]: p for p in api.call("root", "GET", "/providers").json}
    schema = providers["coursera"]["settings_schema"]
    Draft202012Validator.check_schema(schema)
    assert {"org_id", "client_id", "client_secret"} <= set(schema["required"])
    assert schema["properties"]["client_secret"]["oneOf"][0]["required"] == ["env"]


@pytest.mark.parametrize("field", ["since", "until"])
def test_a_replay_bound_before_1970_is_refused_at_the_request(api, field):
    other = {"since": "1960-01-01T00:00:00Z"} if field == "until" else {}
    answer = api.call("root", "POST", "/connections/acme-c/syncs", json={field: "1969-12-31T00:00:00Z", **other})
    assert answer.status_code == 422 and field in answer.json["errors"], answer.text
    sync = openapi.document()["components"]["schemas"]["SyncParameters"]["properties"][field]
    validator = Draft202012Validator({"$defs": {}, **sync}, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not validator.is_valid("1969-12-31T00:00:00Z") and validator.is_valid("1970-01-01T00:00:00Z")


def test_the_served_document_is_the_file():
    assert json.loads((SCHEMAS / "admin-api.openapi.json").read_text()) == openapi.document()
