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
import time
import uuid
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.ops import metrics
from hostspec import rules
from hostspec.bounded import bounded, cut, fit
from hostspec.errors import DeliveryError, EventTooLarge, HostError, RecordRejected, RunAbandoned, scalar_id
from hostspec.event_schemas import COURSE_FIELDS_WITH_PROVENANCE
from hostspec.incarnation import of_connection
from hostspec.ops.logs import log_context
from hostspec.engine.plugins import HostPluginManager, Provider
from hostspec.provider import Connection, ExpectedCount, ListingTotal, PageEnd, SyncContext
from hostspec.provider_state import ProviderState
from hostspec.secrets import redact
from hostspec.engine.sinks import Sink
from hostspec.engine.state import Entry, StateDB, StateSession

log = logging.getLogger(__name__)
LOCKED_FIELDS = ["title", "description"]
DEFAULT_LOOKBACK = timedelta(hours=48)   # Coursera reports lag up to 24 h, new enrollments up to 48 h
FIRST_BATCH = 200
WATERMARK = "progress.watermark"
CATALOG_WATERMARK = "catalog.watermark"     # when the last catalog fetch (of any kind) started
CATALOG_COMPLETE = "catalog.complete_at"    # when the last complete catalog listing started
CATALOG_OVERLAP = timedelta(hours=1)        # an incremental listing starts this long before the watermark
RESUME = "progress.resume"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


SCOPES_OF = {"all": ("catalog", "progress"), "catalog": ("catalog",), "progress": ("progress",)}
REQUEST_DONE = "request:"  # checkpoint name prefix: the request ids a connection already ran
REQUEST_MEMORY = timedelta(days=7)  # how long they are remembered (the requests topic's retention)


@dataclass(frozen=True)
class SyncRequest:
    request_id: str
    connection: str
    provider: str
    scope: str = "all"
    requested_by: str | None = None
    mode: str = "incremental"
    dry_run: bool = False
    allow_mass_removal: bool = False     # lift the removal guard for this run (replay --allow-mass-removal)
    since: datetime | None = None
    until: datetime | None = None
    learners: tuple[str, ...] | None = None
    courses: tuple[str, ...] | None = None
    origin: str | None = None   # where the worker read it (topic:partition:offset); not part of the event
    merged: tuple[tuple[str, str | None, str], ...] = ()   # (id, origin, scope) of the requests this run
    asked_scope: str | None = None                            # also answers; the scope this one asked for

    @property
    def answers(self) -> tuple[tuple[str, str | None, str], ...]:
        """(id, origin, scope asked for) of every request this run answers, this one first."""
        return ((self.request_id, self.origin, self.asked_scope or self.scope), *self.merged)

    @classmethod
    def from_event(cls, event: ev.Event) -> "SyncRequest":
        """From a parsed (validated) ``learning.sync.requested.v1`` event."""
        d = event.data
        return cls(request_id=event.id, connection=d["connection"], provider=d["provider"],
                   scope=d.get("scope", "all"), requested_by=d.get("requested_by"),
                   mode=d.get("mode", "incremental"), dry_run=bool(d.get("dry_run", False)),
                   allow_mass_removal=bool(d.get("allow_mass_removal", False)),
                   since=d.get("since"), until=d.get("until"),
                   learners=tuple(d["learners"]) if d.get("learners") else None,
                   courses=tuple(d["courses"]) if d.get("courses") else None)

    def to_event(self, time: datetime) -> ev.Event:
        """The ``learning.sync.requested.v1`` event asking for this sync.

        Keyed by connection name, so all requests of a connection share a partition and run in order.
        """
        data: dict[str, Any] = {"connection": self.connection, "provider": self.provider, "scope": self.scope,
                                "requested_by": self.requested_by, "mode": self.mode, "dry_run": self.dry_run,
                                **({"allow_mass_removal": True} if self.allow_mass_removal else {}),
                                "since": ev.isoformat(self.since) if self.since else None,
                                "until": ev.isoformat(self.until) if self.until else None,
                                "learners": list(self.learners) if self.learners else None,
                                "courses": list(self.courses) if self.courses else None}
        event = ev.make_event(ev.SYNC_REQUESTED, data, key=self.connection, source="/connector-host/requester",
                              subject=self.connection, time=time, id_content=self.request_id)
        event.body["id"] = self.request_id  # the request's id is the caller's, not content-derived
        return event

    @property
    def scopes(self) -> tuple[str, ...]:
        return SCOPES_OF[self.scope]

    @property
    def is_subset(self) -> bool:
        return bool(self.learners or self.courses)

    @property
    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, "dry_run": self.dry_run, "since": self.since, "until": self.until,
                "learners": self.learners, "courses": self.courses}


