"""The Kafka rights of each component (hostspec.transport.acls): least privilege, as data."""
from __future__ import annotations

from hostspec.topics import Topics
from hostspec.transport.acls import Groups, grants, main


def rights(principal: str, topics: Topics = Topics()) -> set[tuple[str, str, str]]:
    return {(g.operation, g.resource, g.name) for g in grants(topics) if g.principal == principal}


def test_the_request_only_principal_writes_requests_and_reads_statuses_nothing_more():
    t = Topics()
    assert rights("User:requester") == {("WRITE", "topic", t.requests), ("READ", "topic", t.status)}


def test_only_the_worker_writes_events_and_state_and_nobody_else_creates_the_hosts_topics():
    t = Topics()
    writers = {g.principal for g in grants(t) if g.operation == "WRITE" and g.name in (t.courses, t.learner_stats, t.state)}
    assert writers == {"User:worker"}
    assert [(g.principal, g.name) for g in grants(t) if g.operation == "CREATE"] == [
        ("User:publisher", "publisher-360learning.ledger")]   # its own journal, nothing of the host's


def test_groups_and_transactional_ids_follow_the_prefix_and_group_ids():
    t = Topics().with_prefix("prod.")
    found = grants(t, groups=Groups(worker="prod.workers"))
    assert [(g.name, g.prefixed) for g in found if g.resource == "transactional_id" and g.principal == "User:worker"] \
        == [("prod.workers.", True)]
    assert ("READ", "topic", "prod.publisher-360learning.ledger") in rights("User:publisher", t)
    assert all(g.name.startswith("prod.") or g.resource != "topic" for g in found)


def test_printed_as_kafka_acls_commands(capsys):
    assert main(["print", "--topic-prefix", ""]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(grants(Topics()))
    assert ("kafka-acls.sh --bootstrap-server <broker> --add --allow-principal User:worker --operation Write "
            "--transactional-id connector-host. --resource-pattern-type prefixed") in lines
