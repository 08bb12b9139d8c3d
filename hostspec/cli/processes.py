"""``connector-host run`` and ``schedule``: the long-running processes, the worker that runs the
requested syncs and the scheduler that requests them when due."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import datetime, timezone
from typing import Any

from hostspec.cli.options import EXIT_OK, kafka_options, metrics_options, serve_metrics
from hostspec.cli.sources import connection_source, kafka_config, topics
from hostspec.config.connections import ConnectionStore
from hostspec.config.schedule import jobs_of
from hostspec.engine.plugins import HostPluginManager
from hostspec.runtime.fairness import DEFAULT_PER_CONNECTION, DEFAULT_PER_TENANT
from hostspec.runtime.scheduler import Scheduler
from hostspec.runtime.worker import Worker, WorkerSettings


# -- run -------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, plugins: HostPluginManager) -> int:
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
    worker = Worker(plugins, connections, kafka_config(args), topics(args), settings)

    def on_signal(signum: int, _frame: object) -> None:
        if worker.stopping:  # second signal: leave now; uncommitted requests are redone
            os._exit(130)
        print(f"connector-host: {signal.Signals(signum).name}: finishing running syncs "
              f"(up to {args.grace:.0f}s; again to quit now)", file=sys.stderr)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve_metrics(args, worker.readiness)
    worker.run()
    return EXIT_OK


# -- schedule --------------------------------------------------------------------------------------
def _show_schedule(store: ConnectionStore, count: int) -> int:
    """Every connection's jobs and their next ``count`` slots (local time of each schedule)."""
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
    connections = connection_source(args)
    store = connections.store()
    if args.show:
        return _show_schedule(store, args.show)
    scheduler = Scheduler(connections, kafka_config(args), topics(args), group_id=args.group_id,
                          instance=args.instance, tick_s=args.tick)
    for job in scheduler.jobs():
        log_line = f"{job.connection}: {job.name} at {job.cron.expression!r} ({job.cron.tz.key})"
        print(f"connector-host: schedule {log_line}", file=sys.stderr)
    serve_metrics(args, scheduler.readiness)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    scheduler.run()
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("run", help="the worker: consume sync requests from Kafka and emit events to Kafka")
    kafka_options(p)
    p.add_argument("--group-id", default="connector-host",
                   help="the consumer group the workers share (default connector-host)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="syncs run at once in this process, across its partitions (default 4); one connection "
                        "never runs twice at once, so a slow tenant holds one of them and delays no other")
    p.add_argument("--session-timeout-ms", type=int, default=45_000,
                   help="a worker silent longer leaves the group and its partitions move (default 45000)")
    p.add_argument("--max-poll-interval-ms", type=int, default=300_000,
                   help="a worker whose poll loop stalls longer is evicted and fenced (default 300000)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds running syncs get on shutdown (default 30)")
    p.add_argument("--status-every", type=int, default=5_000, help="a progress status every N records (default 5000)")
    p.add_argument("--worker-id", help="a stable name (e.g. the pod name): used in status events and transactional "
                                       "ids, so a restarted worker aborts its predecessor's open transactions at "
                                       "once; implies --membership static (default host-pid, dynamic)")
    p.add_argument("--membership", choices=["static", "dynamic"],
                   help="static: the group keeps this worker's partitions for it during a restart shorter than "
                        "the session timeout (a rolling deploy moves nothing); dynamic: a leaving worker hands "
                        "its partitions over at once (cooperatively: the others keep theirs)")
    p.add_argument("--batch-size", type=int, default=5_000, help="records per Kafka transaction (default 5000)")
    p.add_argument("--transaction-timeout-ms", type=int, default=15_000,
                   help="how long a dead worker's open transaction can delay the partition's next owner "
                        "(transactions only last while a batch is written; default 15000)")
    p.add_argument("--lookback-hours", type=float, default=48.0,
                   help="incremental progress syncs start this long before the last watermark "
                        "(a connection's progress_lookback_hours wins; default 48)")
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
    p.add_argument("--instance", default=f"{os.uname().nodename}-{os.getpid()}", help="this scheduler's name (default HOST-PID)")
    p.add_argument("--show", type=int, nargs="?", const=3, default=0, metavar="N",
                   help="print every connection's jobs and their next N slots (default 3), then exit")
    p.add_argument("--tick", type=float, default=30.0, metavar="S", help="seconds between looks for due slots (default 30)")
    metrics_options(p)
    p.set_defaults(func=cmd_schedule, default_log_level="INFO")
