"""The 360Learning sandbox's error answer, raised by its data and its routes alike."""
from __future__ import annotations

from typing import Any


class Problem(Exception):
    """An API error answer: status and body (flat ``{"error": code}`` or nested)."""

    def __init__(self, status: int, code: str, message: str | None = None, *, flat: bool = False):
        super().__init__(code)
        self.status = status
        self.body: Any = {"error": code} if flat else {"error": {"code": code, "message": message or code}}
