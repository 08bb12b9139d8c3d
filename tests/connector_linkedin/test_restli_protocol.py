"""Issue 32 item 1: the Rest.li protocol the client declares and the syntax it writes agree, and
the sandbox, like LinkedIn, reads the declared protocol and refuses the other one's syntax."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from connector_linkedin import contract, restli
from connector_linkedin.client import LinkedInClient
from connector_linkedin.sandbox import LinkedInSandbox, LinkedInSpec
from connector_linkedin.settings import LinkedInSettingsSchema

STARTED = int(datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp() * 1000)
V1_REPORT = (f"q=criteria&startedAt={STARTED}&timeOffset.unit=DAY&timeOffset.duration=30"
             "&aggregationCriteria.primary=INDIVIDUAL&aggregationCriteria.secondary=CONTENT&contentSource=ALL_SOURCES")
V2_REPORT = (f"q=criteria&startedAt={STARTED}&timeOffset=(unit:DAY,duration:30)"
             "&aggregationCriteria=(primary:INDIVIDUAL,secondary:CONTENT)&contentSource=ALL_SOURCES")


@pytest.fixture
def sandbox():
    with LinkedInSandbox(LinkedInSpec(courses=6, learners=5, activities=20)) as sb:
        yield sb


def token(sb) -> str:
    answer = requests.post(sb.url + "/oauth/v2/accessToken", timeout=5, data={
        "grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret})
    return answer.json()["access_token"]


def get(sb, query: str, protocol: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token(sb)}"}
    if protocol:
        headers[contract.RESTLI_HEADER] = protocol
    return requests.get(f"{sb.url}{contract.REPORTS_PATH}?{query}", headers=headers, timeout=5)


@pytest.mark.parametrize("query, protocol, status", [
    (V1_REPORT, None, 200),                       # 1.0: no header, dotted records
    (V2_REPORT, "2.0.0", 200),                    # 2.0: the header, (k:v) records
    (V1_REPORT, "2.0.0", 400),                    # what the client sent until issue 32: 2.0 declared, 1.0 written
    (V2_REPORT, None, 400),                       # 2.0 written without declaring it
    (V2_REPORT.replace("(unit", "%28unit").replace("30)", "30%29"), "2.0.0", 400),  # structure percent-encoded
    (V2_REPORT + "&assetType=urn:li:x", "2.0.0", 400),                              # a reserved ':' left bare
    (V1_REPORT, "3.0.0", 400),                    # an unknown protocol
])
def test_the_sandbox_reads_the_declared_protocol_and_refuses_the_other_syntax(sandbox, query, protocol, status):
    answer = get(sandbox, query, protocol)
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["status"] == 400 and answer.json()["message"].startswith("Invalid query")
    else:
        assert answer.json()["paging"]["total"] == len(sandbox.rows_between(STARTED, STARTED + 30 * 86_400_000))


def settings(sb):
    return LinkedInSettingsSchema().load({**sb.settings, "page_size": 4})


@pytest.mark.parametrize("protocol", [None, contract.RESTLI_1, contract.RESTLI_2])   # None: as shipped
def test_every_client_request_passes_in_the_protocol_it_declares(sandbox, protocol):
    with LinkedInClient(settings(sandbox), **({"protocol": protocol} if protocol else {})) as client:
        assets = [a for a in client.assets() if isinstance(a, dict)]
        rows = [row for page, _ in client.report_pages(STARTED, 30) for row in page]
    assert len(assets) == 6 and len(rows) == len(sandbox.rows_between(STARTED, STARTED + 30 * 86_400_000)) > 4
    api = [r for r in sandbox.requests if r["path"].startswith("/v2/")]
    assert api and all(r["status"] == 200 for r in api), [(r["status"], r["query"]) for r in api]
    protocol = protocol or contract.RESTLI_PROTOCOL
    assert {r["protocol"] for r in api} == {restli.headers(protocol).get(contract.RESTLI_HEADER)}
    report = next(r["query"] for r in api if r["path"] == contract.REPORTS_PATH)
    if protocol == contract.RESTLI_2:
        assert "timeOffset=(unit:DAY,duration:30)" in report
        assert "aggregationCriteria=(primary:INDIVIDUAL,secondary:CONTENT)" in report
    else:
        assert "timeOffset.unit=DAY&timeOffset.duration=30" in report and "(" not in report


def test_the_declared_protocol_is_linkedins_default_one_and_sends_no_header():
    assert contract.RESTLI_PROTOCOL == contract.RESTLI_1 and restli.headers() == {}


def test_rest_li_2_encodes_reserved_characters_of_values_and_keeps_the_structure():
    params = {"q": "x", "ids": ["urn:li:lyndaCourse:1", "a,b"], "range": {"start": 1, "note": "(x)"}, "flag": True}
    assert restli.query(params, contract.RESTLI_2) == (
        "q=x&ids=List(urn%3Ali%3AlyndaCourse%3A1,a%2Cb)&range=(start:1,note:%28x%29)&flag=true")
    assert restli.query(params, contract.RESTLI_1) == (
        "q=x&ids%5B0%5D=urn%3Ali%3AlyndaCourse%3A1&ids%5B1%5D=a%2Cb&range.start=1&range.note=%28x%29&flag=true")
    with pytest.raises(ValueError):
        restli.headers("1.5")
