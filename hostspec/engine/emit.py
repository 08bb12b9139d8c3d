"""One run's events: built, validated, compared with what was emitted before, emitted and
checkpointed together with the state changes of their batch (:class:`Run`)."""
from __future__ import annotations

import logging
import time
from contextlib import closing, nullcontext
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.bounded import bounded, cut, fit
from hostspec.engine.plugins import Provider
from hostspec.engine.report import RunReport, outcome, status_counts
from hostspec.engine.sinks import Sink
from hostspec.engine.state import Entry, StateSession
from hostspec.errors import EventTooLarge, HostError, RecordRejected, RunAbandoned, scalar_id
from hostspec.ops import metrics
from hostspec.provider import Connection, SyncContext
from hostspec.provider_state import ProviderState
from hostspec.requests import SCOPES_OF, SyncRequest
from hostspec.secrets import redact

if TYPE_CHECKING:
    from hostspec.engine.run import SyncEngine

log = logging.getLogger(__name__)
FIRST_BATCH = 200
REQUEST_DONE = "request:"  # checkpoint name prefix: the request ids a connection already ran


class _DryRunSink:
    """Counts what would be emitted and lets only status events through."""

    def __init__(self, sink: Sink):
        self._sink = sink

    def emit(self, event: ev.Event) -> None:
        if event.type == ev.SYNC_STATUS:
            self._sink.emit(event)

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        self._sink.checkpoint(state_records, final=final)   # only the request-done marker (see Run.checkpoint)


class Run:
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
                "scope": r.scope, "phase": phase, "dry_run": r.dry_run, "counts": status_counts(r.counts),
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
        rid = record_id or self.record_id(record)
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

    def record_id(self, record: Any) -> str | None:
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

    # -- provider calls --------------------------------------------------------------------------
    def context(self, scope: str, resume: Any = None) -> SyncContext:
        return SyncContext(run_id=self.report.run_id, request_id=self.request.request_id, scope=scope,
                           now=self.engine.clock(), options=self.request.options, resume=resume, log=log,
                           calls=self.calls, state=ProviderState.of_session(self.session))

    def stream(self, records: Iterator[Any] | None, scope: str) -> Iterator[Any]:
        if records is None:
            raise HostError(f"provider {self.provider.name!r} returned no {scope} iterator")
        with closing(records) if hasattr(records, "close") else nullcontext():
            yield from records

    def tick(self, n: int) -> None:
        engine = self.engine
        if engine.should_stop():
            raise RunAbandoned(f"run {self.report.run_id} abandoned after {n} records")
        self.step()
        if engine.on_progress is not None and n % engine.progress_every == 0:
            engine.on_progress(self.report)
        if engine.status_every and n % engine.status_every == 0:
            self.status("progress")


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


__all__ = ["FIRST_BATCH", "REQUEST_DONE", "Run", "not_json"]
