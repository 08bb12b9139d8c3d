"""When each connection syncs: its ``schedule`` table in the connections file, and the pure
decision of which requests are due.

.. code-block:: toml

    [connections.acme-coursera.schedule]
    timezone = "Europe/Paris"        # default Europe/Paris (360Learning's connectors run on CET)
    window = "07:00-09:00"           # default: where the default slots of all connections spread
    progress_delay = 20              # default: minutes from a connection's catalog to its progress sync
    catalog = "45 8 * * *"           # default: daily, at this connection's minute of the window
    progress = "5 9 * * 1-6"         # default: Monday to Saturday, progress_delay after the catalog
    full = "5 9 * * 0"               # default: Sunday, a full sync instead (what no incremental sees)

Defaults are spread: each connection gets its own minute of ``window`` (murmur2 of its name, so
the same connection always gets the same minute), and a thousand tenants do not all publish at
08:45. A job set to ``"off"`` does not run; ``enabled = false`` on the connection stops all of them.

A slot is one firing time of one job. Its request id is derived from connection, job and slot
(UUIDv5), so two schedulers publishing the same slot publish the same request, which the worker
runs once. Only the latest slot of a job is ever due: a scheduler that was down for three days
catches up once, not three times.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from hostspec.config.cron import Cron, CronError
from hostspec.errors import ConfigError
from hostspec.transport.murmur2 import partition_for

DEFAULTS = {"timezone": "Europe/Paris", "window": "07:00-09:00", "progress_delay": 20,
            "catalog": None, "progress": None, "full": None}   # None: spread over the window (default_crons)
JOBS = {"catalog": ("catalog", "incremental"), "progress": ("progress", "incremental"), "full": ("all", "full")}
SLOT_NAMESPACE = uuid.UUID("0b4f5c0e-2d1c-4e55-8f3a-6c8d1f2a9e01")


@dataclass(frozen=True)
class Job:
    connection: str
    provider: str
    name: str            # catalog | progress | full
    scope: str
    mode: str
    cron: Cron

    @property
    def key(self) -> str:
        return f"{self.connection}/{self.name}"


@dataclass(frozen=True)
class Slot:
    job: Job
    at: datetime

    @property
    def request_id(self) -> str:
        return str(uuid.uuid5(SLOT_NAMESPACE, f"{self.job.key}/{self.at.isoformat()}"))


def jobs_of(name: str, entry: Mapping[str, Any], *, source: str = "connections file") -> list[Job]:
    """The scheduled jobs of one connection entry (none when ``enabled = false``)."""
    if not entry.get("enabled", True):
        return []
    table = entry.get("schedule") or {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: connection {name!r}: schedule must be a table")
    unknown = set(table) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"{source}: connection {name!r}: unknown schedule keys {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(DEFAULTS)}")
    settings = {**DEFAULTS, **table}
    try:
        spread = default_crons(name, str(settings["window"]), settings["progress_delay"],
                               catalog=table.get("catalog"))
    except ValueError as exc:
        raise ConfigError(f"{source}: connection {name!r}: schedule: {exc}") from None
    settings = {**spread, **{k: v for k, v in settings.items() if v is not None}}
    jobs = []
    for job, (scope, mode) in JOBS.items():
        expression = settings[job]
        if expression == "off":
            continue
        try:
            cron = Cron(str(expression), str(settings["timezone"]))
        except CronError as exc:
            raise ConfigError(f"{source}: connection {name!r}: schedule.{job}: {exc}") from None
        jobs.append(Job(name, str(entry.get("provider")), job, scope, mode, cron))
    return jobs


def default_crons(connection: str, window: str, progress_delay: Any, *, catalog: Any = None) -> dict[str, str]:
    """The connection's default jobs: its catalog at its own minute of ``window``, progress
    ``progress_delay`` minutes later from Monday to Saturday, a full sync then on Sunday. When the
    connection sets its catalog to a daily time (``M H * * *``), progress follows that instead."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", window.strip())
    if not match:
        raise ValueError(f"window {window!r} must look like 07:00-09:00")
    h1, m1, h2, m2 = (int(x) for x in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if not (0 <= start < end <= 24 * 60 and m1 < 60 and m2 < 60):
        raise ValueError(f"window {window!r} must be a span within one day")
    if isinstance(progress_delay, bool) or not isinstance(progress_delay, int) or not 0 < progress_delay < 24 * 60:
        raise ValueError(f"progress_delay {progress_delay!r} must be a number of minutes (1 to 1439)")
    if end + progress_delay > 24 * 60:
        raise ValueError(f"window {window!r} plus progress_delay {progress_delay} must end before midnight "
                         f"(a connection's progress runs the day of its catalog)")
    daily = re.fullmatch(r"\s*(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+\*\s*", catalog) if isinstance(catalog, str) else None
    if daily and int(daily.group(1)) < 60 and int(daily.group(2)) < 24:
        at = int(daily.group(2)) * 60 + int(daily.group(1))
    else:
        at = start + partition_for(connection.encode("utf-8"), end - start)
    progress = min(at + progress_delay, 24 * 60 - 1)
    return {"catalog": f"{at % 60} {at // 60} * * *",
            "progress": f"{progress % 60} {progress // 60} * * 1-6",
            "full": f"{progress % 60} {progress // 60} * * 0"}


NEW_JOB_CATCH_UP = timedelta(days=1)    # a job never published before catches up a slot this recent only


def due(jobs: list[Job], last: Mapping[str, str], now: datetime) -> list[Slot]:
    """Slots to publish now: each job's latest slot, when it is later than the last one published.

    A job never published before (a new connection, a job new after an upgrade) catches up its
    latest slot only when it is less than a day old, and a ``full`` job not at all: a new
    connection's first syncs fetch everything anyway, and deploying the weekly default must not
    fire every connection's last Sunday at once (found by review)."""
    out = []
    for job in jobs:
        at = job.cron.previous(now)
        if at is None:
            continue
        if job.key in last:
            if at.isoformat() > last[job.key]:
                out.append(Slot(job, at))
        elif job.name != "full" and now - at <= NEW_JOB_CATCH_UP:
            out.append(Slot(job, at))
    return out
