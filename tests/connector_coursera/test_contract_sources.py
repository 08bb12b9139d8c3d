"""Every fact in the Coursera contract module names its public source, or says it is INFERRED."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from connector_coursera import contract

SOURCE = Path(contract.__file__).read_text(encoding="utf-8")
PINNED = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/blob/[0-9a-f]{40}/\S+$")


def marks(text: str) -> set[str]:
    found = set(re.findall(r"\[([A-Z0-9-]+)[ \]]", text))
    return found | ({"INFERRED"} if "INFERRED" in text else set())


def facts() -> list[tuple[str, str]]:
    """(name, text: the statement and the comment lines right above it) per top-level constant."""
    lines = SOURCE.splitlines()
    out = []
    for node in ast.parse(SOURCE).body:
        if not isinstance(node, ast.Assign):
            continue
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if not names or not names[0].isupper() or names[0] == "SOURCES" or names[0].startswith("_"):
            continue
        first = node.lineno - 1
        while first > 0 and lines[first - 1].startswith("# ") and not lines[first - 1].startswith("# --"):
            first -= 1
        out.append((names[0], "\n".join(lines[first:node.end_lineno])))
    return out


def test_every_fact_names_a_source_or_says_inferred():
    found = facts()
    assert len(found) >= 35
    unmarked = [name for name, text in found if not marks(text) & (set(contract.SOURCES) | {"INFERRED"})]
    assert not unmarked, f"facts with neither a source nor INFERRED: {unmarked}"


def test_every_mark_names_a_listed_source_and_every_source_is_a_pinned_public_address():
    used = set().union(*(marks(text) for _, text in facts())) - {"INFERRED"}
    assert used == set(contract.SOURCES)
    assert all(PINNED.match(address) for address in contract.SOURCES.values()), contract.SOURCES
