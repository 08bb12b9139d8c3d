"""On which scale a page of enrollment report rows gives ``grade``: 0–1 or 0–100.

The spec types ``grade`` as a string described as an "average percentage score" and shows
``0.922300033569336`` (0–1); the gradebook report's ``overallCourseGrade`` is 0–100 (96.7). Which one
production sends is not settled (see :mod:`connector_coursera.contract`), so each page decides: a
grade above :data:`contract.GRADE_FRACTION_MAX` anywhere on it means the page is 0–100, else 0–1.

The plugin marks the graded rows of a 0–100 page with :data:`SCALE_KEY` (a key of ours, never
Coursera's) before they reach ``map_stat``; a row without the mark decides alone, by the same rule
applied to its own grade.
"""
from __future__ import annotations

from typing import Any, Iterable

from . import contract
from .numbers import as_number

SCALE_KEY = "_connectorGradeScale"
FRACTION, PERCENT = contract.GRADE_SCALES


def scale_of(grades: Iterable[float | None]) -> float:
    """0–100 when any of ``grades`` is above 1, else 0–1."""
    return PERCENT if any(g is not None and g > contract.GRADE_FRACTION_MAX for g in grades) else FRACTION


def mark_page(rows: list[Any]) -> list[Any]:
    """The page's rows, its graded rows marked with :data:`SCALE_KEY` when the page is 0–100."""
    grades = [as_number(row.get(contract.GRADE_FIELD)) if isinstance(row, dict) else None for row in rows]
    if scale_of(grades) == FRACTION:
        return rows
    return [{**row, SCALE_KEY: PERCENT} if grade is not None else row for row, grade in zip(rows, grades)]


def score_percent(grade: float, scale: float) -> float:
    """A grade on ``scale`` as a percentage, two decimals."""
    return round(grade * 100 / scale, 2)
