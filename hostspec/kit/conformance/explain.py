"""What a conformance failure says about a run: its outcome, its error and its first dead letters
(used by :mod:`hostspec.kit.testing` and the checks it mixes in)."""
from __future__ import annotations

import json
from typing import Any

from hostspec import events as ev
from hostspec.engine.sinks import MemorySink

DEAD_LETTERS_SHOWN = 5


def explain(sink: MemorySink, report: Any, limit: int = DEAD_LETTERS_SHOWN) -> str:
    """A run's outcome, its error and its first dead letters with their reasons (failure messages)."""
    lines = [f"the run ended {report.outcome}" + (f": {report.error}" if report.error else "")
             + (f" ({report.warning['message']})" if getattr(report, "warning", None) else "")]
    letters = sink.of_type(ev.RECORD_REJECTED)
    for event in letters[:limit]:
        d = event.data
        lines.append(f"  dead letter ({d['stage']}) record {d['record_id']!r}: {d['reason']}: "
                     f"{json.dumps(d['errors'], default=str)[:500]}")
    if len(letters) > limit:
        lines.append(f"  … and {len(letters) - limit} more dead letters")
    return "\n".join(lines)


__all__ = ["DEAD_LETTERS_SHOWN", "explain"]
