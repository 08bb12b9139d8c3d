"""The field rules of course and stat data as a Markdown table, generated from the event schemas
(``docs/writing-a-provider.md`` holds it between markers; a test keeps it equal, and
``python -m hostspec.cli.contracts --write`` rewrites it)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hostspec import event_schemas as s
from hostspec.contracts import ORDER_RULES, field_schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing-a-provider.md"
START, END = "<!-- field-rules:start (generated: python -m hostspec.cli.contracts --write) -->", "<!-- field-rules:end -->"
HOST_SET = {"tenant", "connection", "provider", "group_id", "locked_fields", "fingerprint"}
SCHEMAS = (("Course data (`map_course`)", s.CourseDataSchema),
           ("Learner-stat data (`map_stat`)", s.LearnerStatDataSchema))
EXTRA = {
    "external_id": "the course's id at the provider, as text; the `record_id` hook names catalog items the same way",
    "language": "a language code, `en`, `pt_BR`, `zh_Hant` (not `English`)",
    "launch_url": "where START sends the learner",
    "duration_minutes": "whole minutes (round a provider's hours or seconds)",
    "time_spent_seconds": "whole seconds",
    "completed_at": "required when `completed` (derive it from the last activity, provenance `derived`, when the "
                    "API has none); null otherwise",
    "progress_percent": "100 when `completed`; 0 or null when `not_started`",
    "provenance": "per field: `native` (the API says it), `derived` (computed), `absent`, `retained`",
    "as_of": "when the provider's data was read (`context.now`): not part of the fingerprint",
    "attempt_id": "stable across syncs: the same attempt keeps its id",
    "learner": "`{\"email\": e-mail or null, \"provider_id\": the learner's id at the provider}`",
}


def _describe(schema: dict[str, Any]) -> str:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    words = []
    if "format" in schema:
        words.append({"date-time": "ISO 8601 date-time string with a zone (`2026-01-31T09:00:00Z`), never a "
                                   "datetime object", "email": "e-mail address"}.get(schema["format"], schema["format"]))
    elif kinds:
        words.append(" or ".join(k for k in kinds if k != "null") or "null")
    if "enum" in schema:
        words.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"] if v is not None))
    if "pattern" in schema and "enum" not in schema:
        words.append(f"matching `{schema['pattern']}`")
    for low, high, unit in (("minimum", "maximum", ""), ("minLength", "maxLength", " characters")):
        if low in schema or high in schema:
            words.append(f"{schema.get(low, '…')} to {schema.get(high, '…')}{unit}")
    if schema.get("type") == "array" or "array" in kinds:
        items = schema.get("items", {})
        inner = list(items.get("properties", {})) if items.get("type") == "object" else None
        words.append("list of " + (f"objects ({', '.join(inner)})" if inner else _describe(items)))
    if "null" in kinds:
        words.append("or null")
    return "; ".join(w for w in words if w)


def table() -> str:
    out = []
    for title, cls in SCHEMAS:
        out += [f"**{title}**", "", "| field | required | value |", "|---|---|---|"]
        schema = cls()
        for name, field in schema.fields.items():
            if name in HOST_SET:
                continue
            value = _describe(field_schema(field))
            if name in EXTRA:
                value = f"{value}; {EXTRA[name]}" if value else EXTRA[name]
            cell = value.replace("|", "\\|")
            out.append(f"| `{name}` | {'yes' if field.required else 'no'} | {cell} |")
        if cls in ORDER_RULES:
            out += ["", f"Also: {ORDER_RULES[cls]}."]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def rendered_doc(text: str) -> str:
    """``text`` (the guide) with its generated section replaced by the current table."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{DOC.name} has no {START} … {END} section")
    return pattern.sub(lambda _m: f"{START}\n{table()}{END}", text)


__all__ = ["DOC", "rendered_doc", "table"]
