"""The publisher as a fleet, on the real broker: many companies on several instances, one company
failing, an instance killed inside a bulk operation, live and parked stats racing, path sessions,
and the second provider end to end.

Events are published the way the worker publishes them (a tenant's course and stat events routed
to one partition index); the publishers are real ``publisher-360learning run`` processes; each
company has its own 360Learning sandbox. Every figure goes to the reliability table.
"""
from __future__ import annotations

import re
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from hostspec import events as ev
from hostspec.topics import Topics
from hostspec.transport.admin import ensure_topics
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.producers import KafkaSink, make_producer
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox
from tests.integration.conftest import (
    ServiceProcess,
    final_status,
    publish_raw,
    read_topic,
    request_event,
)

from .conftest import LONG

pytestmark = pytest.mark.kafka
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)


# -- events as the worker emits them --------------------------------------------------------------------
def course_event(tenant: str, connection: str, n: int) -> ev.Event:
    data = {"tenant": tenant, "connection": connection, "provider": "coursera", "group_id": SYNC_GROUP,
            "external_id": f"crs-{n}", "title": f"Course {n}", "description": "About it", "language": "en",
            "content_type": "course", "launch_url": f"https://www.coursera.org/learn/crs-{n}", "image_url": None,
            "duration_minutes": 60, "difficulty_level": None, "sources": [{"name": "Coursera", "logo_url": None}],
            "subjects": [], "skills": [{"name": f"Skill {n % 3}", "provider_id": f"s{n % 3}"}],
            "locked_fields": ["title", "description"], "provider_updated_at": None}
    data["fingerprint"] = ev.fingerprint(data)
    return ev.make_event(ev.COURSE_UPSERTED, data, key=ev.partition_key(tenant, connection, "coursera", f"course/crs-{n}"),
                         source="/test", subject=f"crs-{n}", time=T0)


def stat_event(tenant: str, connection: str, course: int, mail: str, generation: int, *, attempt: str = "1",
               first: datetime = T0) -> ev.Event:
    """Generation g of one learner's stat: later generations are newer (as_of) and further along."""
    completed = generation >= 3
    data = {"tenant": tenant, "connection": connection, "provider": "coursera", "group_id": SYNC_GROUP,
            "course_external_id": f"crs-{course}", "learner": {"email": mail, "provider_id": mail},
            "attempt_id": attempt, "completion_status": "completed" if completed else "in_progress",
            "progress_percent": 100.0 if completed else 20.0 * generation, "score_percent": None, "result": None,
            "first_activity_at": first.isoformat(),
            "last_activity_at": (first + timedelta(hours=generation)).isoformat(),
            "completed_at": (first + timedelta(hours=generation)).isoformat() if completed else None,
            "time_spent_seconds": 600 * generation, "provenance": {},
            "as_of": (first + timedelta(days=generation)).isoformat()}
    data["fingerprint"] = ev.fingerprint(data)
    return ev.make_event(ev.LEARNER_STAT_UPSERTED, data, key=ev.partition_key(
        tenant, connection, "coursera", f"stat/crs-{course}/{mail}/{attempt}"), source="/test", subject=None, time=T0)


def expected_progress(generation: int) -> int:
    return 100 if generation >= 3 else 20 * generation


def publish(bootstrap: str, topics: Topics, events: list[ev.Event]) -> None:
    producer = make_producer(KafkaConfig.from_env(bootstrap_servers=bootstrap))
    try:
        sink = KafkaSink(producer, topics.for_type)
        for event in events:
            sink.emit(event)
        sink.flush(60)
    finally:
        producer.close(timeout=10)


