"""Every fact of the publisher's contract module names its public source, or says INFERRED."""
from __future__ import annotations

import ast
import inspect
import re
import tokenize
from io import StringIO

from publisher_360learning import contract


def facts_and_their_comments():
    """(name, the comments on its lines and in the comment block right above it) per constant."""
    source = inspect.getsource(contract)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if not isinstance(node, ast.Assign) or not all(isinstance(t, ast.Name) for t in node.targets):
            continue
        name = node.targets[0].id
        if not name.isupper() or name.startswith("_") or name == "SOURCES":
            continue
        said = [comments.get(n, "") for n in range(node.lineno, node.end_lineno + 1)]
        above = node.lineno - 1
        while above >= 1 and lines[above - 1].lstrip().startswith("#") and not lines[above - 1].startswith("# --"):
            said.append(comments.get(above, ""))
            above -= 1
        yield name, " ".join(said)


def test_every_fact_names_its_source_or_is_inferred():
    keys = "|".join(re.escape(k) for k in contract.SOURCES)
    facts = dict(facts_and_their_comments())
    assert len(facts) > 40
    unmarked = [name for name, said in facts.items() if not re.search(rf"\[({keys})\]|INFERRED", said)]
    assert unmarked == []


def test_every_source_is_a_public_address():
    for key, address in contract.SOURCES.items():
        assert re.fullmatch(r"https://[\w.-]+/\S+", address), key
    assert all(k in contract.SOURCES for k in re.findall(r"\[([A-Z][\w-]+)\]", inspect.getsource(contract)))
