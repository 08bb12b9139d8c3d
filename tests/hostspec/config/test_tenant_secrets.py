"""Secrets are namespaced per tenant by default (issue 27): a tenant's references reach its own
``CONNECTOR_SECRET_<TENANT>__…`` variables and ``<dir>/<tenant>/`` files, anything else only by an
operator's ``[[shared_secrets]]`` grant; refused by the API (422), and again by the worker and the
publisher when such a document reaches the control topic past the API."""
from __future__ import annotations

import logging
import re
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hostspec.config import documents as docs
from hostspec.cli.connections import import_connections
from hostspec.control.plane import ControlPlane
from hostspec.requests import SyncRequest
from hostspec.errors import ConfigError
from hostspec.config.policy import SettingsPolicy
from hostspec.config.tenant_secrets import env_tenant
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import MemoryControl
from hostspec.runtime.worker import Refusal, admit
from publisher_360learning.settings import target_problems, targets_of

README = Path(__file__).resolve().parents[3] / "README.md"
GROUP = "65a1b2c3d4e5f60718293a4b"
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def env(name):
    return {"env": name}


@pytest.mark.parametrize("tenant, ref, ok", [
    ("acme", "CONNECTOR_SECRET_ACME__COURSERA", True),
    ("initech", "CONNECTOR_SECRET_ACME__COURSERA", False),      # another tenant's
    ("initech", "CONNECTOR_SECRET_ACME", False),                # the review's case: no namespace at all
    ("initech", "CONNECTOR_SECRET_INITECH", False),             # the namespace is INITECH__, closed by __
    ("acme", "CONNECTOR_SECRET_ACME_EU__COURSERA", False),      # acme-eu's: a longer tenant, not acme's
    ("acme-eu", "CONNECTOR_SECRET_ACME_EU__COURSERA", True),
    ("Acme.EU--x", "CONNECTOR_SECRET_ACME_EU_X__K", True),
    ("acme", "KAFKA_SASL_PASSWORD", False),
    (None, "CONNECTOR_SECRET_ACME__COURSERA", False),           # no tenant: no namespace
])
def test_the_default_policy_keeps_each_tenant_to_its_own_variables(tenant, ref, ok):
    problem = SettingsPolicy().secret_problem(env(ref), tenant)
    assert (problem is None) is ok, problem
    if not ok:                  # the tenant's own namespace only; the refused reference is not quoted back
        own = env_tenant(tenant)
        assert problem == "environment variable outside this tenant's secrets (allowed: " + \
            (f"CONNECTOR_SECRET_{own}__…)" if own else "none)")


def test_tenant_names_never_nest_in_the_environment():
    assert [env_tenant(t) for t in ("acme", "acme-eu", "a--b", "-x-", "ACME.EU", "..")] == \
           ["ACME", "ACME_EU", "A_B", "X", "ACME_EU", None]
    assert all("__" not in env_tenant(t) for t in ("a__b", "a_-_b", "a.:b"))


def test_files_lie_under_the_tenants_own_directory(tmp_path):
    for tenant in ("acme", "initech"):
        (tmp_path / tenant).mkdir()
        (tmp_path / tenant / "coursera").write_text("s")
    (tmp_path / "loose").write_text("s")
    (tmp_path / "initech" / "link").symlink_to(tmp_path / "acme" / "coursera")
    policy = SettingsPolicy(secret_dirs=(str(tmp_path),))
    assert policy.secret_problem({"file": str(tmp_path / "acme" / "coursera")}, "acme") is None
    for tenant, path in (("initech", "acme/coursera"), ("acme", "loose"), ("initech", "link"),
                         ("initech", "initech/../acme/coursera"), ("initech", "initech/link"), ("..", "acme/coursera")):
        problem = policy.secret_problem({"file": str(tmp_path / path)}, tenant)
        assert problem is not None, (tenant, path)
        assert tenant == "acme" or "acme" not in problem.replace(str(tmp_path), ""), problem
    assert "no directory" in SettingsPolicy().secret_problem({"file": "/run/secrets/x"}, "acme")


def test_sharing_across_tenants_only_by_an_explicit_grant(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "coursera").write_text("s")
    policy = SettingsPolicy.from_mapping({"shared_secrets": [
        {"env_prefix": "CONNECTOR_SHARED_COURSERA_", "tenants": ["acme", "initech"]},
        {"dir": str(tmp_path / "shared"), "tenants": ["*"]}]})
    for tenant in ("acme", "initech"):
        assert policy.secret_problem(env("CONNECTOR_SHARED_COURSERA_KEY"), tenant) is None
    problem = policy.secret_problem(env("CONNECTOR_SHARED_COURSERA_KEY"), "globex")
    assert problem is not None and "SHARED" not in problem          # a grant to others is not shown to globex
    assert policy.secret_problem({"file": str(tmp_path / "shared" / "coursera")}, "globex") is None
    assert policy.secret_problem({"file": str(tmp_path / "shared" / "coursera")}, None) is not None


