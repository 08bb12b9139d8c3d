"""The reliability campaign: faults, load and hostile input, with figures.

``RELIABILITY_SCALE=short`` (default, inside ``.ci/run``) or ``long`` (``bash dev/reliability``)
sets how hard each test pushes. Every test records its figures with the ``figures`` fixture;
the run ends with one summary table (and ``$RELIABILITY_REPORT``, JSON, when set).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import pytest

SCALE = os.environ.get("RELIABILITY_SCALE", "short")
LONG = SCALE == "long"

# (short, long)
PLAN = {
    "worker_kills": (3, 20), "kill_rows": (3000, 12000), "broker_restarts": (1, 5),
    "fault_rows": (1500, 6000), "fuzz_requests": (300, 10_000), "fuzz_records": (150, 10_000),
    "load_requests": (120, 1000), "load_connections": (20, 100),
}


def plan(name: str) -> int:
    short, long = PLAN[name]
    return long if LONG else short


@dataclass
class Figure:
    test: str
    name: str
    value: float | str
    target: str
    ok: bool


_figures: list[Figure] = []


class Figures:
    def __init__(self, test: str):
        self.test = test

    def add(self, name: str, value, target: str = "", ok: bool = True) -> None:
        _figures.append(Figure(self.test, name, value, target, bool(ok)))


@pytest.fixture
def figures(request) -> Figures:
    return Figures(request.node.name.split("[")[0].removeprefix("test_"))


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter):
    if not _figures:
        return
    tr = terminalreporter
    tr.section(f"reliability figures (scale {SCALE})")
    width = max(len(f"{f.test}: {f.name}") for f in _figures)
    for f in _figures:
        value = f"{f.value:,.2f}".rstrip("0").rstrip(".") if isinstance(f.value, float) else str(f.value)
        tr.write_line(f"{(f.test + ': ' + f.name).ljust(width)}  {value:>12}  {f.target:<14} "
                      f"{'ok' if f.ok else 'MISSED'}")
    out = os.environ.get("RELIABILITY_REPORT")
    if out:
        with open(out, "w") as fh:
            json.dump({"scale": SCALE, "figures": [asdict(f) for f in _figures]}, fh, indent=2)


# the real-broker fixtures of the integration tests
from tests.integration.conftest import bootstrap, prefix, topics, workers  # noqa: E402,F401
