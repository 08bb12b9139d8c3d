"""What the console scripts share: log levels as an argument type, and no traceback for users.

Every console script runs its command through :func:`guarded`: an error a user can fix (a
configuration error, a file that cannot be read, an invalid option, a port already taken) is one
line on stderr and exit code 2; a failure of the service it talks to is one line and exit code 1;
a bug is one line too, its traceback logged at DEBUG level (``--log-level DEBUG`` shows it).
Standard output closed early (``connector-host status | head``) ends the command quietly with
exit code 0, as other Unix tools do (Python's documentation on SIGPIPE: standard output is
pointed at ``/dev/null`` so that the interpreter's last flush fails no more).
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import select
import sys
from typing import Callable

from hostspec.errors import HostError
from hostspec.secrets import redact

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXIT_FAILED, EXIT_USAGE = 1, 2
USER_KINDS = frozenset({"config", "plugin", "invalid_request", "not_found", "conflict"})   # HostError kinds a user fixes

log = logging.getLogger(__name__)


def port(text: str) -> int:
    """argparse type of a TCP port (0: any free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def byte_size(text: str) -> int:
    """argparse type of a size in bytes, with an optional K, M or G suffix (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*", text)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in bytes (e.g. 536870912 or 512M)")
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def plain(text: str | None) -> str | None:
    """A docstring as help text: reST literals and roles as plain words."""
    if text is None:
        return None
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def log_level(text: str) -> str:
    """argparse type of ``--log-level``: a level name in any case."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (one of {', '.join(LOG_LEVELS)})")
    return level


class UsageError(Exception):
    """An option or argument the user gave cannot work (exit code 2)."""


def guarded(prog: str, command: Callable[[], int], *,
            failures: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``command``; turn what it raises into one line on stderr and an exit code.

    :param failures: exception types meaning "the service failed" (exit 1), e.g. an API client's.
    """
    try:
        code = int(command())
        if sys.stdout is not None:     # None: started with standard output closed
            sys.stdout.flush()         # what is still buffered: a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends as one line and an exit code
        if stdout_closed():   # `... | head`: whatever the command met writing on, it ends quietly
            return _stdout_gone()
        return _failed(prog, exc, failures)


def _failed(prog: str, exc: Exception, failures: tuple[type[BaseException], ...]) -> int:
    """One line on stderr for ``exc``, and its exit code."""
    if isinstance(exc, UsageError):
        return _say(prog, str(exc), EXIT_USAGE)
    if isinstance(exc, HostError):    # an operator's command line: it may name what the operator configured
        message = getattr(exc, "operator_message", None) or str(exc)
        return _say(prog, message, EXIT_USAGE if exc.kind in USER_KINDS else EXIT_FAILED)
    if isinstance(exc, OSError):      # a file or a port: the user names them
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return _say(prog, f"cannot use{where}: {exc.strerror or exc}", EXIT_USAGE)
    if isinstance(exc, failures):
        return _say(prog, str(exc), EXIT_FAILED)
    log.debug("%s failed", prog, exc_info=exc)    # a bug: one line here, the traceback for who asks
    return _say(prog, f"internal error: {type(exc).__name__}: {exc} (--log-level DEBUG shows where)", EXIT_FAILED)


def stdout_closed() -> bool:
    """Whether standard output is a pipe its reader closed (a broken pipe of a socket is not)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):     # no descriptor (a test's capture): not a pipe
        return False


def _stdout_gone() -> int:
    """Nobody reads standard output any more: stop writing to it, quietly, as ``head``'s writers do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
    return 0


def bind_error(exc: OSError, addr: str, port: int) -> OSError:
    """``exc`` raised binding ``addr:port``, naming them (``cannot use 127.0.0.1:8083: Address
    already in use``, not just ``Address already in use``)."""
    return OSError(exc.errno, exc.strerror or str(exc), f"{addr}:{port}")


def _say(prog: str, message: str, code: int) -> int:
    print(f"{prog}: {redact(message)}", file=sys.stderr)
    return code


__all__ = ["EXIT_FAILED", "EXIT_USAGE", "LOG_LEVELS", "UsageError", "bind_error", "guarded", "log_level", "plain", "port",
           "stdout_closed"]
