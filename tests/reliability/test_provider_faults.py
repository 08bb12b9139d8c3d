"""20 % of Coursera calls fail at random, in every way the sandbox knows: the sync still ends
with exactly the events of a clean run, waits honour Retry-After, and the extra calls are counted."""
from __future__ import annotations

import email.utils
import time

import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.sinks import MemorySink
from tests.conftest import sandbox_connection

from .conftest import plan

KINDS = [
    {"action": "status_429", "retry_after": "1"},
    {"action": "status_429", "retry_after": "http-date:1"},
    {"action": "status_5xx", "status": 500},
    {"action": "status_5xx", "status": 502, "body": "html"},
    {"action": "status_5xx", "status": 503},
    {"action": "status_5xx", "status": 504, "body": "empty"},
    {"action": "latency", "delay_s": 1.5},            # beyond the client's 1 s timeout
    {"action": "reset"},
    {"action": "expire_token"},
    {"action": "malformed_json"},
    {"action": "repeat_cursor"},
]
PER_KIND = 1 - (1 - 0.20) ** (1 / len(KINDS))          # together: 20 % of calls


def run(sb, plugins):
    connection = sandbox_connection(sb, plugins, page_size=25, timeout_s=1.0, max_attempts=10,
                                    max_retry_after_s=5)
    sink = MemorySink()
    report = SyncEngine(plugins, sink).run(SyncRequest("r", connection.name, "coursera", "all"), connection)
    keyed = {(e.type, e.key): e.data.get("fingerprint") for e in sink.events if e.type != ev.SYNC_STATUS}
    return report, keyed


def test_provider_faults(plugins, figures):
    """The sync under random faults ends with exactly the events of a clean run."""
    rows = plan("fault_rows")
    spec = OrgSpec(contents=60, learners=max(30, rows // 50), enrollments=rows)
    with CourseraSandbox(spec) as clean:
        clean_report, expected = run(clean, plugins)
        clean_calls = len(clean.requests)
    with CourseraSandbox(spec, fault_seed=7) as sb:
        # each kind once for sure (spread over the run), then all of them at random
        rules = [{**kind, "route": "/ent/api/*", "after_n_calls": 3 + 4 * i, "times": 1} for i, kind in enumerate(KINDS)]
        rules += [{**kind, "route": "/ent/api/*", "probability": PER_KIND, "times": None} for kind in KINDS]
        assert requests.post(sb.url + "/_sandbox/faults", json=rules, timeout=5).status_code == 201
        started = time.monotonic()
        report, got = run(sb, plugins)
        elapsed = time.monotonic() - started
        log = list(sb.requests)
        fired: dict[str, int] = {}
        rules_after = requests.get(sb.url + "/_sandbox/faults", timeout=5).json()
        random_faults = sum(r["fired"] for r in rules_after if r["probability"] is not None)
        for r in rules_after:
            kind = f"{r['action']}:{r.get('status') or r.get('retry_after') or ''}"
            fired[kind] = fired.get(kind, 0) + r["fired"]
    assert clean_report.outcome == "completed" and report.outcome == "completed", report.error
    assert got == expected                                   # same events, same content: none lost, none extra
    api_calls = len([r for r in log if r["path"].startswith("/ent/api/")])
    share = random_faults / api_calls
    # after a 429, the same resource is not asked again before the time Retry-After named
    early = []
    for i, r in enumerate(log):
        if r["fault"] == "status_429" and r["retry_after"]:
            value = r["retry_after"]
            not_before = (r["at"] + float(value) if value.isdigit()
                          else email.utils.parsedate_to_datetime(value).timestamp())
            nxt = next((x for x in log[i + 1:] if x["path"] == r["path"]), None)
            if nxt is not None and nxt["at"] < not_before - 0.01:
                early.append((value, round(nxt["at"] - r["at"], 3)))
    waits_ok = not early
    assert waits_ok, early
    assert all(n > 0 for n in fired.values()), fired        # every kind of fault happened
    figures.add("records expected", len(expected))
    figures.add("records lost or extra", len(set(expected.items()) ^ set(got.items())), "0", got == expected)
    figures.add("API calls under faults", api_calls)
    figures.add("share failed at random", round(share, 3), "≈0.20", 0.10 <= share <= 0.30)
    figures.add("faults injected (all)", len([r for r in log if r["fault"]]))
    figures.add("fault kinds fired", len([n for n in fired.values() if n]), f"{len(KINDS)}", len(fired) == len(KINDS))
    figures.add("calls clean run", clean_calls)
    figures.add("extra calls", len(log) - clean_calls)
    figures.add("Retry-After honoured", "yes" if waits_ok else "no", "yes", waits_ok)
    figures.add("sync seconds under faults", round(elapsed, 1))
