"""What becomes of each delivered event: its :class:`Outcome` counts, dead letters and parked
stats (:class:`Verdicts`), and the event itself (:class:`Inbound`).

Every item ends in exactly one place: delivered, unchanged (or superseded), dead-lettered
(``learning.record.rejected.v1``, stage ``delivery``) or parked
(``learning.learner_stat.parked.v1``, dead-lettered after ``max_park_days``).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from hostspec import events as ev
from hostspec.ops import metrics

from .items import recency
from .ledger import FAILED, PARKED, Ledger, Record

log = logging.getLogger(__package__ + ".delivery")     # the deliverer's log, as before its split
SOURCE = "/publisher-360learning"


@dataclass
class Inbound:
    """An event to deliver, where it came from, and its parking history if it comes back parked."""

    event: ev.Event
    origin: tuple[str, int, int] | None = None
    parked: dict[str, Any] | None = None

    @property
    def data(self) -> dict[str, Any]:
        return self.event.data

    def record(self) -> Record:
        d = self.data
        kind = {ev.COURSE_UPSERTED: "course", ev.COURSE_REMOVED: "removal"}.get(self.event.type, "stat")
        course = d["course_external_id"] if kind == "stat" else d["external_id"]
        learner = d["learner"]["provider_id"] if kind == "stat" else None
        fingerprint = d.get("fingerprint") or ("removed" if kind == "removal" else None)
        if kind != "stat":
            return Record(kind, d["connection"], course, learner, self.event.id, fingerprint, tenant=d.get("tenant"))
        return Record(kind, d["connection"], course, learner, self.event.id, fingerprint,
                      attempt=d.get("attempt_id"), recency=recency(d), tenant=d.get("tenant"))


@dataclass
class Outcome:
    dead: list[ev.Event] = field(default_factory=list)
    parked: list[ev.Event] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    # connection -> (its items, the error): not delivered yet, to try again later (``deliver``)
    retry: dict[str, tuple[list["Inbound"], Exception]] = field(default_factory=dict)
    tags_pending: bool = False      # some tags could not be merged yet: run the tags step again later

    def add(self, other: "Outcome") -> None:
        self.dead.extend(other.dead)
        self.parked.extend(other.parked)
        self.counts.update(other.counts)
        self.retry.update(other.retry)
        self.tags_pending = self.tags_pending or other.tags_pending


class Verdicts:
    """Ends items: counts them, dead-letters or parks them, and records that in the ledger."""

    def __init__(self, ledger: Ledger, *, max_park: timedelta, now: Callable[[], datetime]):
        self.ledger, self.max_park, self.now = ledger, max_park, now

    def done(self, item: Inbound, what: str, out: Outcome, done: set[int], *, unparked: str = "released") -> None:
        kind = item.record().kind
        out.counts[f"{kind}_{what}"] += 1
        metrics.PUBLISHER_RECORDS.labels(item.data.get("connection", "?"), kind, what).inc()
        if item.parked is not None:     # a parked stat leaves the parked topic: counted once, released or expired
            out.counts[f"stat_unparked_{unparked}"] += 1
            metrics.PUBLISHER_RECORDS.labels(item.data.get("connection", "?"), kind, f"unparked_{unparked}").inc()
        if what == "delivered":
            metrics.PUBLISHER_LAST.labels(item.data.get("connection", "?")).set(self.now().timestamp())
        done.add(id(item))

    def rejected(self, item: Inbound, reason: str, errors: Any) -> ev.Event:
        """A dead letter for ``item`` (stage ``delivery``), recorded in the ledger as failed."""
        self.ledger.mark([(item.record(), FAILED, None, None, f"{reason}: {errors}", None)])
        return self.dead_letter(item, reason, errors)

    def reject(self, item: Inbound, reason: str, errors: Any, out: Outcome, done: set[int], *,
                mark: bool = True, unparked: str = "released") -> None:
        record = item.record()
        if mark:
            self.ledger.mark([(record, FAILED, None, None, f"{reason}: {errors}", None)])
        out.dead.append(self.dead_letter(item, reason, errors))
        log.warning("connection %s: %s %s not delivered: %s: %s", item.data.get("connection"), record.kind,
                    record.key.replace("\x1f", "/"), reason, errors)
        self.done(item, "rejected", out, done, unparked=unparked)

    def dead_letter(self, item: Inbound, reason: str, errors: Any) -> ev.Event:
        record = item.record()
        d = item.data
        origin = {"topic": item.origin[0], "partition": item.origin[1], "offset": item.origin[2]} if item.origin else None
        data = {"stage": "delivery", "reason": reason, "errors": errors, "record_id": record.key.replace("\x1f", "/"),
                "record": item.event.body, "request_id": None, "run_id": None, "tenant": d.get("tenant"),
                "connection": d.get("connection"), "provider": d.get("provider"), "origin": origin,
                "raw_value": None, "raw_encoding": None}
        return ev.make_event(ev.RECORD_REJECTED, data, key=item.event.key, source=SOURCE,
                             subject=data["record_id"], time=self.now(), id_content=f"{item.event.id}/{reason}")

    def park(self, item: Inbound, reason: str, detail: str, out: Outcome, done: set[int]) -> None:
        now = self.now()
        previous = item.parked or {}
        first = datetime.fromisoformat(previous["first_parked_at"]) if previous else now
        if now - first > self.max_park:
            self.reject(item, f"{reason}_expired", f"{detail} (parked since {ev.isoformat(first)})", out, done,
                         unparked="expired")
            return
        attempts = int(previous.get("attempts", 0)) + 1
        d = item.data
        data = {"reason": reason, "detail": detail, "attempts": attempts, "first_parked_at": ev.isoformat(first),
                "parked_at": ev.isoformat(now), "tenant": d["tenant"], "connection": d["connection"],
                "provider": d["provider"], "event": item.event.body}
        out.parked.append(ev.make_event(ev.STAT_PARKED, data, key=item.event.key, source=SOURCE,
                                        subject=item.record().key.replace("\x1f", "/"), time=now,
                                        id_content=f"{item.event.id}/{attempts}"))
        self.ledger.mark([(item.record(), PARKED, None, None, f"{reason}: {detail}", None)])
        if not previous:        # counted once when parked, not again at every retry round
            out.counts[f"stat_parked_{reason}"] += 1
            metrics.PUBLISHER_RECORDS.labels(d["connection"], "stat", f"parked_{reason}").inc()
        else:
            out.counts["stat_still_parked"] += 1
        done.add(id(item))
