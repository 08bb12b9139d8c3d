"""The providers' shared token cache is keyed by the whole credential: a connection naming another
tenant's Coursera client id with a wrong secret gets the sandbox's 401 (over HTTP), emits
nothing, and the owner's runs go on reusing their own token (issue 27)."""
from __future__ import annotations

import logging

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.kit.http import forget_tokens
from hostspec.engine.sinks import MemorySink

WRONG = "not-acme-coursera-secret-77"


def run(plugins, connection):
    sink = MemorySink()
    report = SyncEngine(plugins, sink).run(SyncRequest(f"r-{connection.name}", connection.name, "coursera",
                                                       "catalog"), connection)
    return report, sink


def test_a_wrong_secret_never_rides_on_the_owners_cached_token(plugins, caplog):
    forget_tokens()
    with CourseraSandbox(OrgSpec(contents=5, learners=2, enrollments=3)) as sb:
        acme = connection_from_settings("acme-coursera", "coursera", sb.settings, plugins, tenant="acme",
                                        catalog_complete_days=0)
        evil = connection_from_settings("evil-coursera", "coursera", {**sb.settings, "client_secret": WRONG},
                                        plugins, tenant="evil", catalog_complete_days=0)
        report, sink = run(plugins, acme)
        assert report.outcome == "completed" and len(sink.of_type(ev.COURSE_UPSERTED)) == 5
        assert len(sb.tokens) == 1

        with caplog.at_level(logging.INFO):
            report, sink = run(plugins, evil)
        assert report.outcome == "failed" and report.error["kind"] == "provider_config"
        assert "HTTP 401" in report.error["message"]
        assert not sink.of_type(ev.COURSE_UPSERTED)
        assert len(sb.tokens) == 1                               # refused: no token issued to it
        assert WRONG not in caplog.text + repr([e.data for e in sink.events])

        report, sink = run(plugins, acme)                          # the owner goes on, on its own token
        assert report.outcome == "completed" and len(sb.tokens) == 1
    forget_tokens()
