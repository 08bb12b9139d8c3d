"""Size limits for what the host copies from its input into dead letters and statuses.

A dead letter quotes what it refuses (a request's raw bytes, a provider record, marshmallow's
messages), and marshmallow repeats every unknown key it meets: left alone, the dead letter of a
large input is larger than the input and larger than Kafka accepts, and the partition it came
from stops behind it. Everything quoted therefore goes through :func:`bounded` (long strings cut
with a hash of the original, long lists and mappings shortened, deep nesting flattened) and the
whole event through :func:`fit`, which replaces the largest quoted fields by a summary when the
event is still too big. A cut value always says so, and the hash lets an operator match it with
the original.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

TEXT_LIMIT = 2_000      # characters kept of one string
ITEMS_LIMIT = 100       # items kept of one list or mapping
DEPTH_LIMIT = 8         # nesting kept
EVENT_LIMIT = 256_000   # bytes of one dead letter or status, well under Kafka's 1 MB default


def digest(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def cut(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` itself when short enough, else its start and a note with its length and hash."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[cut: {len(text)} characters, sha256 {digest(text)}]"


def bounded(value: Any, *, text_limit: int = TEXT_LIMIT, items: int = ITEMS_LIMIT, depth: int = DEPTH_LIMIT) -> Any:
    """A JSON-safe copy of ``value`` within the limits (strings, item counts, nesting)."""
    if isinstance(value, str):
        return cut(value, text_limit)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth <= 0:
        return cut(json.dumps(value, default=str), text_limit)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i == items:
                out["…"] = f"{len(value) - items} more keys cut"
                break
            out[cut(str(k), 200)] = bounded(v, text_limit=text_limit, items=items, depth=depth - 1)
        return out
    if isinstance(value, (list, tuple)):
        kept = [bounded(v, text_limit=text_limit, items=items, depth=depth - 1) for v in value[:items]]
        if len(value) > items:
            kept.append(f"… {len(value) - items} more items cut")
        return kept
    return cut(repr(value), text_limit)


def size_of(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8"))


def fit(data: dict[str, Any], fields: Iterable[str], limit: int = EVENT_LIMIT) -> dict[str, Any]:
    """``data`` with ``fields`` (in that order) replaced by a summary until it is under ``limit``."""
    if size_of(data) <= limit:
        return data
    data = dict(data)
    for name in fields:
        value = data.get(name)
        if value is None:
            continue
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
        data[name] = (f"[cut: {len(text)} characters, sha256 {digest(text)}]" if isinstance(value, str)
                      else {"cut": True, "characters": len(text), "sha256": digest(text)})
        if size_of(data) <= limit:
            break
    return data


__all__ = ["bounded", "cut", "digest", "fit", "size_of"]
