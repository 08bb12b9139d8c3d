"""A bulk operation's per-item results paired with the inputs they answer.

360Learning echoes each result's ``input`` (SuccessResultDTO, ErrorResultDTO) and documents no
order, so a result is matched to its input by content, never by position: first the input
exactly as sent (INFERRED: echoed unchanged), then, for a result whose echo differs, by what
identifies the item (a course's ``externalId``; a statistic's course and learner) when exactly
one input still waiting has it. Identical inputs are interchangeable: their results are too.
"""
from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any, Sequence

from . import contract


class UnpairedResults(ValueError):
    """Some inputs got no result (or results answer no input): the operation's outcome per item is unknown."""


def pair_results(inputs: Sequence[Any], results: Sequence[Any]) -> list[dict[str, Any]]:
    """``results`` reordered so that the k-th answers ``inputs[k]``.

    :raise UnpairedResults: a result's ``input`` matches no input, or an input has no result.
    """
    if len(results) != len(inputs):
        raise UnpairedResults(f"{len(results)} results for {len(inputs)} items")
    waiting: dict[str, deque[int]] = defaultdict(deque)
    for k, item in enumerate(inputs):
        waiting[_canonical(item)].append(k)
    paired: list[dict[str, Any] | None] = [None] * len(inputs)
    echoed_otherwise = []
    for result in results:
        echo = result.get(contract.RESULT_INPUT) if isinstance(result, dict) else None
        slots = waiting.get(_canonical(echo))
        if slots:
            paired[slots.popleft()] = result
        else:
            echoed_otherwise.append((echo, result))
    for echo, result in echoed_otherwise:
        left = [k for k in range(len(inputs)) if paired[k] is None and _identity(inputs[k]) == _identity(echo)]
        if len(left) != 1 or _identity(echo) is None:
            raise UnpairedResults(f"a result answers no input sent ({_describe(echo)})")
        paired[left[0]] = result
    return paired  # type: ignore[return-value]  # every slot is filled: as many results as inputs


def _canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _identity(item: Any) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("externalId"), str):
        return ("course", item["externalId"])
    course, user = item.get("courseIdentifier"), item.get("userIdentifier")
    if isinstance(course, dict) and isinstance(user, dict):
        return ("stat", course.get("type"), course.get("value"), user.get("type"), user.get("value"))
    return None


def _describe(item: Any) -> str:
    identity = _identity(item)
    return "/".join(str(p) for p in identity[1:]) if identity else "no recognisable input"
