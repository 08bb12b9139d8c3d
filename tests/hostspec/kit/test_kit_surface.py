"""The template a provider author starts from, and the providers themselves, use only the kit's
documented, exported names: ``hostspec``'s ``__all__`` (the contract) and ``hostspec.kit``'s (the
toolbox), plus the conformance suite (``hostspec.kit.testing``) in tests; never a private
attribute of the sandbox building blocks."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from hostspec.kit.scaffold import TEMPLATE

KIT_MODULES = {"hostspec", "hostspec.kit", "hostspec.kit.testing"}
PRIVATE_USE = re.compile(r"\.(_bind|_reply|_start_reply|_transport_fault|_rules|_httpd)\b")
ROOT = Path(__file__).resolve().parents[3]
PROVIDER_SOURCES = sorted(p for package in ("connector_coursera", "connector_linkedin")
                          for p in (ROOT / package).rglob("*.py"))


def _exported(module: str) -> set[str]:
    return set(getattr(importlib.import_module(module), "__all__", ()))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _host_imports(tree: ast.AST) -> list[tuple[str, set[str]]]:
    """(module, names) of every import of ``hostspec`` or a module of it (``import x``: no names)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                node.module.split(".")[0] == "hostspec":
            out.append((node.module, {a.name for a in node.names}))
        elif isinstance(node, ast.Import):
            out += [(a.name, set()) for a in node.names if a.name.split(".")[0] == "hostspec"]
    return out


def _check(where: str, tree: ast.AST) -> None:
    for module, names in _host_imports(tree):
        assert module in KIT_MODULES, f"{where}: imports from {module}"
        assert not {n for n in names if _private(n)}, f"{where}: imports private names {names}"
        assert names <= _exported(module), f"{where}: {names - _exported(module)} not exported by {module}"


@pytest.mark.parametrize("source", sorted(TEMPLATE.rglob("*.py.tmpl")), ids=lambda p: p.name)
def test_the_template_uses_only_exported_names(source: Path):
    text = source.read_text(encoding="utf-8").replace("{{name}}", "acme").replace("{{title}}", "Acme") \
        .replace("{{class_name}}", "Acme")
    _check(source.name, ast.parse(text))
    assert not PRIVATE_USE.search(text), f"{source.name}: uses {PRIVATE_USE.search(text).group(0)}"


@pytest.mark.parametrize("source", PROVIDER_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_providers_use_only_exported_names(source: Path):
    text = source.read_text(encoding="utf-8")
    _check(str(source.relative_to(ROOT)), ast.parse(text))
    assert not PRIVATE_USE.search(text), f"{source.name}: uses {PRIVATE_USE.search(text).group(0)}"


def test_the_kit_exports_what_it_documents():
    """Every name the kit's modules export is exported by ``hostspec.kit`` too (but the suite's)."""
    kit = _exported("hostspec.kit")
    for module in ("hostspec.kit.http", "hostspec.kit.retry", "hostspec.kit.paging", "hostspec.kit.sandboxes"):
        assert _exported(module) <= kit, f"{module}: {_exported(module) - kit} not exported by hostspec.kit"
    assert "SecretField" in _exported("hostspec")
