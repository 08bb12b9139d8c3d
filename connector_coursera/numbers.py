"""Numbers as Coursera sends them: JSON numbers, or numeric strings (``grade`` is typed string)."""
from __future__ import annotations

from typing import Any


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is a number or a numeric string (not a boolean); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
