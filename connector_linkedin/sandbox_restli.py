"""How the LinkedIn sandbox reads a query string: in the Rest.li protocol the request declares,
as a Rest.li server does, refusing the other protocol's syntax.

Written apart from the client's :mod:`.restli` on purpose: a mistake in the client's encoding
must meet a parser that does not share it. Sources: contract.py PROTOCOL and RESTLI (no header
means 1.0; ``X-Restli-Protocol-Version: 2.0.0`` means 2.0, whose records are ``(k:v,...)``, lists
``List(...)``, and whose keys and values percent-encode their reserved characters). The refusal's
body follows LinkedIn's error shape (status, message); its ``code`` is INFERRED.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

from . import contract


class QueryRefused(ValueError):
    """The query is not valid in the declared protocol (LinkedIn answers 400)."""


def protocol_of(header: str | None) -> str:
    if header is None or header == "":
        return contract.RESTLI_1
    if header == contract.RESTLI_2:
        return contract.RESTLI_2
    raise QueryRefused(f"unsupported {contract.RESTLI_HEADER}: {header!r}")


def parse(raw: str, protocol: str, records: frozenset[str]) -> dict[str, Any]:
    """The parameters of ``raw``; ``records`` names the parameters that are records."""
    params = _parse_v2(raw) if protocol == contract.RESTLI_2 else _parse_v1(raw)
    for name, value in params.items():
        if name in records and not isinstance(value, dict):
            raise QueryRefused(f"parameter {name!r} is a record: write it "
                               + (f"{name}=(key:value,...) under Rest.li 2.0" if protocol == contract.RESTLI_2
                                  else f"{name}.key=value under Rest.li 1.0 (no {contract.RESTLI_HEADER} header)"))
        if name not in records and not isinstance(value, str):
            raise QueryRefused(f"parameter {name!r} is not a record")
    return params


# -- 1.0: form-encoded pairs, records flattened with dots -------------------------------------------
def _parse_v1(raw: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=bool(raw))
    except ValueError as exc:
        raise QueryRefused(str(exc)) from None
    for key, value in pairs:
        head, _, rest = key.partition(".")
        if rest:
            record = out.setdefault(head, {})
            if not isinstance(record, dict):
                raise QueryRefused(f"parameter {head!r} given both as a value and as a record")
            record[rest] = value
        elif key in out:
            raise QueryRefused(f"parameter {key!r} given twice")
        else:
            out[key] = value
    return out


# -- 2.0: key=value pairs whose values are leaves, (k:v,...) records or List(...) ----------------------
def _parse_v2(raw: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in raw.split("&") if raw else []:
        key, sep, text = pair.partition("=")
        if not sep:
            raise QueryRefused(f"parameter {unquote(key)!r} has no value")
        name = unquote(key)
        if "." in name:
            raise QueryRefused(f"parameter {name!r}: Rest.li 2.0 writes records as {name.split('.')[0]}=(key:value,...)")
        value, end = _value(text, 0)
        if end != len(text):
            raise QueryRefused(f"parameter {name!r}: unexpected {text[end]!r} at {end} (reserved characters "
                               f"of a value are percent-encoded under Rest.li 2.0)")
        out[name] = value
    return out


def _value(text: str, i: int) -> tuple[Any, int]:
    if text.startswith("List(", i):
        items, i = [], i + 5
        while i < len(text) and text[i] != ")":
            item, i = _value(text, i)
            items.append(item)
            i = _after_item(text, i)
        return items, _close(text, i)
    if text.startswith("(", i):
        record: dict[str, Any] = {}
        i += 1
        while i < len(text) and text[i] != ")":
            key, i = _leaf(text, i)
            if not text.startswith(":", i):
                raise QueryRefused(f"a record field without ':' in {text!r}")
            record[key], i = _value(text, i + 1)
            i = _after_item(text, i)
        return record, _close(text, i)
    return _leaf(text, i)


def _leaf(text: str, i: int) -> tuple[str, int]:
    end = i
    while end < len(text) and text[end] not in "(),:":
        end += 1
    return unquote(text[i:end]), end


def _after_item(text: str, i: int) -> int:
    if text.startswith(",", i):
        return i + 1
    if text.startswith(")", i):
        return i
    raise QueryRefused(f"unexpected {text[i:i + 1]!r} at {i} of {text!r} (reserved characters of a value are "
                       "percent-encoded under Rest.li 2.0)")


def _close(text: str, i: int) -> int:
    if not text.startswith(")", i):
        raise QueryRefused(f"an unclosed '(' in {text!r}")
    return i + 1
