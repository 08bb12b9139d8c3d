"""Course languages as 360Learning spells them: the provider's code mapped to 360Learning's
list, a language it does not offer delivered in the target's default language (with a warning),
never refused; the sandbox refuses a code outside the list like 360Learning does."""
from __future__ import annotations

import logging

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import ConfigError
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink
from publisher_360learning import contract
from publisher_360learning.delivery import Deliverer
from publisher_360learning.items import ExternalCourseSchema, to_external_course
from publisher_360learning.languages import language_360
from publisher_360learning.ledger import Ledger
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox
from publisher_360learning.settings import target_from_settings

from .conftest import course
from .test_sandbox import integration, run
from .test_delivery import courses_by_external, fast_client, inbound, mails
from .test_items import course_data

CONNECTION = "acme-coursera"
# a catalog's languages: Hebrew, LinkedIn's legacy Indonesian, Taiwanese Chinese, Persian (which
# 360Learning does not offer), Brazilian Portuguese as Coursera writes it
CATALOG_LANGUAGES = ["he", "in", "zh_TW", "fa", "pt-BR"]


@pytest.mark.parametrize("code, expected", [
    ("he", "he_IL"), ("iw", "he_IL"), ("in", "id"), ("id", "id"), ("zh_TW", "zh_tw"), ("zh-tw", "zh_tw"),
    ("zh-Hant-TW", "zh_tw"), ("zh-Hant", "zh_HANT"), ("zh_HK", "zh_HANT"), ("zh-Hans-CN", "zh"), ("zh_CN", "zh"),
    ("pt-BR", "pt_BR"), ("pt_br", "pt_BR"), ("PT-BR", "pt_BR"), ("pt_PT", "pt"), ("en-US", "en"), ("EN", "en"),
    ("en_GB", "en_GB"), ("fr-CA", "fr_CA"), ("de_AT", "de"), ("es-419", "es"), ("nb-NO", "no"), ("nn", "nn_NO"),
    ("fil", "tl_PH"), ("sw_TZ", "sw_KE"), ("sr-Latn", "sr"), (" ar ", "ar"),
    ("fa", None), ("fa_IR", None), ("", None), (None, None), ("English", None), ("x-klingon", None),
])
def test_provider_codes_become_360learning_codes(code, expected):
    assert language_360(code) == expected


def test_every_listed_code_maps_to_itself_and_the_list_is_360learnings():
    assert len(contract.LANGUAGES) == len(set(contract.LANGUAGES)) == 79
    assert {"he_IL", "zh_tw", "zh_HANT", "pt_BR", "id"} <= set(contract.LANGUAGES) and "fa" not in contract.LANGUAGES
    for code in contract.LANGUAGES:
        assert language_360(code) == code and language_360(code.upper()) == code


def test_an_external_course_carries_360learnings_spelling_or_the_default():
    assert to_external_course(course_data(language="he"))["defaultLang"] == "he_IL"
    assert to_external_course(course_data(language="fa"), default_lang="fr")["defaultLang"] == "fr"
    assert ExternalCourseSchema().validate({**to_external_course(course_data()), "defaultLang": "he"}) != {}


def test_the_default_language_is_a_target_setting_from_the_list():
    settings = {"base_url": "http://127.0.0.1:1", "client_id": "c", "client_secret": "s",
                "author_id": "65a0000000000000000000a1"}
    assert target_from_settings("c", settings).default_language == "en"
    assert target_from_settings("c", {**settings, "default_language": "he_IL"}).default_language == "he_IL"
    with pytest.raises(ConfigError, match="default_language"):
        target_from_settings("c", {**settings, "default_language": "fa"})


def test_the_sandbox_refuses_a_language_outside_the_list_item_by_item(lms, api):
    iid = integration(api)
    _, _, results = run(api, "PUT", iid, [course("a", defaultLang="he_IL"), course("b", defaultLang="he")])
    by_id = {r["input"]["externalId"]: r for r in results}
    assert by_id["a"]["status"] == "success"
    assert by_id["b"]["status"] == "error" and "defaultLang" in by_id["b"]["errorMessage"]


def catalog_events(languages):
    """One Coursera sync whose contents carry ``languages`` in turn (as Coursera's API writes them)."""
    plugins = get_plugin_manager()
    with CourseraSandbox(OrgSpec(contents=len(languages) * 2, learners=4, enrollments=20)) as sb:
        for i, content in enumerate(sb.org.contents):
            content["languageCode"] = languages[i % len(languages)]
        sink = MemorySink()
        connection = connection_from_settings(CONNECTION, "coursera", sb.settings, plugins, tenant="acme",
                                              group_id=SYNC_GROUP)
        SyncEngine(plugins, sink).run(SyncRequest("r", CONNECTION, "coursera", "all"), connection)
    return [e for e in sink.events if e.type in (ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED)]


def test_a_catalog_in_languages_outside_the_list_is_delivered_whole(caplog):
    events = catalog_events(CATALOG_LANGUAGES)
    courses = [e for e in events if e.type == ev.COURSE_UPSERTED]
    stats = [e for e in events if e.type == ev.LEARNER_STAT_UPSERTED]
    assert {e.data["language"] for e in courses} == {"he", "in", "zh_TW", "fa", "pt_BR"} and stats
    with Learning360Sandbox(users=mails(events), stage_s=0.005, enforce_rate_limits=False) as lms:
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)",
                                                   "default_language": "en_GB"})
        deliverer = Deliverer({CONNECTION: target}, Ledger(), client_factory=fast_client)
        with caplog.at_level(logging.WARNING, logger="publisher_360learning.delivery"):
            out = deliverer.deliver(inbound(events))
        deliverer.close()
        assert not out.dead and not out.parked and not out.retry
        assert out.counts["course_delivered"] == len(courses) and out.counts["stat_delivered"] == len(stats)
        held = courses_by_external(lms)
        expected = {"he": "he_IL", "in": "id", "zh_TW": "zh_tw", "fa": "en_GB", "pt_BR": "pt_BR"}
        for e in courses:
            assert held[e.data["external_id"]]["defaultLang"] == expected[e.data["language"]]
    persian = [e for e in courses if e.data["language"] == "fa"]
    assert out.counts["course_language_defaulted"] == len(persian)
    warned = [r.getMessage() for r in caplog.records if "no language" in r.getMessage()]
    assert len(warned) == len(persian) and all("'fa'" in w and "en_GB" in w for w in warned)
