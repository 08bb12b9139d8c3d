"""``connector-host``: list providers, check connections, run syncs, run the Kafka worker.

Exit codes: 0 success; 1 the run failed; 2 usage or configuration error; 3 partial success
(some records were rejected, the others delivered).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any, Sequence, TextIO

from marshmallow import ValidationError

from hostspec import __version__
from hostspec import events as ev
from hostspec.ops.console import UsageError, guarded, log_level, plain, port
from hostspec.config.connections import ConnectionStore, connection_from_settings
from hostspec.engine.run import RunReport, SyncEngine, SyncRequest
from hostspec.runtime.fairness import DEFAULT_PER_CONNECTION, DEFAULT_PER_TENANT
from hostspec.ops.logs import setup_logging
from hostspec.engine.plugins import HostPluginManager, get_plugin_manager
from hostspec.provider import SyncContext
from hostspec.engine.sinks import JsonLinesSink
from hostspec.engine.state import StateDB

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_PARTIAL = 0, 1, 2, 3
OUTCOME_EXIT = {"completed": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED, "skipped": EXIT_OK}
DEFAULT_CONNECTIONS = "connections.toml"
CONTROL_TOPIC = "kafka"      # --connections kafka: the control topic instead of a file
DEFAULT_STATE = ".connector-host/state.sqlite"



def sandbox_options(pairs: list[str]) -> dict[str, Any]:
    """``--sandbox-option KEY=VALUE`` pairs as the ``options`` of the ``start_sandbox`` hook: a
    VALUE that is an integer becomes one, any other stays text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--sandbox-option {pair!r}: write KEY=VALUE")
        try:
            options[key] = int(value)
        except ValueError:
            options[key] = value
    return options

def _connections_path(args: argparse.Namespace) -> str:
    return args.connections or os.environ.get("CONNECTOR_HOST_CONNECTIONS") or DEFAULT_CONNECTIONS


def settings_policy(args: argparse.Namespace):
    """The deployment's settings policy: ``--policy FILE`` (or $CONNECTOR_HOST_POLICY), with
    the development switch ``--allow-sandboxes`` (or $CONNECTOR_HOST_ALLOW_SANDBOXES=1)."""
    from hostspec.config.policy import SettingsPolicy
    return SettingsPolicy.from_env(args.policy, allow_sandboxes=True if args.allow_sandboxes else None)


def connection_source(args: argparse.Namespace):
    """The connections file, or with ``--connections kafka`` the control topic (followed live,
    every connection held to the settings policy). A file is the operator's own and trusted: the
    policy applies to it only when ``--policy`` is given."""
    from hostspec.runtime.worker import ConnectionsFile
    if _connections_path(args) != CONTROL_TOPIC:
        return ConnectionsFile(_connections_path(args), policy=settings_policy(args) if args.policy else None)
    from hostspec.config.control_topic import ConnectionLog
    return ConnectionLog.open(_kafka_config(args), _topics(args), policy=settings_policy(args))


def _store(args: argparse.Namespace) -> ConnectionStore:
    """The connections as they are now (one-shot commands: check, sync, replay)."""
    if _connections_path(args) != CONTROL_TOPIC:
        return ConnectionStore.from_file(_connections_path(args))
    source = connection_source(args)
    try:
        return source.store()
    finally:
        source.close()


# -- plugins ---------------------------------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    rows = [{"name": p.name, "version": p.info.version, "title": p.info.title,
             "scopes": list(p.info.scopes),
             "settings": sorted(p.info.settings_schema().fields),
             "secret_settings": list(p.info.secret_fields),
             "sandbox": bool(p.hooks.start_sandbox.get_hookimpls())}
            for p in plugins.providers.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no providers installed (entry-point group hostspec.providers)")
    for r in rows:
        print(f"{r['name']} {r['version']}  {r['title']}")
        print(f"    scopes: {', '.join(r['scopes'])}   sandbox: {'yes' if r['sandbox'] else 'no'}")
        print(f"    settings: {', '.join(r['settings'])} (secret: {', '.join(r['secret_settings']) or '-'})")
    return EXIT_OK


