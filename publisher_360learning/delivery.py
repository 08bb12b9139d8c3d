"""One batch of events delivered to 360Learning.

For each connection in the batch: find or create its integration in the synchronized group,
upsert changed courses and archive removed ones in bulk calls (at most 10,000 and 1,000 items),
merge the provider's skills into course tags, then import changed statistics (10,000 per call,
``forceNew: false``) for learners found by e-mail. Every item ends in exactly one place:

* delivered — 360Learning answered success (ledger: ``delivered``);
* unchanged — the ledger shows the same content delivered before: nothing sent;
* dead letter — invalid for 360Learning or refused by it (``learning.record.rejected.v1``,
  stage ``delivery``), with the API's message;
* parked — the learner (or the course) does not exist in 360Learning yet
  (``learning.learner_stat.parked.v1``), tried again on later runs, dead-lettered after
  ``max_park_days``.

Each connection (company) is delivered on its own: :meth:`Deliverer.deliver_connection` raises
:class:`TransientError` (429, 503, 5xx, network, an operation ending in error, the bulk API
disabled) after the client's retries, and the caller (the service's lane of that connection)
keeps those items and tries again with its own backoff; nothing is acknowledged before its
outcome is known. :meth:`Deliverer.deliver` does the same for a mixed batch: one connection's
trouble is returned in ``Outcome.retry`` and costs no other connection anything.

Newest content wins: of two stats of one attempt (``course/learner/attempt``), in one batch or
across batches, topics, parks and instances, the one with the larger :func:`.items.recency` is
kept, and one older than what 360Learning already holds (the ledger's delivered recency) is
dropped as superseded.

Tags are a step of their own: a delivered course leaves its provider tags *pending* in the
ledger; the step merges every pending course of the connection and clears it, so a failure or a
crash in between is made good by the next pass, not lost.

Path sessions: before the first import of an attempt, the learner's attempts in 360Learning are
read back (``GET /api/v2/courses/stats``, one call per course and 50 learners); when one is open,
the import's first activity moves back to its start so that 360Learning updates that attempt
(started inside a path session, maybe) instead of creating a new one.

The deliverer orchestrates; its collaborators hold the steps: :mod:`.clients` (one client per
credential), :mod:`.courses` (courses and tags), :mod:`.stat_import` (statistics),
:mod:`.bulk` (bulk calls) and :mod:`.outcomes` (what becomes of each item).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from hostspec import events as ev
from hostspec.credentials import CredentialKey
from hostspec.ops.logs import log_context

from . import contract
from .clients import Clients, client_for_target
from .client import Learning360Client
from .courses import CourseDelivery
from .errors import PermanentError, TargetConfigError, TransientError
from .ledger import Ledger
from .outcomes import SOURCE, Inbound, Outcome, Verdicts
from .ownership import Fence
from .settings import Target
from .stat_import import StatImport

log = logging.getLogger(__name__)


class Deliverer:
    def __init__(self, targets: dict[str, Target], ledger: Ledger, *, max_park_days: float = 30,
                 verify_integration_s: float = 600,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 client_factory: Callable[[Target], Learning360Client] | None = None):
        self.targets, self.ledger = targets, ledger
        self.max_park = timedelta(days=max_park_days)
        self.verify_integration_s = verify_integration_s
        self._verified: dict[tuple[str, str, str], float] = {}
        self._now = now
        self.clients = Clients(client_factory or client_for_target)
        self.verdicts = Verdicts(ledger, max_park=self.max_park, now=now)
        self.courses = CourseDelivery(ledger, self.verdicts)
        self.stats = StatImport(ledger, self.verdicts, self.courses.course_id)

    def credential(self, target: Target) -> CredentialKey:
        """The whole identity of the target's credential (:meth:`.clients.Clients.credential`)."""
        return self.clients.credential(target)

    def client(self, target: Target) -> Learning360Client:
        """The company's client, one per whole credential (:meth:`.clients.Clients.client`).
        :raise TargetConfigError: the secret cannot be read."""
        return self.clients.client(target)

    def set_targets(self, targets: dict[str, Target]) -> None:
        """New targets (the file changed): a connection whose settings changed gets a new client
        at its next delivery; clients no connection uses any more are closed."""
        before = self.targets
        self.targets = targets
        self.clients.forget({name for name, t in before.items() if targets.get(name) != t})

    def close(self) -> None:
        self.clients.close()

    def rejected(self, item: Inbound, reason: str, errors: object) -> ev.Event:
        """A dead letter for ``item`` (stage ``delivery``), recorded in the ledger as failed."""
        return self.verdicts.rejected(item, reason, errors)

    # -- a batch --------------------------------------------------------------------------------------
    def deliver(self, inbound: Iterable[Inbound]) -> Outcome:
        """Deliver a mixed batch, connection by connection; a connection's transient trouble is
        returned in ``Outcome.retry`` (its items untouched), never raised."""
        out = Outcome()
        groups: dict[str, list[Inbound]] = {}
        for item in inbound:
            groups.setdefault(item.data["connection"], []).append(item)
        for connection, items in groups.items():
            try:
                out.add(self.deliver_connection(connection, items))
            except TransientError as exc:
                out.retry[connection] = (items, exc)
        return out

    def deliver_connection(self, connection: str, items: list[Inbound], *, settle: bool = False,
                           fence: Fence | None = None) -> Outcome:
        """Deliver one connection's events (and its pending tags), or raise :class:`TransientError`
        with nothing acknowledged: the caller keeps ``items`` and tries again later.

        :param settle: first wait until the company has no bulk operation still unfinished in
            360Learning (the first delivery after a take-over: an operation the previous owner
            submitted may still run, and must not land after newer content).
        :param fence: every write to 360Learning passes it first (:mod:`.ownership`): raises
            :class:`.ownership.LaneRevoked` once the events' partitions are no longer ours."""
        out = Outcome()
        if settle and connection in self.targets:
            try:
                self.settle(self.client(self.targets[connection]), connection)
            except TargetConfigError as exc:    # refused credentials: the delivery below ends its items
                log.warning("connection %s: cannot look for unfinished bulk operations: %s", connection, exc)
        if not items:
            self._pending_tags(connection, out, fence)
            return out
        d = items[0].data
        with log_context(tenant=d["tenant"], connection=connection, provider=d["provider"]):
            by_group: dict[tuple[str, str], list[Inbound]] = {}
            for item in items:
                by_group.setdefault((item.data["group_id"], item.data["provider"]), []).append(item)
            for (group_id, provider), group_items in by_group.items():
                self._deliver_connection(connection, group_id, provider, d["tenant"], group_items, out, fence)
            self._pending_tags(connection, out, fence)
        return out

    def _deliver_connection(self, connection: str, group_id: str, provider: str, tenant: str, items: list[Inbound],
                            out: Outcome, fence: Fence | None) -> None:
        target = self.targets.get(connection)
        if target is None:
            done: set[int] = set()
            for item in items:
                self.verdicts.reject(item, "no_target", f"no 360Learning target for connection {connection!r}", out, done)
            return
        for attempt in (1, 2):
            part, done = Outcome(), set()
            try:
                client = self.client(target).fenced(fence)
                integration_id = self._integration(client, target, connection, group_id, provider, tenant)
                self.courses.deliver(client, target, integration_id,
                              [i for i in items if i.event.type != ev.LEARNER_STAT_UPSERTED], part, done)
                self.stats.deliver(client, target, integration_id,
                            [i for i in items if i.event.type == ev.LEARNER_STAT_UPSERTED], part, done)
            except TargetConfigError as exc:
                if exc.code == contract.INTEGRATION_NOT_FOUND and attempt == 1:
                    # deleted in 360Learning since we remembered it: start this connection's part again
                    log.warning("connection %s: its integration is gone from 360Learning (deleted, with its "
                                "courses); creating it again. Courses not in this batch come back with the "
                                "next full sync: connector-host replay --connection %s", connection, connection)
                    self.ledger.forget_integration(connection, group_id, target.label(provider), tenant=tenant)
                    continue
                log.error("connection %s: cannot deliver to 360Learning: %s", connection, exc)
                for item in items:
                    if id(item) not in done:
                        self.verdicts.reject(item, "target_config", str(exc), part, done)
            out.add(part)
            return

    def settle(self, client: Learning360Client, connection: str) -> None:
        """Wait (up to the client's operation timeout) for the company's unfinished operations."""
        deadline = time.monotonic() + client.operation_timeout_s
        waited = False
        while (ops := client.unfinished_operations()):
            if time.monotonic() > deadline:
                raise TransientError(f"{len(ops)} bulk operations of the company still unfinished after "
                                     f"{client.operation_timeout_s:.0f}s")
            if not waited:
                log.info("connection %s: waiting for %d bulk operations submitted before (by a previous owner?) "
                         "to end before delivering", connection, len(ops))
                waited = True
            time.sleep(client.poll_interval_s)

    def _integration(self, client: Learning360Client, target: Target, connection: str, group_id: str,
                     provider: str, tenant: str | None = None) -> str:
        """The integration's id: remembered, checked against 360Learning every ``verify_integration_s``
        (someone may delete it, and its courses with it), found by label, or created."""
        label = target.label(provider)
        key = (connection, group_id, label)
        known = self.ledger.integration(*key)
        if known and time.monotonic() - self._verified.get(key, -1e18) < self.verify_integration_s:
            return known
        found = client.find_integration(group_id, label)
        if known and (found is None or found["_id"] != known):
            log.warning("connection %s: integration %s is gone from 360Learning; what it held is sent again "
                        "as it comes by (a full sync restores everything: connector-host replay --connection %s)",
                        connection, known, connection)
            self.ledger.forget_integration(*key, tenant=tenant)
        if found is None:
            try:
                found = client.create_integration(target.integration_body(group_id, provider))
            except PermanentError as exc:  # a refused integration is the target's settings, whatever the code
                raise TargetConfigError(f"creating integration {label!r} in group {group_id}: {exc}",
                                        status=exc.status, code=exc.code) from None
            log.info("connection %s: created 360Learning integration %s (%r) in group %s",
                     connection, found.get("_id"), label, group_id)
        self.ledger.remember_integration(connection, group_id, label, found["_id"], tenant=tenant)
        self._verified[key] = time.monotonic()
        return found["_id"]

    def _pending_tags(self, connection: str, out: Outcome, fence: Fence | None = None) -> None:
        """The tags step (:meth:`.courses.CourseDelivery.merge_pending`) for every course of
        ``connection`` still pending; a credential that cannot be read leaves them pending."""
        pending = self.ledger.pending_tags(connection)
        target = self.targets.get(connection)
        if not pending or target is None:
            return
        try:
            client = self.client(target).fenced(fence)
        except TargetConfigError as exc:
            log.error("connection %s: tags cannot be merged (%s); they stay pending", connection, exc)
            out.tags_pending = True
            return
        self.courses.merge_pending(client, connection, pending, out)


__all__ = ["SOURCE", "Deliverer", "Inbound", "Outcome", "client_for_target"]
