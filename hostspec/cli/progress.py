"""How a run's progress shows: a bar per scope on a terminal, one line per status of a followed
request, and a finished sync's summary."""
from __future__ import annotations

from typing import Any, TextIO

from tqdm import tqdm

from hostspec.engine.report import RunReport


class ProgressBars:
    """A progress bar per scope on a terminal (tqdm): count, rate and, when the provider said how
    many records a fetch holds, percent and time left. Silent when the output is not a terminal."""

    SCOPES = (("catalog", "catalog_fetched"), ("progress", "progress_fetched"))

    def __init__(self, stream: TextIO):
        self.stream, self.enabled = stream, bool(getattr(stream, "isatty", lambda: False)())
        self.bars: dict[str, Any] = {}

    def __call__(self, report: RunReport) -> None:
        if not self.enabled:
            return
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
    for scope, counter in ProgressBars.SCOPES:
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
