"""Secrets and access: client secrets and tokens never appear in any output of a full pipeline
run (logs, every topic, dead letters, the ledger, errors, reprs); sandboxes bind to loopback only;
readable files with inline secrets warn; Kafka SASL/TLS settings are passed through."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.config.connections import ConnectionStore
from hostspec.secrets import Secret
from hostspec.transport.config import KafkaConfig
from publisher_360learning.sandbox import CLIENT_ID, SYNC_GROUP, Learning360Sandbox
from tests.integration.conftest import ServiceProcess, final_status, publish_raw, read_topic, request_event
from tests.integration.test_publisher import request as publish_request

pytestmark = pytest.mark.kafka
COURSERA_SECRET = "Cs-3f9a-distinctive-coursera-secret"
LMS_SECRET = "Ls-77b1-distinctive-360learning-secret"
WRONG_SECRET = "Ws-0c2e-wrong-but-secret-too"


def test_no_secret_or_token_in_any_output(tmp_path, bootstrap, prefix, topics, figures):
    with CourseraSandbox(OrgSpec(contents=8, learners=6, enrollments=24, broken_every=5),
                         client_secret=COURSERA_SECRET) as coursera:
        mails = sorted({coursera.org.row(i)["email"] for i in coursera.report_rows()})
        with Learning360Sandbox(users=mails[1:], credentials={CLIENT_ID: (LMS_SECRET, {
                "integrations:read", "integrations:write", "integrations:bulk", "bulkOperations:read", "users:read",
                "tags:read", "tags:write", "courses:write"})}) as lms:
            (tmp_path / "coursera.secret").write_text(COURSERA_SECRET)
            conns = tmp_path / "c.toml"
            conns.write_text(f"""
