"""The demo: the whole path on sandboxes, in one process (``learning-demo``)."""
from __future__ import annotations

import subprocess
import sys

from learning_demo import cli


def test_demo_runs_the_whole_path_and_reports_no_change_on_rerun(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    code = cli.main(["--log-level", "WARNING", "--out", str(out), "--contents", "8", "--learners", "5",
                     "--enrollments", "15"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "publisher, parked stats retried: stat_delivered=" in err and "360Learning unchanged" in err
    assert sum(1 for _ in out.open()) >= 8 + 15


def test_the_command_runs_as_a_module(tmp_path):
    out = tmp_path / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "learning_demo", "--log-level", "WARNING", "--out", str(out),
                           "--contents", "4", "--learners", "3", "--enrollments", "6"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "360Learning unchanged" in done.stderr and out.stat().st_size > 0
