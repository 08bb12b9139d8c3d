"""Lifetime time spent and completions of one learner in one course, from per-window reports.

LinkedIn's SECONDS_VIEWED and COMPLETIONS count the report's window only (contract REPORTS);
360Learning's time spent is a lifetime total. The provider's memory (``context.state``) keeps,
per learner and course, the values of the windows it read, keyed by window, and sends their sum:

* ``days``: the value of each UTC day read as a ``day`` window, keyed by the day's start. Reading
  a day again (a retry, a replay, the next run's look-back) replaces it, so nothing counts twice.
* ``base``: the first sync's ``history`` window (or an older range first seen by a ``listing``),
  with its range. Days inside the range are dropped when it is set and skipped afterwards.
* ``sent``: the highest totals sent so far. A total never goes below it, and a completion seen in
  any window stays (a report corrected downwards cannot take time or a completion back).

A part's values: ``s`` seconds, ``c`` completions, ``p`` progress (as of the part's last
engagement), ``f``/``l`` first/last engagement, ``d`` first completion (epoch ms).
"""
from __future__ import annotations

from typing import Any, Mapping

from . import contract
from .mapping import activities_by_type, number
from .report_windows import Window

HORIZON = "horizon"          # the connection's memory key: where history ends and day windows begin


def pair_key(identity: str) -> str:
    return f"pair:{identity}"


def window_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """What one report row says about its window."""
    by_type = activities_by_type(row)

    def value(kind: str) -> float | None:
        return number(by_type.get(kind, {}).get("engagementValue"))

    def moments(key: str) -> list[int]:
        return [int(m) for a in by_type.values() if (m := number(a.get(key))) is not None and m > 0]

    done = number(by_type.get(contract.COMPLETIONS, {}).get("lastEngagedAt"))
    completions = value(contract.COMPLETIONS)
    firsts, lasts = moments("firstEngagedAt"), moments("lastEngagedAt")
    return {"s": value(contract.SECONDS_VIEWED), "c": completions, "p": value(contract.PROGRESS_PERCENTAGE),
            "f": min(firsts, default=None), "l": max(lasts, default=None),
            "d": int(done) if done and completions and completions >= 1 else None}


def remember(memory: Mapping[str, Any] | None, window: Window, values: Mapping[str, Any]) -> dict[str, Any]:
    """``memory`` after reading ``values`` for its learner and course in ``window``."""
    out = {"days": {}, **(memory or {})}
    base = out.get("base")
    if window.kind == "day":
        if not (base and base["from"] <= window.start_ms < base["to"]):
            out["days"] = {**out["days"], str(window.start_ms): dict(values)}
        return out
    if base is None or (window.kind == "history" and (base["from"], base["to"]) == (window.start_ms, window.end_ms)):
        out["base"] = {"from": window.start_ms, "to": window.end_ms, **values}        # first seen, or read again
    elif window.kind == "history" and base["to"] == window.start_ms:              # the next part of a long history
        out["base"] = {**_combine([base, values]), "from": base["from"], "to": window.end_ms}
    else:
        return out                                                                # already counted
    out["days"] = {day: v for day, v in out["days"].items() if not window.start_ms <= int(day) < window.end_ms}
    return out


def total(memory: Mapping[str, Any]) -> dict[str, Any]:
    """The lifetime values of ``memory``, never below what was sent before."""
    parts = ([memory["base"]] if memory.get("base") else []) + list((memory.get("days") or {}).values())
    now, sent = _combine(parts), memory.get("sent") or {}
    for key in ("s", "c"):
        if sent.get(key) is not None and (now[key] is None or now[key] < sent[key]):
            now[key] = sent[key]
    if sent.get("d") is not None and (now["d"] is None or sent["d"] < now["d"]):
        now["d"] = sent["d"]
    return now


def lifetime_row(row: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with its window's seconds, progress and completions replaced by lifetime ``values``."""
    kept = [a for a in row.get("activities") or [] if not (
        isinstance(a, Mapping) and a.get("engagementType") in (contract.SECONDS_VIEWED, contract.COMPLETIONS,
                                                               contract.PROGRESS_PERCENTAGE))]
    span = {k: v for k, v in (("firstEngagedAt", values["f"]), ("lastEngagedAt", values["l"])) if v is not None}
    made = [{"engagementType": kind, "engagementValue": values[key], "engagementMetricQualifier": contract.TOTAL,
             **span} for kind, key in ((contract.SECONDS_VIEWED, "s"), (contract.PROGRESS_PERCENTAGE, "p"))
            if values[key] is not None]
    if values["c"] and values["c"] >= 1:
        made.append({"engagementType": contract.COMPLETIONS, "engagementValue": values["c"],
                     "engagementMetricQualifier": contract.TOTAL,
                     **({"firstEngagedAt": values["d"], "lastEngagedAt": values["d"]} if values["d"] else {})})
    return {**row, "activities": made + kept}


def _combine(parts: list[Mapping[str, Any]]) -> dict[str, Any]:
    def summed(key: str) -> float | None:
        given = [p[key] for p in parts if p.get(key) is not None]
        return sum(given) if given else None

    def least(key: str) -> int | None:
        return min((p[key] for p in parts if p.get(key) is not None), default=None)

    latest = max((p for p in parts if p.get("p") is not None), key=lambda p: p.get("l") or 0, default=None)
    return {"s": summed("s"), "c": summed("c"), "p": latest["p"] if latest else None, "f": least("f"),
            "l": max((p["l"] for p in parts if p.get("l") is not None), default=None), "d": least("d")}
