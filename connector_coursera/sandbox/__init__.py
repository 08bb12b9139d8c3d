"""A local stand-in for Coursera for Business: real HTTP on loopback, deterministic data, faults."""
from __future__ import annotations

from .data import Org, OrgSpec
from .server import CourseraSandbox

__all__ = ["CourseraSandbox", "Org", "OrgSpec"]
