"""The whole path on sandboxes, in one process and without Kafka: the Coursera sandbox is
synced by the host's engine, and the events are delivered by the publisher to the 360Learning
sandbox. One learner is missing from 360Learning at first, to show parking and its retry."""
from __future__ import annotations

from typing import TextIO

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.config.connections import connection_from_settings
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.run import SyncEngine
from hostspec.engine.sinks import JsonLinesSink, MemorySink
from hostspec.requests import SyncRequest
from publisher_360learning.delivery import Deliverer, Inbound, Outcome
from publisher_360learning.ledger import Ledger
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox
from publisher_360learning.settings import target_from_settings

CONNECTION = "coursera-sandbox"


def run_demo(*, out: str, contents: int, learners: int, enrollments: int, stream: TextIO) -> int:
    """Run the demo, telling each step on ``stream``; 0 when every event was delivered and the
    rerun changed nothing in 360Learning, else 3."""
    plugins = get_plugin_manager()
    memory = MemorySink()
    with CourseraSandbox(OrgSpec(contents=contents, learners=learners, enrollments=enrollments)) as coursera, \
            JsonLinesSink(out) as lines:
        print(coursera.describe(), file=stream)
        connection = connection_from_settings(CONNECTION, "coursera", coursera.settings, plugins, group_id=SYNC_GROUP)
        report = SyncEngine(plugins, _Tee(memory, lines)).run(
            SyncRequest("demo", CONNECTION, "coursera", "all", requested_by="demo"), connection)
    print(f"host: sync {report.outcome}: {report.counts.courses_emitted} course and "
          f"{report.counts.stats_emitted} learner-stat events (also in {out})", file=stream)
    inbound = [Inbound(e) for e in memory.events if e.type in (ev.COURSE_UPSERTED, ev.COURSE_REMOVED,
                                                                 ev.LEARNER_STAT_UPSERTED)]
    mails = sorted({e.data["learner"]["email"] for e in memory.of_type(ev.LEARNER_STAT_UPSERTED)
                    if e.data["learner"]["email"]})
    late = mails[:1]
    with Learning360Sandbox(users=mails[1:]) as lms:
        print(lms.describe() + f" (without {', '.join(late)} at first)", file=stream)
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (sandbox)",
                                                   "poll_interval_s": 0.05})
        deliverer = Deliverer({CONNECTION: target}, Ledger())
        try:
            first = deliverer.deliver(inbound)
            _print("publisher, first run", first, lms, stream)
            for mail in late:
                lms.company.add_user(mail)
            print(f"360Learning: {', '.join(late)} joined; the next run retries the parked stats", file=stream)
            parked = [Inbound(ev.parse_event(p.data["event"]), parked=p.data) for p in first.parked]
            second = deliverer.deliver(parked)
            _print("publisher, parked stats retried", second, lms, stream)
            before = lms.company.snapshot()
            again = deliverer.deliver(inbound)
            same = before == lms.company.snapshot()
            print(f"publisher, same events again: {_counts(again)}; 360Learning {'unchanged' if same else 'CHANGED'}",
                  file=stream)
        finally:
            deliverer.close()
    undelivered = first.retry or second.retry or again.retry
    return 0 if same and not (first.dead or second.dead or second.parked or undelivered) else 3


class _Tee:
    def __init__(self, *sinks):
        self.sinks = sinks

    def emit(self, event: ev.Event) -> None:
        for sink in self.sinks:
            sink.emit(event)

    def checkpoint(self, state_records, *, final: bool) -> None:
        for sink in self.sinks:
            sink.checkpoint(state_records, final=final)


def _counts(outcome: Outcome) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(outcome.counts.items())) or "nothing"


def _print(title: str, outcome: Outcome, lms: Learning360Sandbox, stream: TextIO) -> None:
    snap = lms.company.snapshot()
    print(f"{title}: {_counts(outcome)}; dead letters {len(outcome.dead)}, parked {len(outcome.parked)}\n"
          f"  360Learning holds {len(snap['courses'])} external courses in the synchronized group's catalog "
          f"({len(snap['catalog'].get(SYNC_GROUP, []))}) and library ({len(snap['library'].get(SYNC_GROUP, []))}), "
          f"{len(snap['tags'])} tags, {len(snap['attempts'])} attempts", file=stream)


__all__ = ["CONNECTION", "run_demo"]