@pytest.mark.parametrize("entry, words", [
    ({"tenants": ["a"]}, "exactly one of env_prefix or dir"),
    ({"env_prefix": "X_", "dir": "/d", "tenants": ["a"]}, "exactly one"),
    ({"env_prefix": "X_", "tenants": []}, "tenants must list"),
    ({"env_prefix": "X-Y", "tenants": ["a"]}, "start of a variable name"),
    ({"dir": "relative", "tenants": ["a"]}, "absolute"),
    ({"env_prefix": "X_", "tenants": ["a"], "mode": "rw"}, "unknown keys mode"),
    ("X_", "must be a table"),
])
def test_a_malformed_grant_is_refused_at_start(entry, words):
    with pytest.raises(ConfigError, match=words):
        SettingsPolicy.from_mapping({"shared_secrets": [entry]})


# -- where tenant-authored documents are checked ----------------------------------------------------
def body(tenant, secret, target_secret=None):
    doc = {"tenant": tenant, "provider": "coursera", "group_id": GROUP,
           "settings": {"org_id": "DjYCkBQTQV69TtWA7RuNug", "client_id": f"{tenant}-key", "client_secret": env(secret)}}
    if target_secret:
        doc["target"] = {"region": "eu", "client_id": f"{tenant}-360", "author_id": "65a0000000000000000000a1",
                         "client_secret": env(target_secret)}
    return doc


def plane_of(policy):
    control = MemoryControl(policy)
    return control, ControlPlane(plugins_(), KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                                 log=control, writer=control,
                                 target_check=lambda n, t, tenant: target_problems(policy, n, t, tenant))


def plugins_():
    from hostspec.engine.plugins import get_plugin_manager
    return get_plugin_manager()


@pytest.mark.parametrize("secret, target_secret, field", [
    ("CONNECTOR_SECRET_ACME__COURSERA", None, "settings"),
    ("CONNECTOR_SECRET_INITECH__COURSERA", "CONNECTOR_SECRET_ACME__360LEARNING", "target"),
])
def test_another_tenants_secret_is_refused_by_the_api_the_worker_and_the_publisher(secret, target_secret, field,
                                                                                    plugins, caplog):
    from hostspec.errors import SettingsRefused
    policy = SettingsPolicy()
    control, plane = plane_of(policy)
    plane.put("acme-coursera", body("acme", "CONNECTOR_SECRET_ACME__COURSERA", "CONNECTOR_SECRET_ACME__360LEARNING"),
              actor="api:acme")
    with pytest.raises(SettingsRefused) as refused:                   # the API answers 422 with this
        plane.put("initech-coursera", body("initech", secret, target_secret), actor="api:initech")
    assert field in refused.value.messages and "ACME" not in str(refused.value)
    assert "initech-coursera" not in control.documents()

    # written to the control topic past the API: the worker refuses its requests ...
    doc = docs.document("initech-coursera", body("initech", secret, target_secret), revision=1,
                        changed_by="rogue", now=NOW, target=body("initech", secret, target_secret).get("target"))
    control.write(doc, NOW)
    request = SyncRequest("r-1", "initech-coursera", "coursera", "all").to_event(NOW).to_json().encode()
    admitted = admit(request, control.store(), plugins)
    if field == "settings":
        assert isinstance(admitted, Refusal) and "settings refused by the policy" in admitted.reason
        assert "ACME" not in admitted.reason + str(admitted.errors)
    else:                                                             # its settings are its own: it syncs
        assert not isinstance(admitted, Refusal)
    # ... and the publisher does not use its target (its events end as no_target dead letters)
    with caplog.at_level(logging.ERROR):
        targets = targets_of(control.documents(), policy)
    assert set(targets) == {"acme-coursera"}
    if field == "target":
        assert "initech-coursera: target not used" in caplog.text and "ACME" not in caplog.text
    assert not isinstance(admit(request.replace(b"initech-coursera", b"acme-coursera"), control.store(), plugins),
                          Refusal)                                    # acme's own goes on


def test_the_readme_walkthroughs_own_files_import_without_edits(plugins):
    text = README.read_text(encoding="utf-8")
    walkthrough = text[text.index("## Event-driven: the worker on Kafka"):text.index("### Guarantees")]
    files = dict(re.findall(r"cat > (\S+) <<'TOML'\n(.*?)\nTOML\n", walkthrough, re.S))
    assert set(files) == {"connections.toml", "targets.toml"}
    entries = tomllib.loads(files["connections.toml"])["connections"]
    targets = tomllib.loads(files["targets.toml"])["targets"]
    policy = SettingsPolicy(allow_sandboxes=True)                     # the defaults + --allow-sandboxes
    control, plane = plane_of(policy)
    assert import_connections(plane, entries, targets, actor="cli:readme") == 0
    assert set(control.documents()) == set(entries) and all(d["target"] for d in control.documents().values())
    assert set(targets_of(control.documents(), policy)) == set(targets)
    for name in entries:
        request = SyncRequest("r", name, "coursera", "all").to_event(NOW).to_json().encode()
        assert not isinstance(admit(request, control.store(), plugins), Refusal)