@dataclass
class Counts:
    catalog_fetched: int = 0
    courses_emitted: int = 0
    courses_unchanged: int = 0
    courses_removed: int = 0
    progress_fetched: int = 0
    stats_emitted: int = 0
    stats_unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    removals_held: int = 0


@dataclass
class RunReport:
    request_id: str
    run_id: str
    connection: str
    provider: str
    scope: str
    outcome: str = "started"
    counts: Counts = field(default_factory=Counts)
    error: dict[str, str] | None = None
    failed_scopes: set[str] = field(default_factory=set)   # the scopes that failed (the others ran on)
    expected: dict[str, int] = field(default_factory=dict)  # records a scope's fetch will yield, if told
    warning: dict[str, str] | None = None   # why a run that did not fail is partial (besides rejections)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    dry_run: bool = False

    @property
    def duration_s(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.started_at).total_seconds()


class _DryRunSink:
    """Counts what would be emitted and lets only status events through."""

    def __init__(self, sink: Sink):
        self._sink = sink

    def emit(self, event: ev.Event) -> None:
        if event.type == ev.SYNC_STATUS:
            self._sink.emit(event)

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        self._sink.checkpoint(state_records, final=final)   # only the request-done marker (see _Run.checkpoint)


class _Run:
    """State of one run: builds, compares, emits and checkpoints its events."""

    def __init__(self, engine: "SyncEngine", provider: Provider, connection: Connection,
                 request: SyncRequest, report: RunReport):
        self.engine, self.provider, self.connection = engine, provider, connection
        self.request, self.report = request, report
        self.hooks = provider.hooks
        self.sink: Sink = _DryRunSink(engine.sink) if request.dry_run else engine.sink
        self.session = StateSession(engine.state, connection.state_scope)   # this life's (hostspec.incarnation)
        self.source = f"/connector-host/{provider.name}/{connection.tenant}/{connection.name}"
        self.identity = {"tenant": connection.tenant, "connection": connection.name,
                         "provider": provider.name, "group_id": connection.group_id}
        self.context_scope = request.scopes[0]
        self.since_checkpoint = 0
        self.checkpoints = 0
        self.checkpointed_at = time.monotonic()
        self.counted = metrics.RunCounts(provider.name, connection.name)
        self.learners = set(request.learners or ())
        self.courses = set(request.courses or ())
        self.calls = engine.calls(connection) if engine.calls is not None else None
        self.rejected_id: str | None = None    # the id the last record built was rejected under
        self.skipped_last = False              # the last record built was skipped by the provider
        self.unidentified = 0                  # catalog items rejected without any id

    def key(self, entity: str) -> str:
        c = self.connection
        return ev.partition_key(c.tenant, c.name, self.provider.name, entity)

    # -- durability ----------------------------------------------------------------------------
    def checkpoint(self, *, final: bool = False) -> None:
        """Make the batch durable: events and state changes together, then commit the state."""
        if self.request.dry_run:   # a dry run changes no state but its request-done marker (and local seen marks)
            self.session.keep_only(REQUEST_DONE)
        self.sink.checkpoint(self.session.changelog(), final=final)
        if not self.request.dry_run:
            self.counted.update(self.report.counts)
        self.session.commit()
        applied = getattr(self.sink, "applied", None)
        if applied is not None:
            applied()   # the state is in the local database too: a later read-back may start after it
        self.since_checkpoint = 0
        self.checkpoints += 1
        self.checkpointed_at = time.monotonic()

    def page_end(self) -> None:
        """A provider page ended: checkpoint if the batch is old enough (no record may come for long)."""
        if self.since_checkpoint and time.monotonic() - self.checkpointed_at >= self.engine.batch_seconds:
            self.checkpoint()

    def step(self) -> None:
        self.since_checkpoint += 1
        # the first batch is small, so the first events become visible quickly
        limit = self.engine.batch_size if self.checkpoints else min(self.engine.batch_size, FIRST_BATCH)
        if (self.since_checkpoint >= limit
                or time.monotonic() - self.checkpointed_at >= self.engine.batch_seconds):
            self.checkpoint()

    # -- status --------------------------------------------------------------------------------
    def status(self, phase: str) -> None:
        """Emit the run's status; on its start, that of every request merged into it too."""
        self._status(phase, self.report.request_id)
        if phase == "started":
            for request_id, _origin, _scope in self.request.merged:
                self._status(phase, request_id)

    def final_statuses(self) -> dict[str, str]:
        """Emit each answered request's final status, from the scopes it asked for; their outcomes."""
        outcomes = {}
        for request_id, _origin, scope in self.request.answers:
            outcomes[request_id] = outcome(self.report, SCOPES_OF[scope])
            self._status(outcomes[request_id], request_id)
        return outcomes

    def _status(self, phase: str, request_id: str) -> None:
        r = self.report
        # progress statuses repeat: their counts tell them apart
        id_content = f"{r.run_id}/{phase}" + (f"/{sum(asdict(r.counts).values())}" if phase == "progress" else "")
        merged_into = {"merged_into": r.request_id} if request_id != r.request_id else {}
        if merged_into:
            id_content += f"/{request_id}"
        problem = (r.error if phase == "failed" else None) or r.warning
        data = {"request_id": request_id, "run_id": r.run_id, "tenant": self.connection.tenant,
                "connection": self.connection.name, "provider": self.provider.name,
                "scope": r.scope, "phase": phase, "dry_run": r.dry_run, "counts": _counts(r.counts),
                "error": {**problem, "message": cut(problem["message"])} if problem else None,
                "started_at": ev.isoformat(r.started_at) if r.started_at else None,
                "ended_at": ev.isoformat(r.ended_at) if r.ended_at else None,
                "worker": self.engine.worker_id, **merged_into,
                **({"expected": dict(r.expected)} if r.expected else {})}
        self.sink.emit(ev.make_event(ev.SYNC_STATUS, data, key=self.key("sync"), source=self.source,
                                     subject=self.connection.name, time=self.engine.clock(),
                                     id_content=id_content))

    # -- records -------------------------------------------------------------------------------
    def reject(self, record: Any, stage: str, reason: str, errors: Any, record_id: str | None = None) -> str | None:
        """Dead-letter ``record``; returns the id it was named by (``record_id``, the id the
        provider gave in :class:`RecordRejected`, else the ``record_id`` hook's)."""
        self.report.counts.rejected += 1
        rid = record_id or self._record_id(record)
        rid = cut(rid, 200) if rid else rid
        data = {"stage": stage, "reason": cut(redact(reason)), "errors": bounded(_redacted(errors)), "record_id": rid,
                "record": bounded(_redacted(record)) if isinstance(record, (Mapping, list)) else None,
                "request_id": self.report.request_id, "run_id": self.report.run_id,
                "tenant": self.connection.tenant, "connection": self.connection.name,
                "provider": self.provider.name, "origin": None, "raw_value": None, "raw_encoding": None}
        data = fit(data, ["record", "errors"])
        event = ev.make_event(ev.RECORD_REJECTED, data, key=self.key(f"rejected/{rid or '-'}"),
                              source=self.source, subject=rid, time=self.engine.clock(),
                              id_content=ev.canonical_json([stage, rid, data["errors"]]))
        try:
            self.sink.emit(event)
        except EventTooLarge:   # a transport limit far below ours: keep the reason, drop the quotes
            self.sink.emit(ev.make_event(ev.RECORD_REJECTED, {**data, "record": None, "errors": None},
                                         key=event.key, source=self.source, subject=rid, time=self.engine.clock(),
                                         id_content=ev.canonical_json([stage, rid, None])))
        log.info("rejected %s record %s: %s", self.context_scope, rid, reason)
        return rid

    def _record_id(self, record: Any) -> str | None:
        if not isinstance(record, Mapping):
            return None
        try:
            return scalar_id(self.hooks.record_id(record=record, scope=self.context_scope))
        except Exception:  # a broken record_id hook must not lose the rejection
            return None

    def build(self, record: Any, map_hook: Callable[..., Any], extra: Mapping[str, Any],
              context: SyncContext) -> dict[str, Any] | None:
        """Map one record to event data (identity added, not yet validated or fingerprinted).

        None when the record was rejected or the provider skipped it.
        """
        self.rejected_id, self.skipped_last = None, False
        try:
            mapped = map_hook(record=record, connection=self.connection, context=context)
        except RecordRejected as exc:
            self.rejected_id = self.reject(record, "mapping", "the provider could not map the record", exc.messages,
                                           exc.record_id)
            return None
        except Exception as exc:  # a bug in provider code costs one record, not the run
            log.exception("map hook failed on a record")
            self.rejected_id = self.reject(record, "mapping", f"{type(exc).__name__}: {exc}", None)
            return None
        if mapped is None:
            self.report.counts.skipped += 1
            self.skipped_last = True
            return None
        data = {**self.identity, **extra, **mapped}
        data.pop("fingerprint", None)
        return data

    def emit_entity(self, record: Any, type_: str, data: dict[str, Any], kind: str, entity: str,
                    partition_entity: str, subject: str, context: SyncContext,
                    memo: dict[str, Any] | None, previous: Entry | None) -> str:
        """Validate, compare with the last emitted version, emit. Returns emitted/unchanged/rejected.

        :param previous: the entity's state as last committed (``self.session.entry``).
        """
        try:
            data["fingerprint"] = ev.fingerprint(data, type_)
        except (TypeError, ValueError):     # a value JSON cannot hold: one record's problem, not the run's
            self.reject(record, "validation", "the mapped record holds values that are not JSON", not_json(data))
            return "rejected"
        try:
            event = ev.make_event(type_, data, key=self.key(partition_entity), source=self.source,
                                  subject=subject, time=context.now)
        except ValidationError as exc:
            objects = not_json(data)      # a datetime object (say so, rather than "not a valid datetime")
            self.reject(record, "validation", "the mapped record holds values that are not JSON" if objects else
                        "the mapped record breaks the event contract", objects or exc.messages)
            return "rejected"
        if previous is not None and previous.fingerprint == data["fingerprint"] and self.request.mode != "full":
            return "unchanged"
        try:
            self.sink.emit(event)
        except EventTooLarge as exc:
            self.reject(record, "delivery", "the event is larger than Kafka accepts", {"_schema": [str(exc)]})
            return "rejected"
        self.session.put(kind, entity, data["fingerprint"], memo)
        return "emitted"