# -- check -----------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    store = _store(args)
    connection = store.get(args.connection, plugins)
    provider = plugins.provider(connection.provider)
    context = SyncContext(run_id=str(uuid.uuid4()), request_id="check", scope="check",
                          now=datetime.now(timezone.utc))
    result = provider.hooks.check_connection(connection=connection, context=context)
    if result is None:
        print(f"{args.connection}: provider {provider.name} cannot check connections")
        return EXIT_OK
    print(f"{args.connection}: {'OK' if result.ok else 'FAILED'} - {result.message}")
    return EXIT_OK if result.ok else EXIT_FAILED


# -- sync ------------------------------------------------------------------------------------------
class _Progress:
    """A progress bar per scope on a terminal (tqdm): count, rate and, when the provider said how
    many records a fetch holds, percent and time left. Silent when the output is not a terminal."""

    SCOPES = (("catalog", "catalog_fetched"), ("progress", "progress_fetched"))

    def __init__(self, stream: TextIO):
        self.stream, self.enabled = stream, bool(getattr(stream, "isatty", lambda: False)())
        self.bars: dict[str, Any] = {}

    def __call__(self, report: RunReport) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        for scope, counter in self.SCOPES:
            done = getattr(report.counts, counter)
            total = report.expected.get(scope)
            if not done and total is None:
                continue
            bar = self.bars.get(scope)
            if bar is None:
                bar = self.bars[scope] = tqdm(desc=f"  {scope:<8}", total=total, unit=" rec", file=self.stream,
                                              dynamic_ncols=True, leave=True)
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

    def done(self, report: RunReport | None = None) -> None:
        if report is not None:
            self(report)
        for bar in self.bars.values():
            bar.close()
        self.bars = {}


def progress_line(status: dict[str, Any]) -> str:
    """One line of a followed request: its phase and counts, with percent when the total is known."""
    c, expected = status["counts"], status.get("expected") or {}
    parts = [f"  {status['phase']:<9} courses {c['courses_emitted']}, stats {c['stats_emitted']}, "
             f"rejected {c['rejected']}"]
    for scope, counter in _Progress.SCOPES:
        if expected.get(scope):
            parts.append(f"{scope} {min(100, 100 * c[counter] // expected[scope])}% of {expected[scope]}")
    line = " | ".join(parts)
    return line + (f" - {status['error']['message']}" if status.get("error") else "")


def print_summary(report: RunReport, out: str, stream: TextIO) -> None:
    c = report.counts
    lines = [
        f"sync {report.outcome}: {report.provider} / {report.connection} (scope {report.scope}, "
        f"run {report.run_id}, {report.duration_s:.2f}s)",
        f"  catalog items fetched   {c.catalog_fetched:>9}",
        f"  course events           {c.courses_emitted:>9}   unchanged {c.courses_unchanged}",
        f"  course removals         {c.courses_removed:>9}",
        f"  progress rows fetched   {c.progress_fetched:>9}",
        f"  learner-stat events     {c.stats_emitted:>9}   unchanged {c.stats_unchanged}",
        f"  rejected records        {c.rejected:>9}",
        f"  events written to       {out}",
    ]
    if report.dry_run:
        lines.append("  dry run: only status events were written, state unchanged")
    if report.error:
        lines.append(f"  error ({report.error['kind']}): {report.error['message']}")
    elif report.warning:
        lines.append(f"  partial ({report.warning['kind']}): {report.warning['message']}")
    print("\n".join(lines), file=stream)


