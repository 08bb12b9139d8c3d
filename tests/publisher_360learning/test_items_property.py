"""Every stat event that passes the event schema converts to an item that passes the 360Learning
contract, or is refused with a reason: generated events of both providers' shapes (hypothesis),
and the events of a real sync of the Coursera and LinkedIn Learning sandboxes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink
from publisher_360learning.items import (
    BulkStatItemSchema,
    NotConvertible,
    iso_z,
    recency,
    to_bulk_stat,
)

ITEM = BulkStatItemSchema()
BASE = datetime(2020, 1, 1, tzinfo=timezone.utc)


def rfc3339(moment: datetime, form: int) -> str:
    """One instant written the ways providers write it."""
    moment = moment.astimezone(timezone.utc)
    if form == 0:
        return moment.isoformat()                                   # 2026-05-16T00:00:00+00:00 (LinkedIn)
    if form == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")                # no fraction
    if form == 2:
        return moment.astimezone(timezone(timedelta(hours=-5))).isoformat()   # an offset
    if form == 3:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"   # Coursera, milliseconds
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"        # microseconds


instants = st.builds(lambda s: BASE + timedelta(seconds=s), st.integers(0, 10 * 365 * 86400))
dates = st.one_of(st.none(), st.builds(rfc3339, instants, st.integers(0, 4)))
percent = st.one_of(st.none(), st.floats(0, 100, allow_nan=False), st.sampled_from([99.5, 99.7, 99.99, 100.0, 0.0]))


@st.composite
def stat_events(draw):
    provider = draw(st.sampled_from(["coursera", "linkedin_learning"]))
    mail = draw(st.sampled_from(["ada@acme.test", "Bob.Smith@Acme.Test", None]))
    provider_id = mail if mail and draw(st.booleans()) else draw(st.sampled_from(["E123", "urn:li:person:9"]))
    data = {"tenant": "acme", "connection": f"acme-{provider}", "provider": provider,
            "group_id": "65a1b2c3d4e5f60718293a4b", "course_external_id": draw(st.sampled_from(["c1", "urn:li:c:2"])),
            "learner": {"email": mail, "provider_id": provider_id}, "attempt_id": draw(st.sampled_from(["1", "a~2"])),
            "completion_status": draw(st.sampled_from(["not_started", "in_progress", "completed"])),
            "progress_percent": draw(percent), "score_percent": draw(percent),
            "result": draw(st.sampled_from([None, "passed", "failed"])),
            "first_activity_at": draw(dates), "last_activity_at": draw(dates), "completed_at": draw(dates),
            "time_spent_seconds": draw(st.one_of(st.none(), st.integers(0, 10**7))),
            "provenance": {}, "as_of": draw(st.builds(rfc3339, instants, st.integers(0, 4)))}
    data["fingerprint"] = ev.fingerprint(data)
    return data


def check(data) -> str | None:
    """None when converted to a valid item, else the refusal's reason; asserts the rules."""
    try:
        item = to_bulk_stat(data)
    except NotConvertible as exc:
        assert exc.reason in ("learner_without_email", "completion_without_date", "invalid_for_360learning")
        assert str(exc)
        return exc.reason
    assert ITEM.validate(item) == {}, (data, item)
    completed = data["completion_status"] == "completed"
    assert (item["progress"] == 100) == completed          # no false completion, no lost one
    assert item["lastActivityAt"] >= item["firstActivityAt"]
    if completed:                                           # the completion date is a provider date
        provider_dates = {iso_z(d) for d in (data["completed_at"], data["last_activity_at"], data["first_activity_at"]) if d}
        assert item["lastActivityAt"] in provider_dates or item["lastActivityAt"] == item["firstActivityAt"]
    return None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stat_events())
def test_every_valid_stat_event_converts_or_is_refused_with_a_reason(data):
    try:
        ev.validate_data(ev.LEARNER_STAT_UPSERTED, data)
    except ValidationError:
        assume(False)
    check(data)


@settings(max_examples=200, deadline=None)
@given(stat_events(), st.integers(0, 4))
def test_recency_does_not_depend_on_how_a_date_is_written(data, form):
    moment = datetime.fromisoformat(data["as_of"])
    rewritten = dict(data, as_of=rfc3339(moment, form))
    assert recency(rewritten) == recency(data)


def test_the_stats_of_a_real_sync_of_both_sandboxes_convert():
    from connector_coursera.sandbox import CourseraSandbox, OrgSpec
    from connector_linkedin.sandbox import LinkedInSandbox, LinkedInSpec

    plugins = get_plugin_manager()
    converted = {}
    for provider, sandbox in (("coursera", CourseraSandbox(OrgSpec(contents=12, learners=20, enrollments=150))),
                              ("linkedin_learning", LinkedInSandbox(LinkedInSpec(courses=6, learners=10, activities=60)))):
        with sandbox as sb:
            sink = MemorySink()
            connection = connection_from_settings("c", provider, sb.settings, plugins)
            SyncEngine(plugins, sink).run(SyncRequest("r", "c", provider, "all"), connection)
        stats = [e.data for e in sink.of_type(ev.LEARNER_STAT_UPSERTED)]
        assert stats
        converted[provider] = sum(check(s) is None for s in stats) / len(stats)
    # every LinkedIn stat has an e-mail and RFC 3339 dates with +00:00: all must convert
    assert converted["linkedin_learning"] == 1.0, converted
    assert converted["coursera"] > 0.9, converted