# -- companies and publishers ---------------------------------------------------------------------------
class Company:
    """A tenant with one Coursera connection and its own 360Learning."""

    def __init__(self, name: str, learners: int, courses: int, *, absent: int = 0):
        """:param absent: the first ``absent`` learners are not in 360Learning yet."""
        self.tenant, self.connection = name, f"{name}-coursera"
        self.mails = [f"learner{i}@{name}.test" for i in range(learners)]
        self.courses = courses
        self.lms = Learning360Sandbox(users=self.mails[absent:], stage_s=0.02).start()

    def events(self, generation: int, mails: list[str] | None = None) -> list[ev.Event]:
        return [stat_event(self.tenant, self.connection, c, m, generation)
                for c in range(self.courses) for m in (mails or self.mails)]

    def course_events(self) -> list[ev.Event]:
        return [course_event(self.tenant, self.connection, c) for c in range(self.courses)]

    def attempts(self) -> dict[tuple[str, str], list[dict]]:
        """(course external id, mail) -> attempts."""
        c = self.lms.company
        with self.lms.lock:
            course_ext = {cid: ext for (_i, ext), cid in c.by_external.items()}
            mails = {uid: u["mail"] for uid, u in c.users.items()}
            out: dict[tuple[str, str], list[dict]] = {}
            for a in c.attempts.values():
                out.setdefault((course_ext.get(a["courseId"], "?"), mails.get(a["userId"], "?")), []).append(dict(a))
        return out

    def delivered(self, generation: int) -> int:
        """How many (course, learner) pairs hold exactly generation ``generation``."""
        want = expected_progress(generation)
        return sum(1 for atts in self.attempts().values() if len(atts) == 1 and atts[0]["progress"] == want)

    def close(self) -> None:
        self.lms.close()


def targets_toml(companies: list[Company], extra: str = "") -> str:
    out = []
    for c in companies:
        s = c.lms.settings
        out.append(f'[targets.{c.connection}]\nbase_url = "{s["base_url"]}"\nclient_id = "{s["client_id"]}"\n'
                   f'client_secret = {{ env = "IT_360_SECRET" }}\nauthor_id = "{s["author_id"]}"\n'
                   f'external_platform = "Coursera ({c.tenant})"\nretry_initial_s = 0.05\npoll_interval_s = 0.05\n'
                   + extra)
    return "\n".join(out)


def start_publishers(tmp_path, bootstrap: str, prefix: str, companies: list[Company], n: int, *, tag: str = "",
                     extra: tuple[str, ...] = (), target_extra: str = "") -> list[ServiceProcess]:
    targets = tmp_path / f"targets{tag}.toml"
    targets.write_text(targets_toml(companies, target_extra))
    secret = companies[0].lms.settings["client_secret"]
    return [publisher(tmp_path, bootstrap, prefix, targets, f"pub{tag}-{i}", secret, extra) for i in range(n)]


def publisher(tmp_path, bootstrap, prefix, targets, name, secret, extra=(), ledger: str | None = None):
    return ServiceProcess(tmp_path, name, [
        sys.executable, "-m", "publisher_360learning.cli", "run", "--targets", str(targets),
        "--ledger", str(tmp_path / (ledger or f"{name}.sqlite")), "--bootstrap-servers", bootstrap,
        "--topic-prefix", prefix, "--group-id", f"{prefix}publisher", "--instance", name,
        "--batch-seconds", "0.3", "--retry-interval", "3", *extra], {"IT_360_SECRET": secret})


def wait_until(predicate, timeout: float, what: str, procs=()) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            logs = "\n".join(p.log()[-1500:] for p in procs)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)
    return time.monotonic() - started


def fault(company: Company, **rule) -> None:
    assert requests.post(company.lms.url + "/_sandbox/faults", json=rule, timeout=5).status_code == 201


def clear_faults(company: Company) -> None:
    requests.delete(company.lms.url + "/_sandbox/faults", timeout=5)


def serving(procs) -> bool:
    """Every instance was assigned its units and restored their ledger."""
    return all("restored from" in p.log() for p in procs)


@pytest.fixture
def companies():
    made: list[Company] = []

    def make(n: int, *, learners: int = 10, courses: int = 3, prefix: str = "co", absent: int = 0) -> list[Company]:
        batch = [Company(f"{prefix}{i:02d}", learners, courses, absent=absent) for i in range(n)]
        made.extend(batch)
        return batch

    yield make
    for c in made:
        c.close()


def stop_all(procs) -> None:
    for p in procs:
        p.stop(timeout=20)


