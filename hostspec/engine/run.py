"""One sync request, start to end: fetch -> map -> validate -> compare -> emit -> checkpoint.

Per record: the provider maps it, the host adds identity and a content fingerprint and validates
the event; a record that fails becomes a ``learning.record.rejected.v1`` event and the run goes
on. An entity whose fingerprint equals the one last emitted is not emitted again (counted as
unchanged) unless the request says ``mode=full``.

Every ``batch_size`` records the engine *checkpoints*: the sink makes the batch's events durable
together with the state changes of the batch (fingerprints, cursors), then the state is
committed. A long sync is thus a series of small units; after a crash the next attempt skips
what a committed unit already delivered. After a complete catalog fetch, entities emitted before
and absent now produce ``learning.course.removed.v1``; a failed or partial fetch removes nothing.

A ``started`` status opens every run and a ``completed`` / ``partial`` / ``failed`` status closes
it, with counts; ``progress`` statuses may come between.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from hostspec import events as ev
from hostspec.engine.catalog import sync_catalog
from hostspec.engine.emit import REQUEST_DONE, Run
from hostspec.engine.plugins import HostPluginManager
from hostspec.engine.progress import sync_progress
from hostspec.engine.report import RunReport, outcome
from hostspec.engine.sinks import Sink
from hostspec.engine.state import StateDB
from hostspec.errors import DeliveryError, HostError, RunAbandoned
from hostspec.incarnation import of_connection
from hostspec.ops import metrics
from hostspec.ops.logs import log_context
from hostspec.provider import Connection
from hostspec.requests import SyncRequest
from hostspec.secrets import redact

log = logging.getLogger(__name__)
DEFAULT_LOOKBACK = timedelta(hours=48)   # Coursera reports lag up to 24 h, new enrollments up to 48 h
REQUEST_MEMORY = timedelta(days=7)  # how long a connection remembers the requests it ran (the requests topic's retention)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SyncEngine:
    """Runs sync requests for installed providers and sends their events to a sink."""

    def __init__(self, plugins: HostPluginManager, sink: Sink, *, state: StateDB | None = None,
                 clock: Callable[[], datetime] = utc_now, batch_size: int = 5000,
                 batch_seconds: float = 10.0, lookback: timedelta = DEFAULT_LOOKBACK,
                 on_progress: Callable[[RunReport], None] | None = None, progress_every: int = 1000,
                 status_every: int = 0, worker_id: str | None = None,
                 should_stop: Callable[[], bool] = lambda: False, request_memory: timedelta = REQUEST_MEMORY,
                 calls: Callable[[Connection], Any] | None = None):
        """
        :param state: fingerprints and checkpoints; default: a fresh in-memory store (every
            run then emits everything: nothing was emitted before).
        :param batch_size: records per checkpoint (bounds memory and the work a crash loses).
        :param batch_seconds: also checkpoint when this long passed since the last one (keeps
            Kafka transactions well inside their timeout when the provider is slow).
        :param lookback: how far before the last watermark an incremental progress fetch starts.
        :param on_progress: called every ``progress_every`` records (terminal display).
        :param status_every: emit a ``progress`` status every that many records (0: never).
        :param should_stop: polled every record; when true the run raises :class:`RunAbandoned`.
        :param request_memory: how long a connection remembers the ids of requests it ran.
        :param calls: the call budget of a connection's provider account (``context.calls``;
            :mod:`hostspec.runtime.ratebudget`), or None for none.
        """
        self.plugins, self.sink, self.clock = plugins, sink, clock
        self.state = state if state is not None else StateDB()
        self.batch_size, self.batch_seconds, self.lookback = batch_size, batch_seconds, lookback
        self.on_progress, self.progress_every = on_progress, progress_every
        self.status_every, self.worker_id, self.should_stop = status_every, worker_id, should_stop
        self.request_memory, self.calls = request_memory, calls

    def run(self, request: SyncRequest, connection: Connection, *, run_id: str | None = None) -> RunReport:
        run_id = run_id or str(uuid.uuid4())
        with log_context(run_id=run_id, request_id=request.request_id, tenant=connection.tenant,
                         connection=connection.name, provider=request.provider):
            return self._run(request, connection, run_id)

    def _run(self, request: SyncRequest, connection: Connection, run_id: str) -> RunReport:
        provider = self.plugins.provider(request.provider)
        report = RunReport(request_id=request.request_id, run_id=run_id,
                           connection=connection.name, provider=provider.name, scope=request.scope,
                           started_at=self.clock(), dry_run=request.dry_run)
        run = Run(self, provider, connection, request, report)
        run.status("started")
        if not request.dry_run:
            self._sweep_earlier_lives(run)
        for scope in request.scopes:   # a failing scope does not stop the next (merged requests)
            self._scope(run, scope)
        report.ended_at = self.clock()
        report.outcome = outcome(report, request.scopes)
        outcomes = run.final_statuses()
        # a request id runs once (scheduled slots are published by id; a failed one may be sent
        # again): ``origin`` tells a redelivery after a take-over from a second request, same id
        if not request.dry_run:
            self._forget_old_requests(run)
        for request_id, origin, _scope in request.answers:
            run.session.set_checkpoint(f"{REQUEST_DONE}{request_id}",
                                       {"ended_at": ev.isoformat(report.ended_at), "origin": origin,
                                        "outcome": outcomes[request_id]})
        run.checkpoint(final=True)
        self._observe(report, request)
        return report

    def _scope(self, run: Run, scope: str) -> None:
        """Run one scope; its failure is recorded in the report (the first one is the run's error)."""
        report, provider = run.report, run.provider
        try:
            if scope not in provider.info.scopes:
                raise HostError(f"provider {provider.name!r} does not support scope {scope!r}")
            run.context_scope = scope
            if scope == "catalog":
                sync_catalog(run)
            else:
                sync_progress(run)
            return
        except (DeliveryError, RunAbandoned):
            run.session.rollback()
            raise
        except HostError as exc:
            error = {"kind": exc.kind, "message": redact(str(exc))}
        except Exception as exc:  # never let a provider bug take the host down
            log.exception("run %s failed in its %s scope", report.run_id, scope)
            error = {"kind": "system", "message": redact(f"{type(exc).__name__}: {exc}")}
        report.failed_scopes.add(scope)
        if report.error is None:
            report.error = error if len(run.request.scopes) == 1 else {**error, "message": f"{scope}: {error['message']}"}

    def _sweep_earlier_lives(self, run: Run) -> None:
        """Delete the state of the connection's earlier incarnations (deleted and created again,
        pointed at another organization or group; or keyed by name alone before incarnations):
        never read again, it goes with the run's checkpoints, batch by batch."""
        c = run.connection
        gone = 0
        for scope in self.state.scopes_from(f"{c.tenant}/{c.name}"):
            if scope == run.session.scope or not of_connection(scope, c.tenant, c.name):
                continue
            for kind_or_name, entity in self.state.keys(scope):
                if self.should_stop():
                    raise RunAbandoned(f"run {run.report.run_id} abandoned while forgetting an earlier state")
                run.session.forget(scope, kind_or_name, entity)
                gone += 1
                run.step()
        if gone:
            log.info("state of earlier incarnations of %s forgotten: %d records", c.name, gone)

    def _forget_old_requests(self, run: Run) -> None:
        """Drop the request-done markers older than ``request_memory`` (state stays bounded)."""
        cutoff = ev.isoformat(self.clock() - self.request_memory)
        for name, value in self.state.checkpoints_with_prefix(run.session.scope, REQUEST_DONE).items():
            ended_at = value.get("ended_at") if isinstance(value, dict) else value
            if not isinstance(ended_at, str) or ended_at < cutoff:
                run.session.set_checkpoint(name, None)

    @staticmethod
    def _observe(report: RunReport, request: SyncRequest) -> None:
        metrics.RUNS.labels(report.provider, report.connection, report.outcome).inc()
        if report.ended_at and report.started_at:
            metrics.RUN_SECONDS.labels(report.provider, report.scope).observe(
                (report.ended_at - report.started_at).total_seconds())
        if report.outcome != "failed" and not request.dry_run and report.ended_at:
            for scope in request.scopes:
                metrics.LAST_SUCCESS.labels(report.connection, scope).set(report.ended_at.timestamp())


__all__ = ["DEFAULT_LOOKBACK", "REQUEST_MEMORY", "SyncEngine", "utc_now"]
