"""Coursera for Business provider for the learning connector host."""
from __future__ import annotations

__version__ = "0.1.0"
