"""Rest.li query strings: a request's parameters written in the protocol the client declares.

Parameters are plain data: scalars, dicts (Rest.li records) and lists. Sources in contract.py
(PROTOCOL, RESTLI):

* 1.0 (no header): records flattened with dots (``timeOffset.unit=DAY``), list items indexed
  (``ids[0]=a``); keys and values form-encoded.
* 2.0 (header ``X-Restli-Protocol-Version: 2.0.0``): records ``(unit:DAY,duration:7)``, lists
  ``List(a,b)``; the structural ``( ) , :`` stay literal while every reserved character of a key
  or value is percent-encoded (a URN's ``:`` becomes ``%3A``).

The query comes back as a string: ``requests`` would percent-encode the structure of 2.0."""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from . import contract


def headers(protocol: str = contract.RESTLI_PROTOCOL) -> dict[str, str]:
    """The header declaring ``protocol``: none for 1.0, LinkedIn's default."""
    if protocol == contract.RESTLI_2:
        return {contract.RESTLI_HEADER: contract.RESTLI_2}
    if protocol == contract.RESTLI_1:
        return {}
    raise ValueError(f"unknown Rest.li protocol {protocol!r}")


def query(params: Mapping[str, Any], protocol: str = contract.RESTLI_PROTOCOL) -> str:
    """``params`` as a query string in ``protocol``'s syntax."""
    headers(protocol)                                   # refuses an unknown protocol
    if protocol == contract.RESTLI_2:
        return "&".join(f"{_enc(k)}={_v2(v)}" for k, v in params.items())
    return "&".join(f"{quote(k, safe='.')}={_enc(v)}" for k, v in _flat_v1("", params))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    raise TypeError(f"a Rest.li parameter value cannot be {type(value).__name__}")


def _enc(value: Any) -> str:
    return quote(_scalar(value), safe="")     # ( ) , : ' and every other reserved character encoded


def _v2(value: Any) -> str:
    if isinstance(value, Mapping):
        return "(" + ",".join(f"{_enc(k)}:{_v2(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        return "List(" + ",".join(_v2(v) for v in value) + ")"
    return _enc(value)


def _flat_v1(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _flat_v1(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, (list, tuple)):
        return [pair for i, v in enumerate(value) for pair in _flat_v1(f"{prefix}[{i}]", v)]
    return [(prefix, value)]