def _request(args: argparse.Namespace, connection: str, provider: str, requested_by: str) -> SyncRequest:
    return SyncRequest(request_id=str(uuid.uuid4()), connection=connection, provider=provider, scope=args.scope,
                       requested_by=requested_by, mode=args.mode, dry_run=args.dry_run, since=args.since,
                       until=args.until, learners=tuple(args.learner) or None, courses=tuple(args.course) or None,
                       allow_mass_removal=getattr(args, "allow_mass_removal", False))


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or date-time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def cmd_sync(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    provider = plugins.provider(args.provider)
    with ExitStack() as stack:
        if args.sandbox:
            options = {k: v for k, v in {"contents": args.sandbox_contents, "learners": args.sandbox_learners,
                                         "enrollments": args.sandbox_enrollments,
                                         "broken_every": args.sandbox_broken_every}.items() if v is not None}
            options.update(sandbox_options(args.sandbox_option or []))
            try:
                sandbox = provider.hooks.start_sandbox(options=options)
            except ValueError as exc:     # sizes that cannot make an organisation
                raise UsageError(f"sandbox options: {exc}") from None
            if sandbox is None:
                print(f"connector-host: provider {provider.name} ships no sandbox", file=sys.stderr)
                return EXIT_CONFIG
            stack.callback(sandbox.close)
            print(sandbox.describe(), file=sys.stderr)
            connection = connection_from_settings(f"{provider.name}-sandbox", provider.name,
                                                  sandbox.settings, plugins)
        else:
            if not args.connection:
                print("connector-host: sync needs --connection NAME or --sandbox", file=sys.stderr)
                return EXIT_CONFIG
            connection = _store(args).get(args.connection, plugins)
            if connection.provider != provider.name:
                print(f"connector-host: connection {connection.name!r} is for provider "
                      f"{connection.provider!r}, not {provider.name!r}", file=sys.stderr)
                return EXIT_CONFIG
        state_path = args.state or (None if args.sandbox else os.environ.get("CONNECTOR_HOST_STATE", DEFAULT_STATE))
        state = StateDB(state_path) if state_path else StateDB()
        stack.callback(state.close)
        sink = stack.enter_context(JsonLinesSink(args.out))
        _serve_metrics(args)
        progress = _Progress(sys.stderr)
        engine = SyncEngine(plugins, sink, state=state, on_progress=progress, progress_every=100)
        report = engine.run(_request(args, connection.name, provider.name, "cli"), connection)
        progress.done(report)
    print_summary(report, "stdout" if args.out == "-" else args.out, sys.stderr)
    return exit_code(report.outcome, report.error)


def exit_code(outcome: str, error: dict[str, str] | None) -> int:
    """A run's exit code: a configuration error (a secret not set, settings refused) is 2."""
    if outcome == "failed" and error and error.get("kind") in ("config", "provider_config"):
        return EXIT_CONFIG
    return OUTCOME_EXIT[outcome]


# -- worker and requests ---------------------------------------------------------------------------
def _kafka_config(args: argparse.Namespace):
    from hostspec.transport.config import KafkaConfig
    return KafkaConfig.from_env(bootstrap_servers=getattr(args, "bootstrap_servers", None))


def _topics(args: argparse.Namespace):
    from hostspec.transport.config import topics_from_env
    return topics_from_env(getattr(args, "topic_prefix", None))


def cmd_run(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    import signal

    from hostspec.runtime.worker import Worker, WorkerSettings

    static = args.membership == "static" if args.membership else bool(args.worker_id)
    settings = WorkerSettings(group_id=args.group_id, concurrency=args.concurrency,
                              session_timeout_ms=args.session_timeout_ms,
                              max_poll_interval_ms=args.max_poll_interval_ms, grace_s=args.grace,
                              status_every=args.status_every, batch_size=args.batch_size,
                              transaction_timeout_ms=args.transaction_timeout_ms,
                              lookback_s=args.lookback_hours * 3600, state_dir=args.state_dir,
                              coalesce=not args.no_coalesce, max_pending_per_connection=args.max_pending_per_connection,
                              max_pending_per_tenant=args.max_pending_per_tenant, static_membership=static,
                              **({"worker_id": args.worker_id} if args.worker_id else {}))
    connections = connection_source(args)
    connections.store()  # fail now, not at the first request, when the file is missing or broken
    worker = Worker(plugins, connections, _kafka_config(args), _topics(args), settings)

    def on_signal(signum: int, _frame: object) -> None:
        if worker.stopping:  # second signal: leave now; uncommitted requests are redone
            os._exit(130)
        print(f"connector-host: {signal.Signals(signum).name}: finishing running syncs "
              f"(up to {args.grace:.0f}s; again to quit now)", file=sys.stderr)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _serve_metrics(args, worker.readiness)
    worker.run()
    return EXIT_OK


def cmd_request_sync(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    from hostspec.transport.kafka import Follower, publish

    plugins.provider(args.provider)  # unknown provider: say so before publishing anything
    config, topics = _kafka_config(args), _topics(args)
    request = _request(args, args.connection, args.provider, args.requested_by)
    follower = Follower(config, topics.status) if args.wait else None
    try:
        publish(config, topics.requests, [request.to_event(datetime.now(timezone.utc))])
        print(f"requested {args.scope} sync of {args.connection} ({args.provider}): request {request.request_id}")
        if follower is None:
            return EXIT_OK
        deadline = time.monotonic() + args.timeout
        for msg in follower.messages(deadline):
            try:
                status = ev.parse_event(msg.value or b"", expected_type=ev.SYNC_STATUS).data
            except ValidationError:
                continue
            if status["request_id"] != request.request_id:
                continue
            print(progress_line(status), flush=True)
            if status["phase"] in OUTCOME_EXIT:
                return exit_code(status["phase"], status.get("error"))
        print(f"connector-host: no final status within {args.timeout:.0f}s (is a worker running?)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if follower is not None:
            follower.close()


def cmd_replay(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    """A targeted re-run of one connection, followed to its end."""
    raw = _store(args).raw(args.connection)
    args.provider, args.wait = raw.get("provider"), True
    return cmd_request_sync(args, plugins)


def _show_schedule(store: ConnectionStore, count: int) -> int:
    """Every connection's jobs and their next ``count`` slots (local time of each schedule)."""
    from hostspec.config.schedule import jobs_of

    now = datetime.now(timezone.utc)
    for name in store.names:
        for job in jobs_of(name, store.raw(name)):
            slots, moment = [], now
            for _ in range(count):
                moment = job.cron.next(moment)
                if moment is None:
                    break
                slots.append(moment.astimezone(job.cron.tz).strftime("%a %Y-%m-%d %H:%M"))
            print(f"{name:<32} {job.name:<9} {job.cron.expression:<16} {job.cron.tz.key:<16} {', '.join(slots)}")
    return 0


def cmd_schedule(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    import signal

    from hostspec.runtime.scheduler import Scheduler

    connections = connection_source(args)
    store = connections.store()
    if args.show:
        return _show_schedule(store, args.show)
    scheduler = Scheduler(connections, _kafka_config(args), _topics(args), group_id=args.group_id,
                          instance=args.instance, tick_s=args.tick)
    for job in scheduler.jobs():
        log_line = f"{job.connection}: {job.name} at {job.cron.expression!r} ({job.cron.tz.key})"
        print(f"connector-host: schedule {log_line}", file=sys.stderr)
    _serve_metrics(args, scheduler.readiness)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    scheduler.run()
    return EXIT_OK


def cmd_status(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    """Recent runs from the status topic, newest last."""
    from hostspec.transport.kafka import Follower

    follower = Follower(_kafka_config(args), _topics(args).status, from_start=True)
    runs: dict[str, dict] = {}
    try:
        for msg in follower.to_end(timeout_s=args.timeout):
            try:
                status = ev.parse_event(msg.value or b"", expected_type=ev.SYNC_STATUS).data
            except ValidationError:
                continue
            if args.connection and status["connection"] != args.connection:
                continue
            # every status of a run repeats its started_at: the latest one stands for the run
            runs[status["run_id"] or status["request_id"] or f"{msg.partition}/{msg.offset}"] = status
    finally:
        follower.close()
    recent = sorted(runs.values(), key=lambda r: r["started_at"] or r["ended_at"] or "")[-args.limit:]
    if args.json:
        json.dump(recent, sys.stdout, indent=2)
        print()
        return EXIT_OK
    for r in recent:
        c = r["counts"]
        print(f"{(r['started_at'] or '-')[:19]}  {r['connection'] or '-':<20} {r['scope'] or '-':<8} "
              f"{r['phase']:<9}{' (dry run)' if r['dry_run'] else ''}  courses {c['courses_emitted']} "
              f"(+{c['courses_unchanged']} unchanged, {c['courses_removed']} removed)  stats {c['stats_emitted']} "
              f"(+{c['stats_unchanged']} unchanged)  rejected {c['rejected']}"
              + (f"  error {r['error']['kind']}: {r['error']['message']}" if r["error"] else ""))
    print(f"{len(recent)} runs", file=sys.stderr)
    return EXIT_OK


def cmd_export_xapi(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    from hostspec.xapi import to_statement

    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    target = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    launch: dict[str, str] = {}
    exported = skipped = 0
    try:
        for line in source:
            if not line.strip():
                continue
            try:
                event = ev.parse_event(line)
            except ValidationError:
                skipped += 1
                continue
            if event.type == ev.COURSE_UPSERTED:
                launch[event.data["external_id"]] = event.data["launch_url"]
            elif event.type == ev.LEARNER_STAT_UPSERTED:
                statement = to_statement(event.data, launch_url=launch.get(event.data["course_external_id"]))
                target.write(json.dumps(statement, separators=(",", ":")) + "\n")
                exported += 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if target is not sys.stdout:
            target.close()
    print(f"{exported} xAPI statements written" + (f", {skipped} invalid lines skipped" if skipped else ""),
          file=sys.stderr)
    return EXIT_OK if not skipped else EXIT_PARTIAL


def _serve_metrics(args: argparse.Namespace, checks: Any = lambda: {}) -> None:
    """``/metrics``, ``/health`` and ``/ready`` on ``--metrics-port`` (:mod:`hostspec.ops.health`)."""
    if getattr(args, "metrics_port", None) is not None:
        from hostspec.ops import health
        server = health.serve(args.metrics_port, args.metrics_addr, checks)
        print(f"connector-host: metrics, health and readiness on http://{args.metrics_addr}:{server.port}"
              f"/metrics, /health, /ready", file=sys.stderr)


def cmd_new_provider(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    from hostspec.kit.scaffold import ScaffoldError, new_provider

    try:
        written = new_provider(args.name, args.dest, title=args.title)
    except ScaffoldError as exc:
        print(f"connector-host: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for path in written:
        print(path)
    print(f"connector-host: provider {args.name!r} created; next: cd {written[0].parent} && "
          "pip install -e '.[test]' && pytest", file=sys.stderr)
    return EXIT_OK


# -- validate --------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace, plugins: HostPluginManager) -> int:
    bad = total = 0
    counts: dict[str, int] = {}
    with open(args.file, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            total += 1
            try:
                event = ev.parse_event(line)
                counts[event.type] = counts.get(event.type, 0) + 1
            except ValidationError as exc:
                bad += 1
                print(f"{args.file}:{lineno}: {json.dumps(exc.messages)}", file=sys.stderr)
    for type_, n in sorted(counts.items()):
        print(f"{n:>9}  {type_}")
    print(f"{total - bad} of {total} events valid")
    return EXIT_OK if bad == 0 else EXIT_FAILED


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connector-host", description=plain(__doc__),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=["auto", "json", "text"],
                        default=os.environ.get("CONNECTOR_HOST_LOG_FORMAT", "auto"),
                        help="json: one object per line; text: for people; auto (default): text on a terminal")
    parser.add_argument("--log-level", type=log_level, default=_env_log_level("CONNECTOR_HOST_LOG_LEVEL"),
                        help="DEBUG, INFO, WARNING (default; INFO for run and schedule), ERROR")
    parser.add_argument("--connections", metavar="FILE",
                        help=f"connections file (default $CONNECTOR_HOST_CONNECTIONS or {DEFAULT_CONNECTIONS}); "
                             f"'{CONTROL_TOPIC}': the control topic, written by `connector-host api` and "
                             f"`connector-host connections import`")
    parser.add_argument("--policy", metavar="FILE", default=os.environ.get("CONNECTOR_HOST_POLICY"),
                        help="settings policy: allowed provider hosts and secret references (default "
                             "$CONNECTOR_HOST_POLICY; built-in: https to the providers' own hosts, each tenant's "
                             "secrets from its own CONNECTOR_SECRET_<TENANT>__* variables)")
    parser.add_argument("--allow-sandboxes", action="store_true",
                        help="development switch: connections may point at sandboxes on this machine (plain http "
                             "on a loopback address)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list installed providers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("check", help="verify a connection's credentials and ids")
    p.add_argument("--connection", required=True, metavar="NAME")
    p.set_defaults(func=cmd_check)

    def request_options(p: argparse.ArgumentParser, mode_default: str = "incremental") -> None:
        p.add_argument("--scope", choices=["catalog", "progress", "all"], default="all")
        p.add_argument("--mode", choices=["incremental", "full"], default=mode_default,
                       help=f"full: re-emit everything, even unchanged (default {mode_default})")
        p.add_argument("--dry-run", action="store_true", help="count what would be emitted; emit only statuses")
        p.add_argument("--since", type=_instant, help="replay progress with activity at or after this ISO date")
        p.add_argument("--until", type=_instant, help="replay progress with activity before this ISO date "
                                                      "(exclusive: [since, until))")
        p.add_argument("--learner", action="append", default=[], metavar="ID",
                       help="only this learner (provider id or email); repeatable")
        p.add_argument("--course", action="append", default=[], metavar="ID",
                       help="only this course (external id); repeatable")

    def metrics_options(p: argparse.ArgumentParser) -> None:
        env_port = os.environ.get("CONNECTOR_HOST_METRICS_PORT")
        p.add_argument("--metrics-port", type=port, default=int(env_port) if env_port else None, metavar="PORT",
                       help="serve Prometheus metrics on this port (default $CONNECTOR_HOST_METRICS_PORT, else off)")
        p.add_argument("--metrics-addr", default="0.0.0.0", help="address of the metrics server (default 0.0.0.0)")

    p = sub.add_parser("sync", help="run one sync now and write its events as JSON lines")
    p.add_argument("provider")
    p.add_argument("--connection", metavar="NAME")
    p.add_argument("--sandbox", action="store_true",
                   help="start the provider's in-process sandbox and sync it (no credentials needed)")
    request_options(p)
    p.add_argument("--out", default="-", metavar="FILE", help="where to write events (default stdout)")
    p.add_argument("--state", metavar="FILE", help="state database for change detection (default "
                   f"$CONNECTOR_HOST_STATE or {DEFAULT_STATE}; with --sandbox: none, every run starts fresh)")
    p.add_argument("--sandbox-contents", type=int, metavar="N")
    p.add_argument("--sandbox-learners", type=int, metavar="N")
    p.add_argument("--sandbox-enrollments", type=int, metavar="N")
    p.add_argument("--sandbox-broken-every", type=int, metavar="N",
                   help="make every Nth sandbox record lack a required field")
    p.add_argument("--sandbox-option", action="append", metavar="KEY=VALUE",
                   help="any option of the provider's sandbox (repeatable; VALUE an integer or text), "
                        "e.g. --sandbox-option seed=7 --sandbox-option courses=30")
    metrics_options(p)
    p.set_defaults(func=cmd_sync)

    def kafka_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap-servers", metavar="HOST:PORT,...",
                       help="Kafka bootstrap servers (default $KAFKA_BOOTSTRAP or 127.0.0.1:9092)")
        p.add_argument("--topic-prefix", help="prefix of every topic name (default $CONNECTOR_HOST_TOPIC_PREFIX)")

    p = sub.add_parser("run", help="the worker: consume sync requests from Kafka and emit events to Kafka")
    kafka_options(p)
    p.add_argument("--group-id", default="connector-host")
    p.add_argument("--concurrency", type=int, default=4,
                   help="syncs run at once in this process, across its partitions (default 4); one connection "
                        "never runs twice at once, so a slow tenant holds one of them and delays no other")
    p.add_argument("--session-timeout-ms", type=int, default=45_000)
    p.add_argument("--max-poll-interval-ms", type=int, default=300_000,
                   help="a worker whose poll loop stalls longer is evicted and fenced (default 300000)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds running syncs get on shutdown")
    p.add_argument("--status-every", type=int, default=5_000, help="a progress status every N records")
    p.add_argument("--worker-id", help="a stable name (e.g. the pod name): used in status events and transactional "
                                       "ids, so a restarted worker aborts its predecessor's open transactions at "
                                       "once; implies --membership static (default host-pid, dynamic)")
    p.add_argument("--membership", choices=["static", "dynamic"],
                   help="static: the group keeps this worker's partitions for it during a restart shorter than "
                        "the session timeout (a rolling deploy moves nothing); dynamic: a leaving worker hands "
                        "its partitions over at once (cooperatively: the others keep theirs)")
    p.add_argument("--batch-size", type=int, default=5_000, help="records per Kafka transaction")
    p.add_argument("--transaction-timeout-ms", type=int, default=15_000,
                   help="how long a dead worker's open transaction can delay the partition's next owner "
                        "(transactions only last while a batch is written; default 15000)")
    p.add_argument("--lookback-hours", type=float, default=48.0,
                   help="incremental progress syncs start this long before the last watermark "
                        "(a connection's progress_lookback_hours wins)")
    p.add_argument("--no-coalesce", action="store_true",
                   help="run every request on its own (default: the requests waiting behind a connection's "
                        "running sync merge into one run covering their union, each with its final status)")
    p.add_argument("--max-pending-per-connection", type=int, default=DEFAULT_PER_CONNECTION, metavar="N",
                   help="requests of one connection held at once, waiting or running (default "
                        f"{DEFAULT_PER_CONNECTION}); more are refused with a failed status of kind too_many_pending "
                        "and a dead letter, to be sent again later, so the partition is read on")
    p.add_argument("--max-pending-per-tenant", type=int, default=DEFAULT_PER_TENANT, metavar="N",
                   help="requests of one tenant held at once in one partition (default "
                        f"{DEFAULT_PER_TENANT}, below the partition's 500); more are refused the same way")
    p.add_argument("--state-dir", help="folder of the local state databases, one per owned partition; a stable "
                                       "folder lets a restarted worker restore only what changed (default: a "
                                       "temporary folder)")
    metrics_options(p)
    p.set_defaults(func=cmd_run, default_log_level="INFO")

    p = sub.add_parser("schedule", help="publish the sync requests that are due, daily by default (one leader)")
    kafka_options(p)
    p.add_argument("--group-id", default="connector-host-scheduler",
                   help="schedulers sharing it elect one leader (default connector-host-scheduler)")
    p.add_argument("--instance", default=f"{os.uname().nodename}-{os.getpid()}", help="this scheduler's name")
    p.add_argument("--show", type=int, nargs="?", const=3, default=0, metavar="N",
                   help="print every connection's jobs and their next N slots (default 3), then exit")
    p.add_argument("--tick", type=float, default=30.0, metavar="S", help="how often to look for due slots")
    metrics_options(p)
    p.set_defaults(func=cmd_schedule, default_log_level="INFO")

    p = sub.add_parser("status", help="recent runs and their counts, from the status topic")
    kafka_options(p)
    p.add_argument("--connection", metavar="NAME")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("replay", help="re-run a connection (range, learners, courses, dry run) and wait for it")
    kafka_options(p)
    p.add_argument("--connection", required=True, metavar="NAME")
    request_options(p, mode_default="full")
    p.add_argument("--allow-mass-removal", action="store_true",
                   help="remove the courses absent from the listing even when the removal guard held them "
                        "(more than the connection's max_removal_share, or all of them)")
    p.add_argument("--requested-by", default=f"replay:{os.environ.get('USER', 'unknown')}")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the result (default 3600)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("export-xapi", help="learner-stat events (JSON lines) as xAPI statements (cmi5 verbs)")
    p.add_argument("file", help="events file, - for stdin")
    p.add_argument("--out", default="-", help="statements file, one per line (default stdout)")
    p.set_defaults(func=cmd_export_xapi)

    p = sub.add_parser("request-sync", help="publish a sync request; with --wait, follow it to its end")
    kafka_options(p)
    p.add_argument("provider")
    p.add_argument("--connection", required=True, metavar="NAME")
    request_options(p)
    p.add_argument("--requested-by", default=f"cli:{os.environ.get('USER', 'unknown')}")
    p.add_argument("--wait", action="store_true", help="print progress until the run completes")
    p.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
    p.set_defaults(func=cmd_request_sync)

    p = sub.add_parser("new-provider", help="create a provider package that passes the conformance suite")
    p.add_argument("name", help="the provider's name, snake_case (e.g. udemy_business)")
    p.add_argument("--dest", default=".", help="folder to create the package folder in (default .)")
    p.add_argument("--title", help="display name (default: from the name)")
    p.set_defaults(func=cmd_new_provider)

    p = sub.add_parser("validate", help="check every line of a JSON-lines file against the event contract")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    from hostspec.cli.admin import add_parsers
    add_parsers(sub, kafka_options, _instant)
    return parser


def _env_log_level(name: str) -> str | None:
    """A log level from the environment; an invalid one is ignored with a word (never a traceback)."""
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return log_level(value)
    except argparse.ArgumentTypeError as exc:
        print(f"connector-host: ${name}: {exc}; using the default", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or getattr(args, "default_log_level", "WARNING"), args.log_format)
    return guarded("connector-host", lambda: args.func(args, get_plugin_manager()))
