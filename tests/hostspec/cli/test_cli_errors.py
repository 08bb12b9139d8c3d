"""Every user error of the console scripts: one clear line and the documented exit code, never a
traceback (issue 16). Each case is what a new user actually typed or could type."""
from __future__ import annotations

import pytest

from connector_coursera.sandbox import cli as coursera_sandbox_cli
from hostspec.cli import main as host_cli
from publisher_360learning import cli as publisher_cli
from publisher_360learning.sandbox import cli as learning360_sandbox_cli
from tests.conftest import connections_toml

UNSET_SECRET = connections_toml("http://127.0.0.1:9", secret_env="CLI_ERRORS_SURELY_UNSET")

CASES = [
    # (script, argv, exit code, words the message must hold)
    (host_cli, ["validate", "missing.jsonl"], 2, "missing.jsonl"),
    (host_cli, ["export-xapi", "missing.jsonl"], 2, "missing.jsonl"),
    (host_cli, ["--log-level", "nope", "plugins"], 2, "not a log level"),
    (host_cli, ["sync", "coursera", "--sandbox", "--sandbox-enrollments", "20000", "--sandbox-contents", "500"], 2,
     "sandbox options"),
    (host_cli, ["--connections", "missing.toml", "sync", "coursera", "--connection", "acme"], 2, "missing.toml"),
    (host_cli, ["sync", "udemy", "--sandbox"], 2, "unknown provider 'udemy'"),
    (host_cli, ["sync", "coursera"], 2, "--connection"),
    (host_cli, ["--connections", "{conns}", "sync", "coursera", "--connection", "acme", "--out", "{out}"], 2,
     "CLI_ERRORS_SURELY_UNSET"),
    (host_cli, ["--connections", "{conns}", "check", "--connection", "acme"], 2,       # as `sync` (issue 29)
     "CLI_ERRORS_SURELY_UNSET"),
    (host_cli, ["--connections", "{conns}", "sync", "coursera", "--connection", "ghost"], 2, "ghost"),
    (host_cli, ["sync", "coursera", "--sandbox", "--since", "yesterday"], 2, "not an ISO 8601"),
    (host_cli, ["new-provider", "Bad Name"], 2, "provider name"),
    (host_cli, ["run", "--metrics-port", "99999"], 2, "not a port"),
    (host_cli, ["--connections", "{conns}", "request-sync", "coursera", "--connection", "acme",
                "--bootstrap-servers", "127.0.0.1:1"], 1, "cannot reach Kafka at 127.0.0.1:1"),
    (host_cli, ["status", "--bootstrap-servers", "127.0.0.1:1"], 1, "cannot reach Kafka"),
    (publisher_cli, ["--log-level", "loud", "run"], 2, "not a log level"),
    (publisher_cli, ["run", "--targets", "missing.toml"], 2, "missing.toml"),
    (coursera_sandbox_cli, ["--port", "99999"], 2, "not a port"),
    (coursera_sandbox_cli, ["--enrollments", "20000", "--contents", "500"], 2, "enrollments"),
    (learning360_sandbox_cli, ["--port", "-1"], 2, "not a port"),
]


@pytest.mark.parametrize("script, argv, code, words", CASES,
                         ids=[f"{c[0].__name__.split('.')[0]}:{' '.join(c[1])[:50]}" for c in CASES])
def test_a_user_error_is_one_clear_line_and_its_exit_code(tmp_path, monkeypatch, capsys, script, argv, code, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_CONNECT_TIMEOUT_MS", "1000")
    monkeypatch.delenv("CLI_ERRORS_SURELY_UNSET", raising=False)
    (tmp_path / "c.toml").write_text(UNSET_SECRET)
    argv = [a.format(conns=tmp_path / "c.toml", out=tmp_path / "out.jsonl") for a in argv]
    try:
        got = script.main(argv)
    except SystemExit as exc:          # argparse's usage errors
        got = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert got == code, err
    assert words in err, err
    assert "kafka" not in err.replace("Kafka", ""), err     # no kafka-python chatter, one line of ours


def test_a_bug_is_one_line_too_with_its_traceback_at_debug_level(monkeypatch, capsys, caplog):
    def broken(args, plugins):
        raise ZeroDivisionError("a bug")

    parser = host_cli.build_parser()
    monkeypatch.setattr(host_cli, "build_parser", lambda: parser)
    args = parser.parse_args(["plugins"])
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    args.func = broken
    assert host_cli.main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: a bug" in err and "Traceback" not in err


def test_help_texts_show_no_rest_markup():
    parsers = [host_cli.build_parser(), publisher_cli.build_parser(), coursera_sandbox_cli.build_parser()]
    for parser in parsers:
        texts = [parser.format_help()]
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            texts += [sub.format_help() for sub in action.choices.values()]
        assert not [t for t in texts if "``" in t or ":func:" in t]