# -- one company failing -----------------------------------------------------------------------------------
def _deliver_all(tmp_path, bootstrap, prefix, companies, *, failing: Company | None, outage_s: float):
    topics = Topics().with_prefix(prefix)
    ensure_topics(KafkaConfig.from_env(bootstrap_servers=bootstrap), topic_specs(topics))
    procs = start_publishers(tmp_path, bootstrap, prefix, companies, 3, tag=prefix[-3:])
    try:
        wait_until(lambda: serving(procs), 90, "three publishers serving", procs)
        if failing is not None:
            fault(failing, action="bulk_disabled", route="/api/v2/bulk/*", times=None)
        publish(bootstrap, topics, [e for c in companies for e in c.course_events()])
        t0 = time.monotonic()
        publish(bootstrap, topics, [e for c in companies for e in c.events(1)])
        done: dict[str, float] = {}
        phase = {"outage": False, "recovered_at": None}

        def check() -> bool:
            now = time.monotonic()
            if failing is not None and not phase["outage"] and now >= t0 + outage_s / 2:
                clear_faults(failing)       # from "bulk API disabled" to an outage of every call
                fault(failing, action="status_5xx", route="*", status=503, times=None)
                phase["outage"] = True
            if failing is not None and phase["recovered_at"] is None and now >= t0 + outage_s:
                clear_faults(failing)
                phase["recovered_at"] = now
            for c in companies:
                if c.tenant not in done and c.delivered(1) == c.courses * len(c.mails):
                    done[c.tenant] = now - t0
            return len(done) == len(companies)

        wait_until(check, outage_s + 240, "every company delivered", procs)
        recovered = phase["recovered_at"]
        return done, (recovered - t0 if recovered else None), procs
    finally:
        stop_all(procs)


def test_one_failing_company_delays_no_other(tmp_path, bootstrap, prefix, companies, figures):
    n = 20
    outage_s = 120 if LONG else 40
    calm = companies(n, prefix="a")
    base, _, _ = _deliver_all(tmp_path, bootstrap, prefix + "calm.", calm, failing=None, outage_s=0)
    stormy = companies(n, prefix="b")
    failing = stormy[7]
    took, recovered_s, procs = _deliver_all(tmp_path, bootstrap, prefix + "storm.", stormy, failing=failing,
                                            outage_s=outage_s)
    others_base = max(v for k, v in base.items() if k != "a07")
    others = max(v for k, v in took.items() if k != failing.tenant)
    ratio = others / others_base
    lost = failing.courses * len(failing.mails) - failing.delivered(1)
    figures.add("companies on 3 publisher instances", n)
    figures.add("seconds: the 19 others delivered, no fault anywhere", round(others_base, 1))
    figures.add("seconds: the 19 others delivered, one company failing", round(others, 1))
    # the wall-time ratio of a few seconds is a figure (one clean-clone CI run measured 1.72 on a
    # 2.5 s baseline, nine others 0.7-1.1); the guarantee is that nobody waits for the failing
    # company: every other one is delivered while it still refuses everything
    figures.add("ratio", round(ratio, 2), "~1")
    figures.add("the 19 others delivered before the failing company's outage ended",
                "yes" if others < outage_s / 2 else "no", "yes", others < outage_s / 2)
    figures.add("failing company: seconds of bulkAPIDisabled, then of 503 on every call",
                f"{outage_s / 2:.0f} + {outage_s / 2:.0f}")
    figures.add("failing company: seconds from its recovery to all delivered",
                round(took[failing.tenant] - recovered_s, 1))
    figures.add("failing company: stats lost", lost, "0", lost == 0)
    config_logged = any("refuses bulk operations for this company" in p.log() for p in procs)
    figures.add("bulkAPIDisabled reported as the company's configuration", "yes" if config_logged else "no", "yes",
                config_logged)
    assert others < outage_s / 2 and lost == 0 and config_logged


def _journal_offsets(bootstrap, procs, fleet):
    """A probe of the shared ledger: the end offset of each company's unit partition."""
    from kafka import KafkaConsumer, TopicPartition

    from hostspec.transport.routing import tenant_partition

    topic = next(m.group(1) for p in procs for m in [re.search(r"restored from (\S+):", p.log())] if m)
    partitions = [TopicPartition(topic, tenant_partition(c.tenant, 6)) for c in fleet]

    def ends():
        consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        try:
            return consumer.end_offsets(partitions)
        finally:
            consumer.close()

    return ends


