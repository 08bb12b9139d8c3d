"""Validation messages as the admin API answers them: flat, ``{"field.path": [messages]}``.

marshmallow nests the messages of a nested field (``{"settings": {"client_id": [...]}}``) and of
a list's items (``{"courses": {0: [...]}}``); a generated client reads one map of strings to lists
of strings far better than a recursive shape, so every answer's ``errors`` is flattened here: a
nested field is named by its dot-separated path (``settings.client_id``, ``courses.0``), a
message about the whole body by ``_schema``.
"""
from __future__ import annotations

from typing import Any, Mapping

WHOLE = "_schema"


def flat(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """``messages`` (marshmallow's, or any nesting of maps, lists and strings) as one map."""
    out: dict[str, list[str]] = {}

    def add(path: str, items: list[str]) -> None:
        out.setdefault(path, []).extend(items)

    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            for p, items in flat(value, path).items():
                add(p, items)
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            if isinstance(item, (Mapping, list, tuple)):
                for p, items in flat(item, prefix).items():
                    add(p, items)
            else:
                add(prefix or WHOLE, [str(item)])
    elif messages is not None:
        add(prefix or WHOLE, [str(messages)])
    return out


def count(errors: Mapping[str, list[str]]) -> int:
    """How many messages a flat map holds."""
    return sum(len(items) for items in errors.values())


__all__ = ["WHOLE", "count", "flat"]