def not_json(value: Any, path: str = "") -> dict[str, list[str]]:
    """Where ``value`` holds what JSON cannot, with what to return instead."""
    out: dict[str, list[str]] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(not_json(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.update(not_json(v, f"{path}[{i}]"))
    elif isinstance(value, datetime):
        out[path] = ["a datetime object: return an ISO 8601 string (hostspec.events.isoformat(value))"]
    elif not isinstance(value, (str, int, float, bool, type(None))):
        out[path] = [f"a {type(value).__name__} object: return a string, number, boolean, list or mapping"]
    return out


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
        run = _Run(self, provider, connection, request, report)
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

    def _scope(self, run: _Run, scope: str) -> None:
        """Run one scope; its failure is recorded in the report (the first one is the run's error)."""
        report, provider = run.report, run.provider
        try:
            if scope not in provider.info.scopes:
                raise HostError(f"provider {provider.name!r} does not support scope {scope!r}")
            run.context_scope = scope
            if scope == "catalog":
                self._catalog(run)
            else:
                self._progress(run)
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

    def _sweep_earlier_lives(self, run: _Run) -> None:
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

    def _forget_old_requests(self, run: _Run) -> None:
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

    # -- helpers -------------------------------------------------------------------------------
    def _context(self, run: _Run, scope: str, resume: Any = None) -> SyncContext:
        return SyncContext(run_id=run.report.run_id, request_id=run.request.request_id, scope=scope,
                           now=self.clock(), options=run.request.options, resume=resume, log=log,
                           calls=run.calls, state=ProviderState.of_session(run.session))

    def _stream(self, records: Iterator[Any] | None, scope: str, provider: Provider) -> Iterator[Any]:
        if records is None:
            raise HostError(f"provider {provider.name!r} returned no {scope} iterator")
        with closing(records) if hasattr(records, "close") else nullcontext():
            yield from records

    def _tick(self, run: _Run, n: int) -> None:
        if self.should_stop():
            raise RunAbandoned(f"run {run.report.run_id} abandoned after {n} records")
        run.step()
        if self.on_progress is not None and n % self.progress_every == 0:
            self.on_progress(run.report)
        if self.status_every and n % self.status_every == 0:
            run.status("progress")

    # -- catalog -------------------------------------------------------------------------------
    def _catalog_since(self, run: _Run, now: datetime) -> datetime | None:
        """Where an incremental listing may start, or None for a complete one (a full or subset
        request, a first sync, or the last complete listing older than ``catalog_complete_days``)."""
        request, connection = run.request, run.connection
        if (request.mode == "full" or request.is_subset or connection.catalog_complete_days <= 0
                or not run.provider.info.incremental_catalog):
            return None
        watermark, complete = (run.session.checkpoint(CATALOG_WATERMARK), run.session.checkpoint(CATALOG_COMPLETE))
        if not isinstance(watermark, str) or not isinstance(complete, str):
            return None
        # an hour of slack: a daily slot picked up a few seconds earlier than yesterday's is still "a day"
        if now - datetime.fromisoformat(complete) >= timedelta(days=connection.catalog_complete_days) - CATALOG_OVERLAP:
            return None
        return datetime.fromisoformat(watermark) - CATALOG_OVERLAP

    def _catalog(self, run: _Run) -> None:
        counts = run.report.counts
        started = self.clock()
        since = self._catalog_since(run, started)
        context = replace(self._context(run, "catalog"), catalog_since=since)
        if since is not None:
            log.info("connection %s: catalog changes since %s (complete listing every %g days)", run.connection.name,
                     ev.isoformat(since), run.connection.catalog_complete_days)
        records = run.hooks.fetch_catalog(connection=run.connection, context=context)
        listed: int | None = None
        for record in self._stream(records, "catalog", run.provider):
            if isinstance(record, PageEnd):
                run.page_end()  # catalogs are refetched whole (removals need every item seen in one run)
                continue
            if isinstance(record, ExpectedCount):
                run.report.expected["catalog"] = record.total
                continue
            if isinstance(record, ListingTotal):
                listed = record.total
                continue
            counts.catalog_fetched += 1
            data = run.build(record, run.hooks.map_course, {"locked_fields": LOCKED_FIELDS}, context)
            entity = data["external_id"] if data and isinstance(data.get("external_id"), str) else None
            if data is None or entity is None:
                rid = run.rejected_id or run._record_id(record)
                if data is not None:
                    rid = run.reject(record, "validation", "the mapped record has no external_id",
                                     {"external_id": ["Missing data for required field."]}) or rid
                if rid:  # present at the provider although unreadable: not a removal
                    run.session.mark_seen("course", rid, run.report.run_id)
                elif not run.skipped_last:
                    run.unidentified += 1   # listed, unreadable, nameless: no course may be removed this run
            else:
                run.session.mark_seen("course", entity, run.report.run_id)
                if run.courses and entity not in run.courses:
                    counts.skipped += 1
                else:
                    describe_course(data, context.now)
                    outcome = run.emit_entity(record, ev.COURSE_UPSERTED, data, "course", entity,
                                              f"course/{entity}", entity, context,
                                              {"emitted_at": ev.isoformat(context.now)},
                                              run.session.entry("course", entity))
                    _count(counts, "courses", outcome)
            self._tick(run, counts.catalog_fetched)
        if since is None and not run.request.is_subset:
            # removals are decided on complete listings only; one the guard did not trust is not one
            if self._removals(run, context, listed):
                run.session.set_checkpoint(CATALOG_COMPLETE, ev.isoformat(started))
        if not run.request.is_subset:
            run.session.set_checkpoint(CATALOG_WATERMARK, ev.isoformat(started))

    def _removal_guard(self, run: _Run, listed: int | None) -> str | None:
        """Why the courses absent from this listing must not be removed now, or None.

        A listing cut short (a page without its next link, an entitlement glitch answering an
        empty list) looks exactly like mass removals; the publisher would archive them all. So a
        run removes nothing when the listing disagrees with the provider's own total, when every
        known course is absent, or when more than the connection's ``max_removal_share`` is —
        unless the request says ``allow_mass_removal``."""
        state, scope, counts = run.engine.state, run.session.scope, run.report.counts
        absent = state.count_unseen(scope, "course", run.report.run_id)
        if not absent:
            return None
        known = state.count(scope, "course")
        share = run.connection.max_removal_share
        hint = (f"; if they are really gone: connector-host replay --connection {run.connection.name} "
                f"--scope catalog --allow-mass-removal")
        if run.unidentified:
            # an unreadable item named by no id may be any of the absent courses: removing one
            # would archive a course that is still listed
            why, hint = (f"{run.unidentified} listed items could not be read nor named by an id (record_id "
                         f"hook): {absent} absent courses not removed"), ""
        elif listed is not None and counts.catalog_fetched != listed:
            # a listing that provably disagrees with the provider is never trusted, not even on request
            why, hint = (f"the listing held {counts.catalog_fetched} items but the provider counts {listed}: "
                         f"{absent} absent courses not removed"), ""
        elif run.request.allow_mass_removal:
            return None
        elif absent >= known:
            why = f"all {known} known courses are absent from the listing: none removed"
        elif absent * 1000 > round(share * 1000) * known:     # integers: 29 of 100 at 0.29 is allowed
            why = (f"{absent} of {known} known courses ({absent / known:.0%}) are absent from the listing, more "
                   f"than the {share:.0%} a run may remove: none removed")
        else:
            return None
        counts.removals_held = absent
        return why + hint

    def _removals(self, run: _Run, context: SyncContext, listed: int | None = None) -> bool:
        """Courses emitted before and absent from this complete catalog fetch; False when the
        removal guard held them (the listing is not trusted)."""
        run.checkpoint()  # the seen marks of this fetch must be in the database for the query below
        why = self._removal_guard(run, listed)
        if why is not None:
            run.report.warning = {"kind": "removals_held", "message": why}
            if not run.request.dry_run:
                metrics.REMOVALS_HELD.labels(run.connection.name).inc(run.report.counts.removals_held)
            log.warning("connection %s: %s", run.connection.name, why)
            return False
        # streamed; deletes applied by checkpoints on the way do not disturb the keyset paging
        for entity, entry in run.engine.state.unseen(run.session.scope, "course", run.report.run_id):
            data = {**run.identity, "external_id": entity, "reason": "not_in_catalog",
                    "last_seen_at": (entry.memo or {}).get("emitted_at")}
            run.sink.emit(ev.make_event(ev.COURSE_REMOVED, data, key=run.key(f"course/{entity}"),
                                        source=run.source, subject=entity, time=context.now,
                                        id_content=f"removed/{entry.fingerprint}"))
            run.session.delete("course", entity)
            for stat in run.engine.state.with_prefix(run.session.scope, "stat", f"{entity}/"):
                run.session.delete("stat", stat)   # the state of a removed course goes with it
            run.report.counts.courses_removed += 1
            run.step()
        return True

    # -- progress ------------------------------------------------------------------------------
    def _window(self, run: _Run) -> tuple[datetime | None, datetime | None, bool]:
        """(since, until, moves_watermark) for this request."""
        request = run.request
        if request.since or request.until:
            return request.since, request.until, False       # a replay of a date range
        if request.mode == "full":
            return None, None, not request.is_subset
        watermark = run.session.checkpoint(WATERMARK)
        hours = run.connection.progress_lookback_hours
        lookback = self.lookback if hours is None else timedelta(hours=hours)
        since = datetime.fromisoformat(watermark) - lookback if watermark else None
        return since, None, not request.is_subset

    def _progress(self, run: _Run) -> None:
        counts = run.report.counts
        since, until, moves_watermark = self._window(run)
        # a cursor resumes the same fetch only: same request, window and filters (a retry that
        # merged more requests in reads again from the top)
        window = {"request_id": run.request.request_id, "since": since and ev.isoformat(since),
                  "until": until and ev.isoformat(until), "learners": _listed(run.request.learners),
                  "courses": _listed(run.request.courses)}
        saved = run.session.checkpoint(RESUME)
        resume = saved.get("cursor") if saved and {k: saved.get(k) for k in window} == window else None
        if resume is not None:
            log.info("resuming request %s at cursor %r", run.request.request_id, resume)
        context = self._context(run, "progress", resume)
        fetch_started = context.now
        records = run.hooks.fetch_progress(connection=run.connection, context=context, since=since, until=until)
        for record in self._stream(records, "progress", run.provider):
            if isinstance(record, PageEnd):
                run.session.set_checkpoint(RESUME, {**window, "cursor": record.cursor})
                run.page_end()
                continue
            if isinstance(record, ExpectedCount):
                run.report.expected["progress"] = record.total
                continue
            if isinstance(record, ListingTotal):
                continue        # a paging helper's count of a progress listing: nothing to guard
            counts.progress_fetched += 1
            data = run.build(record, run.hooks.map_stat, {}, context)
            if data is not None:
                self._stat(run, record, data, context)
            self._tick(run, counts.progress_fetched)
        run.session.set_checkpoint(RESUME, None)
        if moves_watermark:
            run.session.set_checkpoint(WATERMARK, ev.isoformat(fetch_started))

    def _stat(self, run: _Run, record: Any, data: dict[str, Any], context: SyncContext) -> None:
        counts = run.report.counts
        try:
            course, learner = data["course_external_id"], data["learner"]
            entity = f"{course}/{learner['provider_id']}/{data['attempt_id']}"
        except (KeyError, TypeError):
            run.reject(record, "validation", "the mapped stat lacks course, learner or attempt ids",
                       {"_schema": ["course_external_id, learner.provider_id and attempt_id are required"]})
            return
        if (run.courses and course not in run.courses) or (
                run.learners and not run.learners & {learner.get("provider_id"), learner.get("email")}):
            counts.skipped += 1
            return
        previous = run.session.entry("stat", entity)
        data = rules.keep_completion(previous.memo if previous else None, data)
        outcome = run.emit_entity(record, ev.LEARNER_STAT_UPSERTED, data, "stat", entity,
                                  f"stat/{course}/{learner['provider_id']}", f"{course}/{learner['provider_id']}",
                                  context, rules.completion_memo(data), previous)
        _count(counts, "stats", outcome)


def describe_course(data: dict[str, Any], now: datetime) -> None:
    """Complete a mapped course with ``as_of`` (when its data was read) and a ``provenance`` for
    every described field: the provider's word where it gave one (``derived`` for a value it
    computed), else ``native``, or ``absent`` for an empty value."""
    data.setdefault("as_of", ev.isoformat(now))
    given = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    data["provenance"] = {f: given.get(f) or ("absent" if data.get(f) in (None, [], "") else "native")
                          for f in COURSE_FIELDS_WITH_PROVENANCE}


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return sorted(names) if names else None


def outcome(report: RunReport, scopes: tuple[str, ...]) -> str:
    """``failed`` when one of ``scopes`` failed, else ``partial`` (rejections, a held removal) or
    ``completed``."""
    if report.failed_scopes & set(scopes):
        return "failed"
    return "partial" if report.counts.rejected or report.warning else "completed"


def _counts(counts: Counts) -> dict[str, int]:
    """A status's counts; ``removals_held`` only when there are some (consumers of the first v1
    schema know the other nine keys only)."""
    out = asdict(counts)
    if not out["removals_held"]:
        del out["removals_held"]
    return out


def _count(counts: Counts, what: str, outcome: str) -> None:
    if outcome == "emitted":
        setattr(counts, f"{what}_emitted", getattr(counts, f"{what}_emitted") + 1)
    elif outcome == "unchanged":
        setattr(counts, f"{what}_unchanged", getattr(counts, f"{what}_unchanged") + 1)


def _redacted(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with secret values blanked out of every string."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return redact(repr(value))


__all__ = ["Counts", "RunReport", "SyncEngine", "SyncRequest", "utc_now"]