# -- an instance killed inside a bulk operation --------------------------------------------------------------
def test_an_instance_killed_inside_a_bulk_operation(tmp_path, bootstrap, prefix, companies, figures):
    fleet = companies(6, learners=8, courses=3, prefix="k")
    topics = Topics().with_prefix(prefix)
    ensure_topics(KafkaConfig.from_env(bootstrap_servers=bootstrap), topic_specs(topics))
    procs = start_publishers(tmp_path, bootstrap, prefix, fleet, 3)
    secret = fleet[0].lms.settings["client_secret"]
    try:
        wait_until(lambda: serving(procs), 90, "three publishers serving", procs)
        publish(bootstrap, topics, [e for c in fleet for e in c.course_events()])
        publish(bootstrap, topics, [e for c in fleet for e in c.events(1)])
        wait_until(lambda: all(c.delivered(1) == c.courses * len(c.mails) for c in fleet), 120, "generation 1", procs)
        # what generation 1 taught the instances is in the shared ledger before anyone dies (the
        # journal follows deliveries within a loop; without this wait a kill may come first)
        journal = _journal_offsets(bootstrap, procs, fleet)
        wait_until(lambda: all(n > 0 for n in journal().values()), 60, "generation 1 journaled", procs)
        for c in fleet:   # the next imports stay running 4 s: time to kill an instance inside one
            fault(c, action="op_slow", route="*/stats", run_s=4, times=1)
        publish(bootstrap, topics, [e for c in fleet for e in c.events(2)])

        def running():
            for c in fleet:
                if any(op.type == "importExternalStatistics" and op.status == "running"
                       for op in list(c.lms.company.operations.values())):
                    return c
            return None
        wait_until(lambda: running() is not None, 60, "an import running", procs)
        victim_company = running()
        victim = next(p for p in procs if f"connection {victim_company.connection}:" in p.log()
                      or f"'Coursera ({victim_company.tenant})'" in p.log())
        victim.kill()
        killed_at = time.monotonic()
        # and generation 3 arrives while the instance is down; it comes back with an empty local ledger
        publish(bootstrap, topics, [e for c in fleet for e in c.events(3)])
        time.sleep(2)
        procs[procs.index(victim)] = publisher(tmp_path, bootstrap, prefix, tmp_path / "targets.toml",
                                                      victim.name, secret, ledger=f"{victim.name}-fresh.sqlite")
        wait_until(lambda: all(c.delivered(3) == c.courses * len(c.mails) for c in fleet), 180,
                   "generation 3 everywhere", procs)
        recovered_s = time.monotonic() - killed_at
        # rebuilt from Kafka by whoever took a unit over after the kill (the back instance's units may
        # hold no company at all: six tenants hashed over six units; at the start the topic was empty)
        restored = [int(x) for p in procs for x in re.findall(r"restored from \S+: (\d+) records", p.log())]
    finally:
        stop_all(procs)
    pairs = sum(c.courses * len(c.mails) for c in fleet)
    attempts = [a for c in fleet for a in c.attempts().values()]
    missing = pairs - len(attempts)
    duplicated = sum(len(a) - 1 for a in attempts if len(a) > 1)
    older = sum(1 for a in attempts if a[0]["progress"] != 100)
    figures.add("companies / instances / learner-course pairs", f"{len(fleet)} / 3 / {pairs}")
    figures.add("instance SIGKILLed while an import of its company was running", victim_company.tenant)
    figures.add("ledger records rebuilt from Kafka by the instances taking units over", sum(restored), "> 0",
                sum(restored) > 0)
    figures.add("pairs missing in 360Learning", missing, "0", missing == 0)
    figures.add("pairs holding an older stat than the newest", older, "0", older == 0)
    figures.add("duplicated attempts", duplicated, "0", duplicated == 0)
    figures.add("seconds from the kill to the newest everywhere", round(recovered_s, 1))
    assert missing == 0 and older == 0 and duplicated == 0 and sum(restored) > 0


