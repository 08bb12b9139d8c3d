"""What every console script shows a user beyond its work (issue 29): help for every option with
its default, a quiet end when standard output closes early (``| head``), the port named when it
is taken, no ERROR line from a normal exit, and a walkthrough that reads the broker's address
from ``KAFKA_BOOTSTRAP`` like the commands do."""
from __future__ import annotations

import argparse
import configparser
import importlib
import io
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import errors as kerr

from connector_coursera.sandbox import cli as coursera_sandbox_cli
from hostspec.cli import main as host_cli
from hostspec.ops.console import guarded
from hostspec.ops.health import HttpServer

ROOT = Path(__file__).resolve().parents[3]


class _Parser(Exception):
    """Raised by parse_args to hand the parser a console script built over."""


def console_parsers(monkeypatch) -> dict[str, argparse.ArgumentParser]:
    """The top parser of every console script of setup.cfg, as its ``main`` builds it."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = {}
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = (part.strip() for part in line.partition("="))
        module, _, func = target.partition(":")

        def grab(parser, *_a, **_k):
            raise _Parser(parser)

        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
        with pytest.raises(_Parser) as got:
            getattr(importlib.import_module(module), func)([])
        monkeypatch.undo()
        scripts[name] = got.value.args[0]
    return scripts


def every_parser(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_parser(sub, f"{path} {name}")


def test_every_option_of_every_console_script_has_help_and_names_its_default(monkeypatch):
    scripts = console_parsers(monkeypatch)
    assert {"connector-host", "publisher-360learning", "coursera-sandbox", "learning360-sandbox",
            "learning-demo"} <= set(scripts)
    missing, no_default, seen = [], [], 0
    for script, top in scripts.items():
        for path, parser in every_parser(top, script):
            for action in parser._actions:
                if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                    continue
                seen += 1
                name = "/".join(action.option_strings) or action.dest
                if not action.help or action.help == argparse.SUPPRESS:
                    missing.append(f"{path} {name}")
                elif (action.option_strings and not action.required
                      and action.default not in (None, False, [], argparse.SUPPRESS)
                      and "default" not in action.help.lower()):
                    no_default.append(f"{path} {name} (default {action.default!r})")
    assert seen > 150
    assert missing == [], "options without help: " + ", ".join(missing)
    assert no_default == [], "help that does not name the default: " + ", ".join(no_default)


def test_output_closed_early_ends_the_command_quietly_with_exit_0(monkeypatch, capsys):
    read_end, write_end = os.pipe()
    os.close(read_end)                                   # `| head` has read what it wanted and left
    stdout = io.TextIOWrapper(os.fdopen(write_end, "wb"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert host_cli.main(["plugins", "--json"]) == 0
    finally:
        monkeypatch.undo()
        stdout.close()                                   # now on /dev/null: closes without an error
    assert capsys.readouterr().err == ""


def test_a_broken_pipe_that_is_not_standard_output_is_still_reported(capsys):
    def command() -> int:
        raise BrokenPipeError(32, "Broken pipe")         # e.g. a socket to a server that went away

    assert guarded("prog", command) == 2
    assert "Broken pipe" in capsys.readouterr().err


def test_a_sync_piped_to_head_ends_with_exit_0_and_says_nothing():
    shell = f"{sys.executable} -m hostspec sync coursera --sandbox | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "0", done.stderr
    assert "Broken pipe" not in done.stderr and "Exception ignored" not in done.stderr and "ERROR" not in done.stderr


def test_a_taken_port_is_named(capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        assert guarded("connector-host", lambda: HttpServer(lambda *_: [], port, "127.0.0.1")) == 2
        assert f"cannot use 127.0.0.1:{port}: " in capsys.readouterr().err
        assert coursera_sandbox_cli.main(["--port", str(port)]) == 2
        assert f"127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        taken.close()


def test_closing_a_client_is_no_error_but_a_failed_metadata_refresh_still_is(caplog):
    cluster = logging.getLogger("kafka.cluster")
    with caplog.at_level(logging.WARNING, logger="kafka.cluster"):
        import hostspec.transport.kafka  # noqa: F401 - installs the filter
        cluster.error("Metadata refresh: failed %s", kerr.Cancelled())
        assert caplog.records == []
        cluster.error("Metadata refresh: failed %s", kerr.KafkaConnectionError("broker away"))
        assert [r.levelname for r in caplog.records] == ["ERROR"]


def test_the_walkthrough_reads_the_broker_address_from_kafka_bootstrap():
    """A hard-coded 127.0.0.1:9092 in the docs' code breaks for whoever runs the broker on another
    port: the commands read KAFKA_BOOTSTRAP, so must the snippets (setting it is the exception)."""
    hard_coded = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```[a-z]*\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
        for block in blocks:
            for line in block.splitlines():
                if re.search(r"bootstrap_servers\s*=\s*['\"]|(?<!KAFKA_BOOTSTRAP=)\b(127\.0\.0\.1|localhost):9092\b", line):
                    hard_coded.append(f"{doc.name}: {line.strip()}")
    assert hard_coded == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert 'os.environ["KAFKA_BOOTSTRAP"]' in readme and "export KAFKA_PORT" in readme
