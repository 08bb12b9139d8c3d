"""`connector-host new-provider` makes a package that passes the conformance suite, and the
suite does fail a provider that breaks the rules."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hostspec import cli


def conformance(package_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_dir)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=package_dir, env=env, capture_output=True, text=True, timeout=120)


def test_the_template_passes_the_conformance_suite(tmp_path, capsys):
    assert cli.main(["new-provider", "acme_academy", "--dest", str(tmp_path), "--title", "Acme Academy"]) == 0
    package = tmp_path / "connector-acme-academy"
    assert (package / "connector_acme_academy" / "plugin.py").exists()
    assert 'acme_academy = "connector_acme_academy.plugin"' in (package / "pyproject.toml").read_text()
    done = conformance(package)
    assert done.returncode == 0 and " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]


@pytest.mark.parametrize("file, old, new, failing", [
    ("plugin.py", 'yield from client.items("/courses")', 'return list(client.items("/courses"))',
     "test_fetch_hooks_stream"),
    ("mapping.py", '"language": record.get("language") or "en"', '"language": "English"',
     "test_a_full_sync_emits_valid_events_and_rejects_nothing"),
    ("mapping.py", '"attempt_id": f"{record[\'learner_id\']}~{record[\'course_id\']}"',
     '"attempt_id": str(__import__("uuid").uuid4())', "test_event_ids_are_deterministic"),
])
def test_the_suite_fails_a_provider_that_breaks_a_rule(tmp_path, file, old, new, failing):
    cli.main(["new-provider", "broken", "--dest", str(tmp_path)])
    package = tmp_path / "connector-broken"
    path = package / "connector_broken" / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    done = conformance(package)
    assert done.returncode != 0 and failing in done.stdout, done.stdout[-2000:]


def test_bad_names_and_existing_folders_are_refused(tmp_path, capsys):
    assert cli.main(["new-provider", "Bad-Name", "--dest", str(tmp_path)]) == 2
    assert cli.main(["new-provider", "ok_name", "--dest", str(tmp_path)]) == 0
    assert cli.main(["new-provider", "ok_name", "--dest", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