# -- live and parked stats racing ------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["older parked, newer live", "newer parked, older live"])
def test_newest_wins_between_live_and_parked(tmp_path, bootstrap, prefix, companies, figures, order):
    fleet = companies(4, learners=6, courses=2, prefix="p", absent=3)     # 3 learners not in 360Learning yet
    topics = Topics().with_prefix(prefix)
    ensure_topics(KafkaConfig.from_env(bootstrap_servers=bootstrap), topic_specs(topics))
    late = {c.tenant: c.mails[:3] for c in fleet}
    procs = start_publishers(tmp_path, bootstrap, prefix, fleet, 3)
    first_gen, second_gen = (1, 2) if order.startswith("older parked") else (2, 1)
    try:
        wait_until(lambda: serving(procs), 90, "three publishers serving", procs)
        publish(bootstrap, topics, [e for c in fleet for e in c.course_events()])
        publish(bootstrap, topics, [e for c in fleet for e in c.events(first_gen)])      # the late ones park
        parked_n = sum(c.courses * len(late[c.tenant]) for c in fleet)
        read_topic(bootstrap, topics.parked, until=lambda v: len(v) >= parked_n, timeout=90)
        for c in fleet:
            for mail in late[c.tenant]:
                c.lms.company.add_user(mail)
        # in small batches, so that the live ones and the retried parked ones interleave across batches
        second = [e for c in fleet for e in c.events(second_gen)]
        for i in range(0, len(second), 7):
            publish(bootstrap, topics, second[i:i + 7])
        newest = max(first_gen, second_gen)
        wait_until(lambda: all(c.delivered(newest) == c.courses * len(c.mails) for c in fleet), 120,
                   "the newest everywhere", procs)
        time.sleep(8)    # two more parked rounds: an older stat arriving late must not overwrite
        superseded = sum(int(x) for p in procs for x in re.findall(r"stat_superseded=(\d+)", p.log()))
    finally:
        stop_all(procs)
    pairs = sum(c.courses * len(c.mails) for c in fleet)
    wrong = pairs - sum(c.delivered(newest) for c in fleet)
    figures.add(f"{order}: learner-course pairs / parked at first", f"{pairs} / {parked_n}")
    figures.add(f"{order}: pairs not holding the newest stat", wrong, "0", wrong == 0)
    figures.add(f"{order}: older stats dropped as superseded", superseded)
    assert wrong == 0


# -- path sessions -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["START then enrolment", "enrolment then START"])
def test_a_course_started_in_a_path_session_is_continued(tmp_path, bootstrap, prefix, companies, figures, order):
    """With ``default_completion = false``: START leaves the session's attempt open, and Coursera's
    progress must go into it. (With ``true``, 360Learning's advice for daily stats, START completes
    the session's attempt at once, and by 360Learning's rule the provider's progress makes a new
    attempt: the session was credited at START.)"""
    (company,) = companies(1, learners=5, courses=2, prefix="s")
    topics = Topics().with_prefix(prefix)
    ensure_topics(KafkaConfig.from_env(bootstrap_servers=bootstrap), topic_specs(topics))
    procs = start_publishers(tmp_path, bootstrap, prefix, [company], 1,
                             target_extra="default_completion = false\ndefault_progress = 1\n")
    session = "65a0000000000000000005e1"

    def start_in_session(at: datetime) -> None:
        for c in range(company.courses):
            for mail in company.mails:
                requests.post(company.lms.url + "/_sandbox/attempts", timeout=5, json={
                    "externalId": f"crs-{c}", "mail": mail, "pathSessionId": session,
                    "at": at.timestamp()}).raise_for_status()
    try:
        wait_until(lambda: serving(procs), 90, "the publisher serving", procs)
        publish(bootstrap, topics, company.course_events())
        wait_until(lambda: len(company.lms.company.courses) == company.courses, 60, "courses", procs)
        enrolment = T0 + timedelta(minutes=1)
        events = [stat_event(company.tenant, company.connection, c, m, 1, first=enrolment)
                  for c in range(company.courses) for m in company.mails]
        if order == "START then enrolment":
            start_in_session(T0)
            publish(bootstrap, topics, events)
        else:
            publish(bootstrap, topics, events)
            wait_until(lambda: company.delivered(1) == len(events), 60, "the enrolment", procs)
            start_in_session(enrolment + timedelta(minutes=5))
        later = [stat_event(company.tenant, company.connection, c, m, 2, first=enrolment)
                 for c in range(company.courses) for m in company.mails]
        publish(bootstrap, topics, later)
        wait_until(lambda: company.delivered(2) == len(later), 60, "Coursera's progress", procs)
    finally:
        stop_all(procs)
    attempts = list(company.attempts().values())
    one = sum(1 for a in attempts if len(a) == 1)
    in_session = sum(1 for a in attempts if len(a) == 1 and a[0]["pathSessionId"] == session)
    figures.add(f"{order}: learner-course pairs", len(attempts))
    figures.add(f"{order}: pairs with exactly one attempt", one, str(len(attempts)), one == len(attempts))
    figures.add(f"{order}: ... that attempt in the session, at Coursera's progress", in_session, str(len(attempts)),
                in_session == len(attempts))
    assert one == in_session == len(attempts) == company.courses * len(company.mails)


