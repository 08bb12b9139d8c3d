"""The targets file and the ledger command."""
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


def test_missing_targets_file_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["run", "--targets", str(tmp_path / "none.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def _targets_file(tmp_path, lms, name="acme"):
    path = tmp_path / "targets.toml"
    s = lms.settings
    path.write_text(f'[targets.{name}]\nbase_url = "{s["base_url"]}"\nclient_id = "{s["client_id"]}"\n'
                    f'client_secret = "{s["client_secret"]}"\nauthor_id = "{s["author_id"]}"\n')
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("without", [None, "courseStats:read"])
def test_check_names_a_missing_read_scope(tmp_path, capsys, without):
    from publisher_360learning.sandbox import CLIENT_ID, CLIENT_SECRET, Learning360Sandbox
    from publisher_360learning.sandbox.auth import ALL_SCOPES

    scopes = set(ALL_SCOPES) - {without}
    with Learning360Sandbox(users=["admin@acme.test"], credentials={CLIENT_ID: (CLIENT_SECRET, scopes)}) as lms:
        lms.company.add_user("author@acme.test", user_id=lms.settings["author_id"])
        code = cli.main(["check", "--targets", str(_targets_file(tmp_path, lms)), "--connection", "acme"])
    err = capsys.readouterr().err
    assert (code, "courseStats:read" in err) == ((1, True) if without else (0, False))


def test_the_targets_file_is_read_again_when_it_changes_and_a_broken_edit_is_ignored(tmp_path):
    import time as _time

    from publisher_360learning.settings import TargetsFile

    path = tmp_path / "targets.toml"
    entry = f'client_id = "c"\nclient_secret = {{ env = "T360" }}\nauthor_id = "{AUTHOR}"\nregion = "eu"\n'
    path.write_text(f"[targets.acme]\n{entry}")
    file = TargetsFile(path)
    first = file.current()
    assert list(first) == ["acme"] and file.current() is first
    _time.sleep(0.01)
    path.write_text(f"[targets.acme]\n{entry}\n[targets.globex]\n{entry}")
    os.utime(path, (_time.time() + 5, _time.time() + 5))
    assert sorted(file.current()) == ["acme", "globex"]
    path.write_text("[targets.acme\nbroken")
    os.utime(path, (_time.time() + 10, _time.time() + 10))
    assert sorted(file.current()) == ["acme", "globex"]