[connections.acme]
tenant = "acme"
provider = "coursera"
group_id = "{SYNC_GROUP}"
[connections.acme.settings]
org_id = "{coursera.spec.org_id}"
client_id = "standin-key"
client_secret = {{ file = "coursera.secret" }}
base_url = "{coursera.url}"
[connections.wrong]
tenant = "acme"
provider = "coursera"
group_id = "{SYNC_GROUP}"
[connections.wrong.settings]
org_id = "{coursera.spec.org_id}"
client_id = "standin-key"
client_secret = {{ env = "WRONG_SECRET" }}
base_url = "{coursera.url}"
""")
            targets = tmp_path / "targets.toml"
            targets.write_text(f'[targets.acme]\nbase_url = "{lms.url}"\nclient_id = "{CLIENT_ID}"\n'
                               f'client_secret = {{ env = "LMS_SECRET" }}\nauthor_id = "65a0000000000000000000a1"\n'
                               f'retry_initial_s = 0.05\n[targets.wrong]\nbase_url = "{lms.url}"\n'
                               f'client_id = "{CLIENT_ID}"\nclient_secret = {{ env = "WRONG_SECRET" }}\n'
                               f'author_id = "65a0000000000000000000a1"\n')
            env = {"LMS_SECRET": LMS_SECRET, "WRONG_SECRET": WRONG_SECRET, "KAFKA_SASL_PASSWORD": "unused-sasl-pw"}
            worker = ServiceProcess(tmp_path, "worker", [
                sys.executable, "-m", "hostspec", "--log-level", "DEBUG", "--connections", str(conns), "run",
                "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}g",
                "--worker-id", "ws"], env)
            publisher = ServiceProcess(tmp_path, "publisher", [
                sys.executable, "-m", "publisher_360learning.cli", "--log-level", "DEBUG", "run", "--targets",
                str(targets), "--ledger", str(tmp_path / "ledger.sqlite"), "--bootstrap-servers", bootstrap,
                "--topic-prefix", prefix, "--group-id", f"{prefix}p", "--batch-seconds", "0.5"], env)
            try:
                worker.wait_for(r"serves partitions \[")
                publisher.wait_for("publisher assigned")
                requests.post(coursera.url + "/_sandbox/faults", timeout=5,
                              json={"action": "expire_token", "route": "*/enrollmentReports", "times": 1})
                ok = final_status(bootstrap, topics, publish_request(bootstrap, topics))
                bad_id, bad = request_event("wrong")
                publish_raw(bootstrap, topics.requests, bad, key=b"wrong")
                failed = final_status(bootstrap, topics, bad_id)
                deadline = time.monotonic() + 60
                while "stat_parked" not in publisher.log() and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                worker.stop(timeout=20)
                publisher.stop(timeout=20)
            tokens = list(coursera.tokens) + list(lms.tokens)
    assert ok["phase"] == "partial" and failed["phase"] == "failed" and "stat_parked" in publisher.log()
    outputs = {"worker log": worker.log(), "publisher log": publisher.log()}
    for name in ("requests", "courses", "learner_stats", "status", "dead_letter", "state", "parked"):
        topic = getattr(topics, name)
        outputs[f"topic {name}"] = "\n".join(f"{k!r} {v!r}" for k, v in read_topic(bootstrap, topic, timeout=15,
                                                                                   raw=True))
    outputs["ledger"] = Path(tmp_path / "ledger.sqlite").read_bytes().decode("utf-8", "replace")
    needles = [COURSERA_SECRET, LMS_SECRET, WRONG_SECRET, "unused-sasl-pw", *tokens]
    leaks = [(where, n[:6] + "…") for where, text in outputs.items() for n in needles if n in text]
    scanned = sum(len(t) for t in outputs.values())
    figures.add("outputs scanned (bytes)", scanned)
    figures.add("secrets and tokens looked for", len(needles))
    figures.add("leaks found", len(leaks), "0", not leaks)
    assert not leaks, leaks
    assert len(tokens) >= 3 and outputs["topic dead_letter"] and outputs["topic state"]


def test_reprs_and_errors_hide_secrets(figures):
    secret = Secret(value="Rv-inline-secret-value")
    config = KafkaConfig.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                   "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "x",
                                   "KAFKA_SSL_CAFILE": "/etc/ca.pem", "KAFKA_SSL_CERTFILE": "/etc/c.pem",
                                   "KAFKA_SSL_KEYFILE": "/etc/k.pem"})
    os.environ["KAFKA_SASL_PASSWORD_TEST"] = "Sasl-pw-distinct"
    kw = KafkaConfig(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="svc",
                     sasl_password=Secret(env="KAFKA_SASL_PASSWORD_TEST"), ssl_cafile="/etc/ca.pem").client_kwargs()
    passed = (kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"],
              kw["ssl_cafile"]) == ("SASL_SSL", "PLAIN", "svc", "Sasl-pw-distinct", "/etc/ca.pem")
    hidden = "Rv-inline" not in repr(secret) + str(secret) and "Sasl-pw" not in repr(config) + repr(
        KafkaConfig(sasl_password=Secret(env="KAFKA_SASL_PASSWORD_TEST")))
    assert config.ssl_keyfile == "/etc/k.pem" and config.sasl_mechanism == "SCRAM-SHA-512"
    figures.add("SASL/TLS settings passed to the client", "yes" if passed else "no", "yes", passed)
    figures.add("secrets hidden from repr/str", "yes" if hidden else "no", "yes", hidden)
    assert passed and hidden


def test_sandboxes_bind_to_loopback_only(figures):
    refused = 0
    for cls in (CourseraSandbox, Learning360Sandbox):
        with pytest.raises(ValueError, match="loopback"):
            cls(host="0.0.0.0")
        refused += 1
    for command in (["coursera-sandbox", "--host", "0.0.0.0", "--port", "0"],
                    ["learning360-sandbox", "--host", "0.0.0.0", "--port", "0"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "loopback" in done.stderr, done.stderr
        refused += 1
    figures.add("non-loopback binds refused (API and CLI)", refused, "4", refused == 4)


def test_readable_files_with_inline_secrets_warn(tmp_path, caplog, figures):
    from publisher_360learning.settings import load_targets

    conns, targets = tmp_path / "c.toml", tmp_path / "t.toml"
    conns.write_text('[connections.a]\ntenant = "a"\nprovider = "coursera"\ngroup_id = "g"\n'
                     '[connections.a.settings]\norg_id = "o"\nclient_id = "c"\nclient_secret = "In-line-1"\n')
    targets.write_text('[targets.a]\nregion = "eu"\nclient_id = "c"\nclient_secret = "In-line-2"\n'
                       'author_id = "65a0000000000000000000a1"\n')
    for path in (conns, targets):
        path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        ConnectionStore.from_file(conns)
        load_targets(targets)
    warnings = [r for r in caplog.records if "readable by other users" in r.getMessage()]
    conns.chmod(0o600)
    caplog.clear()
    ConnectionStore.from_file(conns)
    quiet = not any("readable" in r.getMessage() for r in caplog.records)
    figures.add("world-readable secret files warned", len(warnings), "2", len(warnings) == 2)
    assert len(warnings) == 2 and quiet and "In-line" not in caplog.text
