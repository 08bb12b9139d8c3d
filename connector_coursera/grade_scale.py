"""On which scale a page of enrollment report rows gives ``grade``: 0–1 or 0–100.

The spec types ``grade`` as a string described as an "average percentage score" and shows
``0.922300033569336`` (0–1); the gradebook report's ``overallCourseGrade`` is 0–100 (96.7). Which one
production sends is not settled (see :mod:`connector_coursera.contract`), so each page decides by a
vote of its grades: a grade in (1, 100] votes 0–100, a grade in (0, 1) votes 0–1, other grades (0, 1
itself, out of range, not finite) do not vote. The page is 0–100 when it has at least as many 0–100
votes as 0–1 votes and at least one; else 0–1. One broken row (a grade of 50, 10¹⁸ or infinity among
fractions) therefore cannot change how the other learners' grades are read: it is rejected alone,
since its grade does not fit the page's scale (:func:`fits`).

The plugin marks the graded rows of every page with :data:`SCALE_KEY` (a key of ours, never
Coursera's) before they reach ``map_stat``; a row without the mark decides alone, by the same vote
over its own grade.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from . import contract
from .numbers import as_number

SCALE_KEY = "_connectorGradeScale"
FRACTION, PERCENT = contract.GRADE_SCALES


def scale_of(grades: Iterable[float | None]) -> float:
    """The scale ``grades`` vote for (see the module's docstring)."""
    percent = fraction = 0
    for grade in grades:
        if grade is None or not math.isfinite(grade):
            continue
        if contract.GRADE_FRACTION_MAX < grade <= PERCENT:
            percent += 1
        elif 0 < grade < contract.GRADE_FRACTION_MAX:
            fraction += 1
    return PERCENT if percent and percent >= fraction else FRACTION


def fits(grade: float, scale: float) -> bool:
    """Whether ``grade`` is a grade on ``scale``: finite, from 0 to the scale's top."""
    return math.isfinite(grade) and 0 <= grade <= scale


def mark_page(rows: list[Any]) -> list[Any]:
    """The page's rows, each graded row marked with :data:`SCALE_KEY`, the page's scale."""
    grades = [as_number(row.get(contract.GRADE_FIELD)) if isinstance(row, dict) else None for row in rows]
    scale = scale_of(grades)
    return [{**row, SCALE_KEY: scale} if grade is not None else row for row, grade in zip(rows, grades)]


def score_percent(grade: float, scale: float) -> float:
    """A grade on ``scale`` as a percentage, two decimals."""
    return round(grade * 100 / scale, 2)
