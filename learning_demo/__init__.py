"""The whole path on sandboxes in one process (``learning-demo``): the one place that wires a
provider's sandbox, the host's engine and the 360Learning publisher together."""
from __future__ import annotations

from learning_demo.demo import run_demo

__all__ = ["run_demo"]
