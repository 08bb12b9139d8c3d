"""The template a provider author starts from uses only the kit's documented, exported names:
``hostspec``'s ``__all__`` and the helper modules' ``__all__``, never a private attribute of
the sandbox building blocks."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from hostspec.kit.scaffold import TEMPLATE

KIT_MODULES = {"hostspec", "hostspec.kit.paging", "hostspec.kit.http", "hostspec.kit.sandboxes", "hostspec.kit.testing"}
KIT_EXTRAS = {"hostspec.config.connections": {"SecretField"}}
PRIVATE_USE = re.compile(r"\.(_bind|_reply|_start_reply|_transport_fault|_rules|_httpd)\b")


def _exported(module: str) -> set[str]:
    return set(getattr(importlib.import_module(module), "__all__", ())) | KIT_EXTRAS.get(module, set())


@pytest.mark.parametrize("source", sorted(TEMPLATE.rglob("*.py.tmpl")), ids=lambda p: p.name)
def test_the_template_uses_only_exported_names(source: Path):
    text = source.read_text(encoding="utf-8").replace("{{name}}", "acme").replace("{{title}}", "Acme") \
        .replace("{{class_name}}", "Acme")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hostspec"):
            assert node.module in KIT_MODULES | set(KIT_EXTRAS), f"{source.name}: imports from {node.module}"
            names = {a.name for a in node.names}
            assert names <= _exported(node.module), f"{source.name}: {names - _exported(node.module)} " \
                                                    f"not exported by {node.module}"
    assert not PRIVATE_USE.search(text), f"{source.name}: uses {PRIVATE_USE.search(text).group(0)}"
