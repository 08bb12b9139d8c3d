"""What a run did: its counts and its report, and the outcome a request's status tells."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime


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


def outcome(report: RunReport, scopes: tuple[str, ...]) -> str:
    """``failed`` when one of ``scopes`` failed, else ``partial`` (rejections, a held removal) or
    ``completed``."""
    if report.failed_scopes & set(scopes):
        return "failed"
    return "partial" if report.counts.rejected or report.warning else "completed"


def status_counts(counts: Counts) -> dict[str, int]:
    """A status's counts; ``removals_held`` only when there are some (consumers of the first v1
    schema know the other nine keys only)."""
    out = asdict(counts)
    if not out["removals_held"]:
        del out["removals_held"]
    return out


def count(counts: Counts, what: str, outcome: str) -> None:
    """Count one entity's ``outcome`` (emitted, unchanged) under ``what`` (courses, stats)."""
    if outcome == "emitted":
        setattr(counts, f"{what}_emitted", getattr(counts, f"{what}_emitted") + 1)
    elif outcome == "unchanged":
        setattr(counts, f"{what}_unchanged", getattr(counts, f"{what}_unchanged") + 1)


__all__ = ["Counts", "RunReport", "count", "outcome", "status_counts"]