# -- the second provider end to end ----------------------------------------------------------------------------------
def test_linkedin_learning_through_worker_and_publisher(tmp_path, bootstrap, prefix, topics, workers, figures,
                                                        monkeypatch):
    from connector_linkedin.sandbox import LinkedInSandbox, LinkedInSpec

    spec = LinkedInSpec(courses=8, learners=12, activities=60)
    with LinkedInSandbox(spec) as li:
        mails = [li.learner(n)["email"] for n in range(spec.learners)]
        with Learning360Sandbox(users=mails, stage_s=0.02) as lms:
            conns = tmp_path / "c.toml"
            conns.write_text(f'''[connections.acme-li]
tenant = "acme"
provider = "linkedin_learning"
group_id = "{SYNC_GROUP}"
[connections.acme-li.settings]
client_id = "{li.client_id}"
client_secret = {{ env = "IT_LI_SECRET" }}
api_url = "{li.url}"
token_url = "{li.url}/oauth/v2/accessToken"
page_size = 10
''')
            conns.chmod(0o600)
            monkeypatch.setenv("IT_LI_SECRET", li.client_secret)
            worker = workers(conns, "wli", None)
            company = Company.__new__(Company)
            company.lms, company.tenant, company.connection = lms, "acme", "acme-li"
            targets = tmp_path / "targets.toml"
            targets.write_text(targets_toml([company]).replace("Coursera (acme)", "LinkedIn Learning (acme)"))
            pub = publisher(tmp_path, bootstrap, prefix, targets, "pub-li", lms.settings["client_secret"])
            try:
                worker.wait_for(r"serves partitions \[")
                wait_until(lambda: serving([pub]), 90, "the publisher serving", [pub])
                rid, value = request_event("acme-li", provider="linkedin_learning")
                publish_raw(bootstrap, topics.requests, value, key=b"acme-li")
                status = final_status(bootstrap, topics, rid, timeout=120)
                stats = read_topic(bootstrap, topics.learner_stats,
                                   until=lambda v: len(v) >= status["counts"]["stats_emitted"])
                expected = {(s["data"]["course_external_id"], s["data"]["learner"]["email"]) for s in stats}
                wait_until(lambda: len(lms.company.attempts) >= len(expected), 120, "every LinkedIn stat", [pub])
                time.sleep(2)
                dead = [d for d in read_topic(bootstrap, topics.dead_letter) if d["data"]["stage"] == "delivery"]
                attempts = len(lms.company.attempts)
            finally:
                pub.stop(timeout=20)
    figures.add("LinkedIn Learning stats emitted by the worker", len(stats))
    figures.add("delivered to 360Learning (attempts)", attempts, str(len(expected)), attempts == len(expected))
    figures.add("dead-lettered by the publisher", len(dead), "0", not dead)
    assert status["phase"] == "completed" and attempts == len(expected) and not dead
