"""The ``connector-host`` command: plugins, check, sync (sandbox and connections file), validate."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from hostspec.cli.main import main
from hostspec.cli.options import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from tests.conftest import connections_toml


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_plugins_lists_both_providers_with_versions_and_capabilities(capsys):
    assert main(["plugins", "--json"]) == EXIT_OK
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"coursera", "linkedin_learning"}
    for row in rows.values():
        assert row["version"] == "0.1.0" and row["sandbox"] is True and row["secret_settings"] == ["client_secret"]
        assert row["scopes"] == ["catalog", "progress"]


def test_sandbox_sync_writes_valid_events_and_a_summary(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    assert main(["sync", "coursera", "--sandbox", "--out", str(out)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "sync completed" in err and "course events" in err
    events = lines(out)
    courses = [e for e in events if e["type"] == "learning.course.upserted.v1"]
    assert len(courses) == 40  # the default sandbox serves 40 catalog items
    assert events[0]["data"]["phase"] == "started" and events[-1]["data"]["phase"] == "completed"
    assert main(["validate", str(out)]) == EXIT_OK


def test_partial_sync_exits_3(tmp_path, capsys):
    out = tmp_path / "e.jsonl"
    code = main(["sync", "coursera", "--sandbox", "--sandbox-broken-every", "5", "--scope", "catalog", "--out", str(out)])
    assert code == EXIT_PARTIAL
    assert "rejected records" in capsys.readouterr().err


def test_unknown_provider_exits_2_and_lists_installed(capsys):
    assert main(["sync", "udemy", "--sandbox"]) == EXIT_CONFIG
    assert "installed providers: coursera" in capsys.readouterr().err


def connections_file(tmp_path, sandbox, secret_env="CLI_TEST_SECRET"):
    path = tmp_path / "connections.toml"
    path.write_text(connections_toml(sandbox.url, secret_env=secret_env, org_id=sandbox.spec.org_id, max_attempts=2))
    return path


def test_check_and_sync_a_configured_connection(tmp_path, sandbox, monkeypatch, capsys):
    monkeypatch.setenv("CLI_TEST_SECRET", "standin-secret")
    path = connections_file(tmp_path, sandbox)
    assert main(["--connections", str(path), "check", "--connection", "acme"]) == EXIT_OK
    assert "OK - connected to Coursera organisation 'Acme Corp'" in capsys.readouterr().out
    out, state = tmp_path / "events.jsonl", str(tmp_path / "state.sqlite")
    argv = ["--connections", str(path), "sync", "coursera", "--connection", "acme", "--scope", "catalog",
            "--state", state, "--out", str(out)]
    assert main(argv) == EXIT_OK
    assert sum(e["type"] == "learning.course.upserted.v1" for e in lines(out)) == sandbox.catalog_size()
    assert main(argv) == EXIT_OK  # nothing changed: nothing re-sent (an incremental listing: nothing listed)
    assert sum(e["type"] == "learning.course.upserted.v1" for e in lines(out)) == 0
    assert re.search(r"catalog items fetched +0\b", capsys.readouterr().err)


def test_check_with_wrong_secret_fails_without_printing_it(tmp_path, sandbox, monkeypatch, capsys):
    monkeypatch.setenv("CLI_TEST_SECRET", "definitely-wrong-secret")
    path = connections_file(tmp_path, sandbox)
    assert main(["--connections", str(path), "check", "--connection", "acme"]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "definitely-wrong-secret" not in captured.out + captured.err


def test_unknown_connection_exits_2(tmp_path, sandbox, capsys):
    path = connections_file(tmp_path, sandbox)
    assert main(["--connections", str(path), "sync", "coursera", "--connection", "nope"]) == EXIT_CONFIG
    assert "configured connections: acme" in capsys.readouterr().err


def test_validate_flags_bad_lines(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"specversion": "1.0"}\nnot json\n')
    assert main(["validate", str(bad)]) == EXIT_FAILED
    assert "0 of 2 events valid" in capsys.readouterr().out


def test_console_script_runs_as_installed(tmp_path):
    out = tmp_path / "e.jsonl"
    proc = subprocess.run([sys.executable, "-m", "hostspec", "sync", "coursera", "--sandbox", "--scope", "catalog",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(lines(out)) == 40 + 2


def test_sync_without_connection_or_sandbox_exits_2(capsys):
    assert main(["sync", "coursera"]) == EXIT_CONFIG
    assert "--connection NAME or --sandbox" in capsys.readouterr().err


def test_bad_scope_is_a_usage_error():
    with pytest.raises(SystemExit) as excinfo:
        main(["sync", "coursera", "--connection", "x", "--scope", "bogus"])
    assert excinfo.value.code == 2


def test_a_sync_on_a_terminal_shows_a_bar_per_scope_with_percent_when_the_total_is_known(sandbox, plugins):
    """Coursera's paging.total reaches the bar as an ExpectedCount (issue 16); off the terminal, nothing."""
    import io

    from hostspec.cli.progress import ProgressBars as _Progress
    from hostspec.cli.progress import progress_line
    from hostspec.engine.run import SyncEngine
    from hostspec.requests import SyncRequest
    from hostspec.engine.sinks import MemorySink
    from tests.conftest import sandbox_connection

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen, pipe = Terminal(), io.StringIO()
    connection = sandbox_connection(sandbox, plugins, page_size=10)
    shown, hidden = _Progress(screen), _Progress(pipe)
    sink = MemorySink()
    engine = SyncEngine(plugins, sink, on_progress=lambda r: (shown(r), hidden(r)), progress_every=10)
    report = engine.run(SyncRequest("r", connection.name, "coursera"), connection)
    shown.done(report)
    hidden.done(report)
    assert report.expected == {"catalog": sandbox.catalog_size(), "progress": len(sandbox.report_rows())}
    text = screen.getvalue()
    assert "catalog" in text and "progress" in text and "100%" in text and pipe.getvalue() == ""
    final = [e.data for e in sink.of_type("learning.sync.status.v1")][-1]
    assert final["expected"] == report.expected
    line = progress_line({**final, "counts": {**final["counts"], "progress_fetched": len(sandbox.report_rows()) // 2}})
    assert f"progress 50% of {len(sandbox.report_rows())}" in line or "progress 49%" in line


def test_sandbox_options_reach_the_sandbox_hook(tmp_path, capsys):
    out = tmp_path / "e.jsonl"
    assert main(["sync", "coursera", "--sandbox", "--sandbox-option", "contents=7", "--scope", "catalog",
                 "--out", str(out)]) == EXIT_OK
    assert len([e for e in lines(out) if e["type"] == "learning.course.upserted.v1"]) == 7
    assert main(["sync", "coursera", "--sandbox", "--sandbox-option", "contents", "--out", str(out)]) == EXIT_CONFIG
    assert "KEY=VALUE" in capsys.readouterr().err


def test_sandbox_option_values():
    from hostspec.cli.providers import sandbox_options

    assert sandbox_options(["seed=7", "name=a=b", "x="]) == {"seed": 7, "name": "a=b", "x": ""}
