"""The pluggy markers of the project: providers decorate their hooks with ``hookimpl``."""
from __future__ import annotations

import pluggy

PROJECT_NAME = "hostspec"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]
