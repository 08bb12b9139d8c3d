"""A configuration file re-read when it changes, keeping the last good version.

Used for the worker's connections file and the publisher's targets file: operators add or
change entries live. A change that does not read (half-written, a TOML typo) is reported once
and the version read before stays in use until the file is fixed.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Generic, TypeVar

from hostspec.errors import HostError

log = logging.getLogger(__name__)
T = TypeVar("T")


class ReloadingFile(Generic[T]):
    def __init__(self, path: str | os.PathLike[str], load: Callable[[Path], T], *, what: str = "file",
                 describe: Callable[[T], str] = lambda _value: "",
                 on_ok: Callable[[], None] = lambda: None, on_error: Callable[[], None] = lambda: None):
        self.path = Path(path)
        self._load, self._what, self._describe = load, what, describe
        self._on_ok, self._on_error = on_ok, on_error
        self._mtime: float | None = None
        self._failed_mtime: float | None = None
        self._value: T | None = None

    def current(self) -> T:
        """The current version; raises :class:`HostError` only if no version was ever read."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        if self._value is not None and mtime in (self._mtime, self._failed_mtime):
            return self._value
        try:
            value = self._load(self.path)
        except HostError as exc:
            if self._value is None:
                raise
            if mtime != self._failed_mtime:
                log.error("%s changed but cannot be used (%s); keeping the version read before", self._what, exc)
                self._on_error()
                self._failed_mtime = mtime
            return self._value
        if self._value is not None:
            log.info("%s %s re-read%s", self._what, self.path, self._describe(value))
        self._value, self._mtime, self._failed_mtime = value, mtime, None
        self._on_ok()
        return value
