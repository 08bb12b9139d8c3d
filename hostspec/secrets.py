"""Secret values: resolved by reference at use, hidden from repr, str, logs and messages.

A secret in a connections file is written ``{ env = "NAME" }`` or ``{ file = "path" }`` (or, for
local experiments only, a plain string); a settings schema declares such a field with
:class:`SecretField`. It becomes a :class:`Secret`, whose value is read when
``reveal()`` is called, not before. Every value revealed is remembered so that :func:`redact` and
the :class:`RedactingFilter` on the root logger can blank it out of any text that reaches a log.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Mapping

from marshmallow import fields

from hostspec.errors import SecretUnavailable

_MASK = "***"
_known_values: set[str] = set()
_known_lock = threading.Lock()


def _remember(value: str) -> None:
    if len(value) >= 4:  # shorter strings would blank out ordinary words
        with _known_lock:
            _known_values.add(value)


class Secret:
    """A secret given by value, environment variable or file; ``repr`` never shows the value."""

    __slots__ = ("_value", "_env", "_file", "_base")

    def __init__(self, value: str | None = None, *, env: str | None = None,
                 file: str | None = None, base: Path | None = None):
        if sum(x is not None for x in (value, env, file)) != 1:
            raise ValueError("a secret takes exactly one of: a value, env=NAME, file=PATH")
        self._value, self._env, self._file, self._base = value, env, file, base
        if value is not None:
            _remember(value)

    @property
    def reference(self) -> str:
        """Where the value comes from, safe to print."""
        if self._env is not None:
            return f"env:{self._env}"
        if self._file is not None:
            return f"file:{self._file}"
        return "inline"

    def reveal(self) -> str:
        """The value. Raises ``LookupError`` (with no value in it) when the reference is dangling."""
        if self._value is not None:
            return self._value
        if self._env is not None:
            value = os.environ.get(self._env)
            if not value:
                raise SecretUnavailable(f"secret environment variable {self._env} is not set")
        else:
            path = Path(self._file)  # type: ignore[arg-type]
            if not path.is_absolute() and self._base is not None:
                path = self._base / path
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretUnavailable(f"secret file {path} cannot be read: {exc.strerror}") from None
            if not value:
                raise SecretUnavailable(f"secret file {path} is empty")
        _remember(value)
        return value

    def __repr__(self) -> str:
        return f"Secret({self.reference}, value={_MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (self._value, self._env, self._file) == (
            other._value, other._env, other._file)

    def __hash__(self) -> int:
        return hash((self._env, self._file, self._value))


class SecretField(fields.Field):
    """A settings field holding a :class:`Secret` (given as a string, ``{env=..}`` or ``{file=..}``)."""

    default_error_messages = {"invalid": "must be a string, {{ env = \"NAME\" }} or {{ file = \"path\" }}"}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, Secret):
            return value
        if isinstance(value, str) and value:
            return Secret(value)
        if isinstance(value, Mapping) and len(value) == 1:
            (kind, ref), = value.items()
            if kind in ("env", "file") and isinstance(ref, str) and ref:
                return Secret(**{kind: ref})
        raise self.make_error("invalid")

    def _serialize(self, value, attr, obj, **kwargs):
        return repr(value)


def redact(text: str) -> str:
    """``text`` with every secret value revealed so far replaced by ``***``."""
    with _known_lock:
        values = sorted(_known_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, _MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that blanks secret values out of every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach a :class:`RedactingFilter` to every handler of ``logger`` (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


__all__ = ["RedactingFilter", "Secret", "SecretField", "install_log_redaction", "redact"]
