"""The targets file, the ledger command and the demo."""
from __future__ import annotations

import json
import os

import pytest

from hostspec.errors import ConfigError
from publisher_360learning import cli
from publisher_360learning.ledger import DELIVERED, PARKED, Ledger, Record
from publisher_360learning.settings import load_targets, target_from_settings

AUTHOR = "65a0000000000000000000a1"


def test_targets_file_with_secret_reference(tmp_path, monkeypatch):
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.acme]\nregion = "us"\nclient_id = "cid"\nclient_secret = {{ env = "T360" }}\n'
                    f'author_id = "{AUTHOR}"\n')
    monkeypatch.setenv("T360", "value-from-env")
    target = load_targets(path)["acme"]
    assert target.base_url == "https://app.us.360learning.com" and target.client_secret.reveal() == "value-from-env"
    assert target.label("coursera") == "Coursera (connector)" and target.default_completion is True
    assert "value-from-env" not in repr(target)
    body = target.integration_body("65a000000000000000000001", "coursera")
    assert body == {"externalPlatform": "Coursera (connector)", "groupId": "65a000000000000000000001",
                    "authorId": AUTHOR, "defaultCompletion": True, "defaultProgress": 0, "noGroupPropagation": False}


@pytest.mark.parametrize("settings, message", [
    ({"client_id": "c", "client_secret": "s", "author_id": AUTHOR}, "exactly one of region"),
    ({"region": "eu", "base_url": "https://x.test", "client_id": "c", "client_secret": "s", "author_id": AUTHOR},
     "exactly one of region"),
    ({"region": "mars", "client_id": "c", "client_secret": "s", "author_id": AUTHOR}, "region"),
    ({"region": "eu", "client_id": "c", "client_secret": "s", "author_id": "bob"}, "24-hex"),
    ({"region": "eu", "client_id": "c", "client_secret": "s", "author_id": AUTHOR, "default_progress": 101}, "default_progress"),
    ({"region": "eu", "client_id": "c", "client_secret": "s", "author_id": AUTHOR, "colour": "red"}, "colour"),
])
def test_bad_targets_name_the_field(settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        target_from_settings("acme", settings)
    assert "acme" in str(info.value)


def test_readable_targets_file_with_inline_secret_warns(tmp_path, caplog):
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.acme]\nregion = "eu"\nclient_id = "c"\nclient_secret = "inline-secret"\n'
                    f'author_id = "{AUTHOR}"\n')
    os.chmod(path, 0o644)
    load_targets(path)
    assert "readable by other users" in caplog.text and "inline-secret" not in caplog.text


def test_ledger_command_shows_a_learners_history(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    stat = Record("stat", "acme", "crs-1", "ada@acme.test", "ev-1", "f1")
    other = Record("stat", "acme", "crs-2", "ada@acme.test", "ev-2", "f2")
    ledger.mark([(stat, PARKED, None, None, "learner_unknown: no user", None)])
    ledger.mark([(stat, DELIVERED, "65c000000000000000000009", "65e000000000000000000001", None, {"progress": 40})])
    ledger.mark([(other, DELIVERED, "65c00000000000000000000a", "65e000000000000000000002", None, None)])
    ledger.close()
    assert cli.main(["--log-level", "WARNING", "ledger", "--ledger", str(path), "--course", "crs-1",
                     "--learner", "ada@acme.test", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["operation_id"], row["resource_id"], row["item"]) == \
           ("delivered", "65c000000000000000000009", "65e000000000000000000001", {"progress": 40})
    assert [h["status"] for h in row["history"]] == ["parked", "delivered"]
    assert cli.main(["--log-level", "WARNING", "ledger", "--ledger", str(path), "--learner", "ada@acme.test"]) == 0
    text = capsys.readouterr()
    assert "crs-1" in text.out and "crs-2" in text.out and "delivered=2" in text.err


def test_demo_runs_the_whole_path_and_reports_no_change_on_rerun(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    code = cli.main(["--log-level", "WARNING", "demo", "--out", str(out), "--contents", "8", "--learners", "5",
                     "--enrollments", "15"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "publisher, parked stats retried: stat_delivered=" in err and "360Learning unchanged" in err
    assert sum(1 for _ in out.open()) >= 8 + 15


def test_missing_targets_file_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["run", "--targets", str(tmp_path / "none.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err
