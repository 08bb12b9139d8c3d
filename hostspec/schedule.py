"""When each connection syncs: its ``schedule`` table in the connections file, and the pure
decision of which requests are due.

.. code-block:: toml

    [connections.acme-coursera.schedule]
    timezone = "Europe/Paris"        # default Europe/Paris (360Learning's connectors run on CET)
    catalog = "45 8 * * *"           # default: daily 08:45, like 360Learning's Coursera connector
    progress = "0 9 * * *"           # default: daily 09:00, after the catalog
    full = "0 6 * * 0"               # optional: a weekly full sync (not-started enrollments too)

A job set to ``"off"`` does not run; ``enabled = false`` on the connection stops all of them.

A slot is one firing time of one job. Its request id is derived from connection, job and slot
(UUIDv5), so two schedulers publishing the same slot publish the same request, which the worker
runs once. Only the latest slot of a job is ever due: a scheduler that was down for three days
catches up once, not three times.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from .cron import Cron, CronError
from .errors import ConfigError

DEFAULTS = {"timezone": "Europe/Paris", "catalog": "45 8 * * *", "progress": "0 9 * * *", "full": "off"}
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


def due(jobs: list[Job], last: Mapping[str, str], now: datetime) -> list[Slot]:
    """Slots to publish now: each job's latest slot, when it is later than the last one published."""
    out = []
    for job in jobs:
        at = job.cron.previous(now)
        if at is not None and (job.key not in last or at.isoformat() > last[job.key]):
            out.append(Slot(job, at))
    return out
