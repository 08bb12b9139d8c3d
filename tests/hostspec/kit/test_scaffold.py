"""`connector-host new-provider` makes a package that passes the conformance suite, and the
suite does fail a provider that breaks the rules."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import hostspec
from hostspec.cli import main as cli


def conformance(package_dir) -> subprocess.CompletedProcess:
    # the hostspec under test (this checkout), not whichever one is installed
    host_root = os.path.dirname(os.path.dirname(os.path.abspath(hostspec.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_dir), host_root])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=package_dir, env=env, capture_output=True, text=True, timeout=120)


def test_the_template_passes_the_conformance_suite(tmp_path, capsys):
    assert cli.main(["new-provider", "acme_academy", "--dest", str(tmp_path), "--title", "Acme Academy"]) == 0
    package = tmp_path / "connector-acme-academy"
    assert (package / "connector_acme_academy" / "plugin.py").exists()
    assert 'acme_academy = "connector_acme_academy.plugin"' in (package / "pyproject.toml").read_text()
    done = conformance(package)
    assert done.returncode == 0 and " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-2000:]


MISTAKES = {
    # name: ([(file, old, new), ...], the check that must fail, words its message must hold)
    "a list instead of a stream": ([("plugin.py", 'yield from client.items("/courses")',
                                     'return list(client.items("/courses"))')],
                                   "test_fetch_hooks_stream", "must stream"),
    "an invalid language code": ([("mapping.py", '"language": record.get("language") or "en"', '"language": "English"')],
                                 "test_a_full_sync_emits_valid_events_and_rejects_nothing", "language"),
    "random attempt ids": ([("mapping.py", '"attempt_id": f"{record[\'learner_id\']}~{record[\'course_id\']}"',
                             '"attempt_id": str(__import__("uuid").uuid4())')],
                           "test_event_ids_are_deterministic", "assert"),
    "integer ids passed through": ([("sandbox.py", '"id": f"c{n}"', '"id": n'),
                                    ("mapping.py", '"external_id": course_id', '"external_id": record["id"]')],
                                   "test_a_full_sync_emits_valid_events_and_rejects_nothing", "external_id"),
    "record_id naming items otherwise": ([("plugin.py", 'value = record.get("id") if scope == "catalog" else None',
                                           'value = record.get("title") if scope == "catalog" else None')],
                                         "test_record_id_names_each_catalog_item_as_map_course_does",
                                         "Implement the record_id hook"),
    "since ignored": ([("plugin.py", 'start=start, since=since, until=until', 'start=start, since=None, until=until')],
                      "test_since_and_until_are_honoured", "since is"),
    "one page read": ([("client.py", "        return offset_pages(",
                        "        return iter(self.get(path, {'offset': start, 'limit': PAGE_SIZE, **window})['items'])"
                        "\n        return offset_pages(")],
                      "test_every_page_is_read", "read every page"),
    "datetime objects": ([("mapping.py", '"as_of": now.isoformat()', '"as_of": now')],
                         "test_a_full_sync_emits_valid_events_and_rejects_nothing", "a datetime object"),
    "no retries": ([("client.py", "return self._retrying(self._get, path, params)", "return self._get(path, params)")],
                   "test_transient_answers_are_retried", "retry transient answers"),
    "resume ignored": ([("plugin.py", "start = context.resume if isinstance(context.resume, int) else 0", "start = 0")],
                       "test_a_progress_fetch_resumes_from_a_page_cursor", "start from context.resume"),
    "the time of the sync in the data": ([("mapping.py", '"description": record.get("description")',
                                           '"description": f"{record.get(\'description\')} {__import__(\'time\').time()}"')],
                                         "test_a_second_sync_of_unchanged_data_emits_nothing", "description"),
    "no completion date": ([("mapping.py", '"completed_at": done if completed else None', '"completed_at": None')],
                           "test_completed_stats_carry_a_completion_date", "derive one"),
    "minutes of content as seconds": ([("mapping.py", '"duration_minutes": record.get("minutes")',
                                        '"duration_minutes": 60 * record.get("minutes", 0)')],
                                      "test_golden_records_map_as_expected", "duration_minutes: expected 37, got 2220"),
    "a progress change dated outside the host's window": (
        [("sandbox.py", "last_activity_at=at.astimezone(timezone.utc).isoformat())",
          "last_activity_at=(at - timedelta(days=30)).astimezone(timezone.utc).isoformat())")],
        "test_an_incremental_sync_sees_a_progress_change", "sandbox_epoch"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_the_suite_fails_a_provider_that_breaks_a_rule_and_says_which(tmp_path, mistake):
    edits, failing, words = MISTAKES[mistake]
    cli.main(["new-provider", "broken", "--dest", str(tmp_path)])
    package = tmp_path / "connector-broken"
    for file, old, new in edits:
        path = package / "connector_broken" / file
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new))
    done = conformance(package)
    failed = re.findall(r"^FAILED \S+::(\w+)", done.stdout, re.M)
    assert done.returncode != 0 and failing in failed, done.stdout[-3000:]
    assert words in done.stdout, f"the failure does not say {words!r}:\n{done.stdout[-3000:]}"


def test_bad_names_and_existing_folders_are_refused(tmp_path, capsys):
    assert cli.main(["new-provider", "Bad-Name", "--dest", str(tmp_path)]) == 2
    assert cli.main(["new-provider", "ok_name", "--dest", str(tmp_path)]) == 0
    assert cli.main(["new-provider", "ok_name", "--dest", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err


def test_the_template_sandbox_takes_the_cli_options_and_pages(tmp_path, monkeypatch):
    import importlib

    import requests

    cli.main(["new-provider", "opts", "--dest", str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path / "connector-opts"))
    plugin = importlib.import_module("connector_opts.plugin")
    sandbox = plugin.start_sandbox({"contents": 20, "learners": 4, "enrollments": 30, "broken_every": 5})
    try:
        assert sandbox.expected == {"catalog": 20, "progress": 30}
        assert sum("title" not in c for c in sandbox.courses) == 4           # every 5th lacks a field
        headers = {"Authorization": f"Bearer {sandbox.settings['api_key']}"}
        page = requests.get(sandbox.url + "/courses", params={"offset": 0, "limit": 50}, headers=headers, timeout=5).json()
        assert (len(page["items"]), page["total"]) == (sandbox.page_size, 20)    # pages, with a total
        assert requests.post(sandbox.url + "/_sandbox/faults", json={"action": "status_429", "retry_after": 1},
                             timeout=5).status_code == 201
        throttled = requests.get(sandbox.url + "/courses", headers=headers, timeout=5)
        assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    finally:
        sandbox.close()
