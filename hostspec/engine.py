"""One sync request, start to end: fetch -> map -> validate -> emit, record by record.

A record that cannot be mapped or fails validation becomes a ``learning.record.rejected.v1``
event and the run goes on; a failure of the fetch itself ends the scope with a ``failed``
status. A ``started`` status opens every run and a ``completed`` / ``partial`` / ``failed``
status closes it, with counts.
"""
from __future__ import annotations

import logging
import uuid
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

from marshmallow import ValidationError

from . import events as ev
from .errors import DeliveryError, HostError, RecordRejected, RunAbandoned
from .plugins import HostPluginManager, Provider
from .provider import Connection, SyncContext
from .secrets import redact
from .sinks import Sink

log = logging.getLogger(__name__)
LOCKED_FIELDS = ["title", "description"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SyncRequest:
    request_id: str
    connection: str
    provider: str
    scope: str = "all"
    requested_by: str | None = None

    @classmethod
    def from_event(cls, event: ev.Event) -> "SyncRequest":
        data = event.data
        return cls(request_id=event.id, connection=data["connection"], provider=data["provider"],
                   scope=data.get("scope", "all"), requested_by=data.get("requested_by"))

    def to_event(self, time: datetime) -> ev.Event:
        """The ``learning.sync.requested.v1`` event asking for this sync.

        Keyed by connection name, so all requests of a connection share a partition and run in order.
        """
        data = {"connection": self.connection, "provider": self.provider, "scope": self.scope,
                "requested_by": self.requested_by}
        event = ev.make_event(ev.SYNC_REQUESTED, data, key=self.connection, source="/connector-host/requester",
                              subject=self.connection, time=time, id_content=self.request_id)
        event.body["id"] = self.request_id  # the request's id is the caller's, not content-derived
        return event

    @property
    def scopes(self) -> tuple[str, ...]:
        return ("catalog", "progress") if self.scope == "all" else (self.scope,)


@dataclass
class Counts:
    catalog_fetched: int = 0
    courses_emitted: int = 0
    courses_removed: int = 0
    progress_fetched: int = 0
    stats_emitted: int = 0
    rejected: int = 0
    skipped: int = 0


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
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def duration_s(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.started_at).total_seconds()


class _Run:
    """State of one run; builds and emits its events."""

    def __init__(self, engine: "SyncEngine", provider: Provider, connection: Connection,
                 request: SyncRequest, report: RunReport):
        self.engine, self.provider, self.connection = engine, provider, connection
        self.request, self.report = request, report
        self.hooks = provider.hooks
        self.source = f"/connector-host/{provider.name}/{connection.tenant}/{connection.name}"
        self.identity = {"tenant": connection.tenant, "connection": connection.name,
                         "provider": provider.name, "group_id": connection.group_id}
        self.context_scope = request.scopes[0]

    def key(self, entity: str) -> str:
        c = self.connection
        return ev.partition_key(c.tenant, c.name, self.provider.name, entity)

    def emit(self, event: ev.Event) -> None:
        self.engine.sink.emit(event)

    # -- status --------------------------------------------------------------------------------
    def status(self, phase: str) -> None:
        r = self.report
        # progress statuses repeat: their counts tell them apart
        id_content = f"{r.run_id}/{phase}" + (f"/{sum(asdict(r.counts).values())}" if phase == "progress" else "")
        data = {"request_id": r.request_id, "run_id": r.run_id, "tenant": self.connection.tenant,
                "connection": self.connection.name, "provider": self.provider.name,
                "scope": r.scope, "phase": phase, "counts": asdict(r.counts), "error": r.error,
                "started_at": ev.isoformat(r.started_at) if r.started_at else None,
                "ended_at": ev.isoformat(r.ended_at) if r.ended_at else None,
                "worker": self.engine.worker_id}
        self.emit(ev.make_event(ev.SYNC_STATUS, data, key=self.key("sync"), source=self.source,
                                subject=self.connection.name, time=self.engine.clock(),
                                id_content=id_content))

    # -- records -------------------------------------------------------------------------------
    def reject(self, record: Any, stage: str, reason: str, errors: Any) -> None:
        self.report.counts.rejected += 1
        rid = self._record_id(record)
        data = {"stage": stage, "reason": redact(reason), "errors": _redacted(errors), "record_id": rid,
                "record": _redacted(record) if isinstance(record, (Mapping, list)) else None,
                "request_id": self.report.request_id, "run_id": self.report.run_id,
                "tenant": self.connection.tenant, "connection": self.connection.name,
                "provider": self.provider.name, "origin": None, "raw_value": None, "raw_encoding": None}
        self.emit(ev.make_event(ev.RECORD_REJECTED, data, key=self.key(f"rejected/{rid or '-'}"),
                                source=self.source, subject=rid, time=self.engine.clock(),
                                id_content=ev.canonical_json([stage, rid, data["errors"]])))
        log.info("rejected %s record %s: %s", self.request.scope, rid, reason)

    def _record_id(self, record: Any) -> str | None:
        if not isinstance(record, Mapping):
            return None
        try:
            return self.hooks.record_id(record=record, scope=self.context_scope)
        except Exception:  # a broken record_id hook must not lose the rejection
            return None

    def map_and_emit(self, record: Any, map_hook: Callable[..., Any], type_: str,
                     entity: Callable[[dict[str, Any]], str], subject: Callable[[dict[str, Any]], str],
                     context: SyncContext, extra: Mapping[str, Any]) -> bool:
        try:
            mapped = map_hook(record=record, connection=self.connection, context=context)
        except RecordRejected as exc:
            self.reject(record, "mapping", "the provider could not map the record", exc.messages)
            return False
        except Exception as exc:  # a bug in provider code costs one record, not the run
            log.exception("map hook failed on a record")
            self.reject(record, "mapping", f"{type(exc).__name__}: {exc}", None)
            return False
        if mapped is None:
            self.report.counts.skipped += 1
            return False
        data = {**self.identity, **extra, **mapped}
        data.pop("fingerprint", None)
        data["fingerprint"] = ev.fingerprint(data)
        try:
            event = ev.make_event(type_, data, key=self.key(entity(data)), source=self.source,
                                  subject=subject(data), time=context.now)
        except ValidationError as exc:
            self.reject(record, "validation", "the mapped record breaks the event contract", exc.messages)
            return False
        self.emit(event)
        return True


class SyncEngine:
    """Runs sync requests for installed providers and sends their events to a sink."""

    def __init__(self, plugins: HostPluginManager, sink: Sink, *, clock: Callable[[], datetime] = utc_now,
                 on_progress: Callable[[RunReport], None] | None = None, progress_every: int = 1000,
                 status_every: int = 0, worker_id: str | None = None,
                 should_stop: Callable[[], bool] = lambda: False):
        """
        :param on_progress: called every ``progress_every`` records (terminal display).
        :param status_every: emit a ``progress`` status every that many records (0: never).
        :param should_stop: polled every record; when true the run raises :class:`RunAbandoned`.
        """
        self.plugins, self.sink, self.clock = plugins, sink, clock
        self.on_progress, self.progress_every = on_progress, progress_every
        self.status_every, self.worker_id, self.should_stop = status_every, worker_id, should_stop

    def run(self, request: SyncRequest, connection: Connection, *, run_id: str | None = None) -> RunReport:
        provider = self.plugins.provider(request.provider)
        report = RunReport(request_id=request.request_id, run_id=run_id or str(uuid.uuid4()),
                           connection=connection.name, provider=provider.name, scope=request.scope,
                           started_at=self.clock())
        run = _Run(self, provider, connection, request, report)
        run.status("started")
        try:
            for scope in request.scopes:
                if scope not in provider.info.scopes:
                    raise HostError(f"provider {provider.name!r} does not support scope {scope!r}")
                run.context_scope = scope
                context = SyncContext(run_id=report.run_id, request_id=request.request_id, scope=scope,
                                      now=self.clock(), log=log)
                if scope == "catalog":
                    self._catalog(run, context)
                else:
                    self._progress(run, context)
        except (DeliveryError, RunAbandoned):
            raise
        except HostError as exc:
            report.error = {"kind": exc.kind, "message": redact(str(exc))}
        except Exception as exc:  # never let a provider bug take the host down
            log.exception("run %s failed", report.run_id)
            report.error = {"kind": "system", "message": redact(f"{type(exc).__name__}: {exc}")}
        report.ended_at = self.clock()
        if report.error:
            report.outcome = "failed"
        elif report.counts.rejected:
            report.outcome = "partial"
        else:
            report.outcome = "completed"
        run.status(report.outcome)
        self.sink.flush()
        return report

    def _stream(self, records: Iterator[Any] | None, scope: str, provider: Provider) -> Iterator[Any]:
        if records is None:
            raise HostError(f"provider {provider.name!r} returned no {scope} iterator")
        with closing(records) if hasattr(records, "close") else nullcontext():
            yield from records

    def _tick(self, run: _Run, n: int) -> None:
        if self.should_stop():
            raise RunAbandoned(f"run {run.report.run_id} abandoned after {n} records")
        if self.on_progress is not None and n % self.progress_every == 0:
            self.on_progress(run.report)
        if self.status_every and n % self.status_every == 0:
            run.status("progress")

    def _catalog(self, run: _Run, context: SyncContext) -> None:
        counts = run.report.counts
        records = run.hooks.fetch_catalog(connection=run.connection, context=context)
        for record in self._stream(records, "catalog", run.provider):
            counts.catalog_fetched += 1
            if run.map_and_emit(record, run.hooks.map_course, ev.COURSE_UPSERTED,
                                lambda d: f"course/{d['external_id']}", lambda d: d["external_id"],
                                context, {"locked_fields": LOCKED_FIELDS}):
                counts.courses_emitted += 1
            self._tick(run, counts.catalog_fetched)

    def _progress(self, run: _Run, context: SyncContext) -> None:
        counts = run.report.counts
        records = run.hooks.fetch_progress(connection=run.connection, context=context, since=None)
        for record in self._stream(records, "progress", run.provider):
            counts.progress_fetched += 1
            if run.map_and_emit(record, run.hooks.map_stat, ev.LEARNER_STAT_UPSERTED,
                                _stat_entity, _stat_subject, context, {}):
                counts.stats_emitted += 1
            self._tick(run, counts.progress_fetched)


def _stat_entity(d: dict[str, Any]) -> str:
    return f"stat/{d['course_external_id']}/{d['learner']['provider_id']}"


def _stat_subject(d: dict[str, Any]) -> str:
    return f"{d['course_external_id']}/{d['learner']['provider_id']}"


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
