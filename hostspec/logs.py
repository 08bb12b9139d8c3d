"""Logging set-up for the host's commands: one handler on stderr, secrets always redacted."""
from __future__ import annotations

import logging
import sys

from .secrets import install_log_redaction


def setup_logging(level: str = "WARNING") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # kafka-python narrates every connection at INFO; keep its warnings and errors only
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    install_log_redaction(root)
