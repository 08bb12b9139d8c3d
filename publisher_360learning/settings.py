"""Where each connection's events go in 360Learning: the publisher's targets file (TOML).

.. code-block:: toml

    [targets.acme-coursera]                  # a connection name, as in the events
    region = "eu"                            # or base_url = "https://app.us.360learning.com"
    client_id = "5f0c…"
    client_secret = { env = "ACME_360_SECRET" }   # or { file = "secrets/acme-360" }
    author_id = "65a0000000000000000000a1"   # editor or admin of the synchronized group
    external_platform = "Coursera (Acme)"    # the label learners see; must not be reserved
    default_completion = true                # an attempt started in 360Learning counts as completed
    default_progress = 0
    no_group_propagation = false
    default_language = "en"                  # a course whose language 360Learning does not offer

The synchronized group is the one each event names (``group_id``). Connections sharing a
``client_id``, host *and secret* share one client: the company's token, rate limits and bulk
slots. A target naming the same client id with another secret gets a client of its own (and
360Learning's 401 when the secret is wrong), never the first one's session.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from hostspec.config.connections import (
    describe_messages,
    read_toml_tables,
    warn_if_readable_with_inline_secrets,
)
from hostspec.errors import ConfigError
from hostspec.config.policy import SettingsPolicy
from hostspec.config.reloading import ReloadingFile
from hostspec.secrets import Secret, SecretField

from . import contract
from .languages import LISTED_LANGUAGE

log = logging.getLogger(__name__)
TARGET_HOSTS = frozenset(url.split("://", 1)[1] for url in contract.REGIONS.values())
OBJECT_ID = validate.Regexp(r"^[a-fA-F0-9]{24}$", error="must be a 24-hex 360Learning id")


class TargetSchema(Schema):
    class Meta:
        unknown = RAISE

    region = fields.String(validate=validate.OneOf(sorted(contract.REGIONS)), load_default=None)
    base_url = fields.String(validate=validate.Regexp(r"^https?://[^\s/]+(:\d+)?/?$",
                                                      error="must be a scheme and host, like https://app.360learning.com"),
                             load_default=None)
    client_id = fields.String(required=True, validate=validate.Length(min=1))
    client_secret = SecretField(required=True)
    author_id = fields.String(required=True, validate=OBJECT_ID)
    external_platform = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    default_completion = fields.Boolean(load_default=True)
    default_progress = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0, max=100))
    no_group_propagation = fields.Boolean(load_default=False)
    default_language = fields.String(load_default=contract.DEFAULT_LANGUAGE, validate=LISTED_LANGUAGE)
    retry_initial_s = fields.Float(load_default=1.0, validate=validate.Range(min=0.001, max=60))
    poll_interval_s = fields.Float(load_default=0.5, validate=validate.Range(min=0.01, max=60))

    @validates_schema
    def _one_host(self, data: dict[str, Any], **_kw: Any) -> None:
        if (data.get("region") is None) == (data.get("base_url") is None):
            raise ValidationError({"region": ["give exactly one of region (eu, us) or base_url"]})


@dataclass(frozen=True)
class Target:
    connection: str
    base_url: str
    client_id: str
    client_secret: Secret
    author_id: str
    external_platform: str | None
    default_completion: bool
    default_progress: int
    no_group_propagation: bool
    default_language: str
    retry_initial_s: float
    poll_interval_s: float

    def label(self, provider: str) -> str:
        """The externalPlatform label; by default the provider's name with a suffix, since plain
        provider names may be reserved for 360Learning's own connectors."""
        return self.external_platform or f"{provider.replace('_', ' ').title()} (connector)"

    def integration_body(self, group_id: str, provider: str) -> dict[str, Any]:
        return {"externalPlatform": self.label(provider), "groupId": group_id, "authorId": self.author_id,
                "defaultCompletion": self.default_completion, "defaultProgress": self.default_progress,
                "noGroupPropagation": self.no_group_propagation}


def target_from_settings(connection: str, settings: Mapping[str, Any], *, source: str = "<in-memory>") -> Target:
    try:
        data = TargetSchema().load(dict(settings))
    except ValidationError as exc:
        raise ConfigError(f"{source}: target {connection!r}: {describe_messages(exc.messages)}") from None
    base_url = (data.pop("base_url") or contract.REGIONS[data["region"]]).rstrip("/")
    data.pop("region")
    return Target(connection=connection, base_url=base_url, **data)


def load_targets(path: str | os.PathLike[str]) -> dict[str, Target]:
    path = Path(path)
    table = read_toml_tables(path, "targets", "CONNECTION")
    warn_if_readable_with_inline_secrets(path, "targets", any(
        isinstance(e, Mapping) and isinstance(e.get("client_secret"), str) for e in table.values()))
    return {name: target_from_settings(name, entry if isinstance(entry, dict) else {}, source=str(path))
            for name, entry in table.items()}


def target_problems(policy: SettingsPolicy, connection: str, target: Mapping[str, Any],
                    tenant: str | None = None) -> dict[str, Any]:
    """What is wrong with a target stored on the control topic, by field (empty: nothing): the
    policy's rules for its host and secret reference (the ``tenant``'s), then the target schema."""
    problems = policy.target_problems(target, default_hosts=TARGET_HOSTS, tenant=tenant)
    if problems:
        return problems
    try:
        TargetSchema().load(dict(target))
    except ValidationError as exc:
        return exc.messages  # type: ignore[return-value]
    return {}


def targets_of(documents: Mapping[str, Mapping[str, Any]], policy: SettingsPolicy) -> dict[str, Target]:
    """The targets of the live connection documents that have a valid one (others are logged)."""
    out = {}
    for name, doc in documents.items():
        target = doc.get("target")
        if doc.get("deleted") or not target:
            continue
        problems = target_problems(policy, name, target, doc.get("tenant"))
        if problems:
            log.error("connection %s: target not used (%s)", name, describe_messages(problems))
            continue
        out[name] = target_from_settings(name, target, source="control topic")
    return out


class TargetsFromTopic:
    """The targets held by the connections of the control topic, followed live
    (:class:`hostspec.config.control_topic.ConnectionLog`): the same dict until one changes."""

    def __init__(self, log_: Any, policy: SettingsPolicy):
        self._log, self._policy = log_, policy
        self._version = -1
        self._targets: dict[str, Target] = {}

    def current(self) -> dict[str, Target]:
        version = self._log.version
        if version != self._version:
            self._targets = targets_of(self._log.documents(), self._policy)
            self._version = version
        return self._targets


class TargetsFile(ReloadingFile[dict[str, Target]]):
    """The targets file, re-read when it changes (a broken change keeps the last good version):
    a company added to the file is served without restarting the publisher."""

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(path, load_targets, what="targets file", describe=lambda t: f": {len(t)} targets")
