"""Golden records: raw API records a provider ships with the normalized result it expects.

A golden file is JSON beside the provider's tests (``tests/golden/*.json``)::

    {"courses": [{"name": "duration in minutes", "raw": {...}, "expected": {...}}],
     "stats":   [{"name": "grade scale 0-1", "raw": {...}, "expected": {...}}]}

Each raw record goes through the provider's ``map_course`` / ``map_stat`` and the host's rules,
as the engine applies them (identity added, :func:`hostspec.engine.catalog.describe_course` for a course,
:func:`hostspec.rules.keep_completion` for a stat, then the event contract). ``expected`` names only
the fields that matter: every field it holds must equal the result's (nested mappings compare
field by field); fields it leaves out are not compared. Add one per unit or scale conversion the
mapping does (docs/writing-a-provider.md, "Golden records").
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec import rules
from hostspec.engine.catalog import LOCKED_FIELDS, describe_course
from hostspec.errors import RecordRejected
from hostspec.provider import Connection, SyncContext

KINDS = {"courses": ("map_course", ev.COURSE_UPSERTED), "stats": ("map_stat", ev.LEARNER_STAT_UPSERTED)}
MISSING = "<missing>"


def load_golden(where: str | Path) -> Iterator[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]:
    """``(label, kind, raw, expected)`` of every golden record under ``where`` (a file or a folder
    of ``*.json``); ``kind`` is ``courses`` or ``stats``."""
    where = Path(where)
    files = sorted(where.glob("*.json")) if where.is_dir() else [where]
    for path in files:
        content = json.loads(path.read_text(encoding="utf-8"))
        unknown = set(content) - set(KINDS)
        if unknown:
            raise ValueError(f"{path.name}: unknown keys {sorted(unknown)} (expected {sorted(KINDS)})")
        for kind in KINDS:
            for i, case in enumerate(content.get(kind, [])):
                label = f"{path.name} {kind}[{i}]" + (f" ({case['name']})" if case.get("name") else "")
                yield label, kind, case["raw"], case["expected"]


def normalize(hooks: Any, kind: str, raw: Mapping[str, Any], connection: Connection,
              context: SyncContext, provider: str) -> dict[str, Any]:
    """``raw`` through the provider's mapping and the host's rules (what the engine would emit as data).

    :raise AssertionError: the provider skipped or rejected the record, or the result breaks the
        event contract.
    """
    hook, type_ = KINDS[kind]
    try:
        mapped = getattr(hooks, hook)(record=raw, connection=connection, context=context)
    except RecordRejected as exc:
        raise AssertionError(f"{hook} rejected the record: {exc.messages}") from None
    if mapped is None:
        raise AssertionError(f"{hook} skipped the record (returned None)")
    identity = {"tenant": connection.tenant, "connection": connection.name, "provider": provider,
                "group_id": connection.group_id}
    data = {**identity, **({"locked_fields": LOCKED_FIELDS} if kind == "courses" else {}), **mapped}
    data.pop("fingerprint", None)
    if kind == "courses":
        describe_course(data, context.now)
    else:
        data = rules.keep_completion(None, data)
    data["fingerprint"] = ev.fingerprint(data, type_)
    try:
        ev.validate_data(type_, data)
    except ValidationError as exc:
        raise AssertionError(f"the normalized record breaks the event contract: {exc.messages}") from None
    return data


def diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Field-by-field differences, one line each: ``field: expected X, got Y``."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        out = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else str(key)
            out += diff(value, actual[key], where) if key in actual else [
                f"{where}: expected {json.dumps(value, default=str)}, got {MISSING}"]
        return out
    if _same(expected, actual):
        return []
    return [f"{path or '(record)'}: expected {json.dumps(expected, default=str)}, "
            f"got {json.dumps(actual, default=str)}"]


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return abs(expected - actual) <= 1e-9 * max(1.0, abs(expected))
    if isinstance(expected, str) and isinstance(actual, str) and expected != actual:
        return _same_instant(expected, actual)
    return expected == actual


def _same_instant(a: str, b: str) -> bool:
    try:
        return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(b.replace("Z", "+00:00"))
    except ValueError:
        return False


def check_golden(where: str | Path, hooks: Any, connection: Connection, context: SyncContext,
                 provider: str) -> int:
    """Run every golden record under ``where``; the number checked.

    :raise AssertionError: naming each mismatching record and its differing fields.
    """
    failures, count = [], 0
    for label, kind, raw, expected in load_golden(where):
        count += 1
        try:
            actual = normalize(hooks, kind, raw, connection, context, provider)
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")
            continue
        lines = diff(expected, actual)
        if lines:
            failures.append(f"{label}: the normalized record differs:\n    " + "\n    ".join(lines))
    if failures:
        raise AssertionError("golden records do not match:\n  " + "\n  ".join(failures))
    return count


__all__ = ["check_golden", "diff", "load_golden", "normalize"]
