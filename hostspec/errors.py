"""Errors of the host and the base classes providers raise.

::

    HostError                         anything the host reports to a person
    ├── ConfigError                   a settings file or a connection is wrong; fix config, do not retry
    │   ├── SettingsRefused           a connection's settings break its provider's schema or the policy
    │   ├── UnknownConnectionError    a request names a connection that is not configured
    │   └── UnknownProviderError      a request names a provider that is not installed
    ├── PluginError                   a provider plugin cannot be loaded or breaks the hook contract
    ├── InvalidRequestError           a sync request does not follow learning.sync.requested.v1
    ├── TransportError                Kafka cannot be reached or refuses a set-up call
    └── ProviderError                 raised by provider code while talking to its API
        ├── ProviderConfigError       credentials, entitlements, ids: retrying will not help
        ├── ProviderTransientError    throttling, 5xx, network: a later run may succeed
        └── ProviderSystemError       the provider answered something we cannot interpret

Two exceptions are not errors of a provider and never end as a ``failed`` status: the run must
be redone instead. ``DeliveryError``: events could not be handed to the transport (Kafka down,
a transaction aborted). ``RunAbandoned``: the worker gave the request up (shutdown, lost
partition, lost group membership). ``PermanentDeliveryError`` is the exception to the exception:
Kafka refuses the write for good (record too large, not authorised), so redoing the run cannot
help; the worker ends the request as ``failed`` instead of retrying it for ever.

``EventTooLarge`` is raised by a sink for one event larger than the transport accepts; the engine
turns the record into a (size-bounded) rejection and goes on.

``RecordRejected`` is not an error of the run: a provider raises it from a ``map_*`` hook when one
record cannot be mapped; the host turns it into a ``learning.record.rejected.v1`` event and goes on.

Messages never contain secret values; see :mod:`hostspec.secrets`.
"""
from __future__ import annotations

from typing import Any


class HostError(Exception):
    """Base of every error the host reports. ``kind`` groups errors for status events."""

    kind = "system"


class ConfigError(HostError):
    kind = "config"


class SecretUnavailable(ConfigError, LookupError):
    """A secret reference names an environment variable that is not set, or a file that cannot
    be read (a configuration error; a ``LookupError`` for the callers that catch those)."""


class SettingsRefused(ConfigError):
    """A connection's settings break its provider's schema or the deployment's settings policy
    (:mod:`hostspec.config.policy`); ``messages`` maps each field to what is wrong with it."""

    def __init__(self, message: str, messages: dict[str, Any]):
        self.messages = messages
        super().__init__(message)


class DocumentRefused(SettingsRefused):
    """A connection document breaks the event schema itself (a field unknown, missing or
    mistyped), before its provider's settings or the policy are looked at."""


class RevisionConflict(ConfigError):
    """A connection change was computed from a revision that is no longer the latest (another
    writer changed it meanwhile); nothing was stored (HTTP 409)."""

    kind = "conflict"


class UnknownConnectionError(ConfigError):
    """No connection ``name``. The message names only ``name``: it reaches the requester's
    status and dead letters, and the other connections are other tenants'. ``operator_message``
    adds a few of the configured names, for an operator's own command line."""

    LISTED = 20    # a fleet has thousands of connections: an operator is shown a few at most

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown connection {name!r}")

    @property
    def operator_message(self) -> str:
        listed = ", ".join(self.known[:self.LISTED]) or "none"
        more = f" and {len(self.known) - self.LISTED} more" if len(self.known) > self.LISTED else ""
        return f"{self}; configured connections: {listed}{more}"


class UnknownProviderError(ConfigError):
    def __init__(self, name: str, installed: list[str]):
        self.name = name
        self.installed = sorted(installed)
        listed = ", ".join(self.installed) or "none"
        super().__init__(f"unknown provider {name!r}; installed providers: {listed}")


class PluginError(HostError):
    kind = "plugin"

    def __init__(self, plugin_name: str, message: str):
        self.plugin_name = plugin_name
        super().__init__(f"provider plugin {plugin_name!r}: {message}")


class InvalidRequestError(HostError):
    kind = "invalid_request"

    def __init__(self, message: str, messages: Any = None):
        self.messages = messages
        super().__init__(message)


class TransportError(HostError):
    kind = "transport"


class ProviderError(HostError):
    """Raised by provider code; subclasses say whether retrying later can help."""

    kind = "provider"
    retryable = False


class ProviderConfigError(ProviderError):
    kind = "provider_config"


class ProviderTransientError(ProviderError):
    kind = "provider_transient"
    retryable = True


class ProviderSystemError(ProviderError):
    kind = "provider_system"


class DeliveryError(Exception):
    """Events could not be delivered; the request stays uncommitted and is processed again."""


class PermanentDeliveryError(DeliveryError):
    """Kafka refuses the write for a reason a retry cannot fix (size, authorisation, topic)."""


class EventTooLarge(Exception):
    """One event is larger than the transport accepts (``size`` and ``limit`` in bytes)."""

    def __init__(self, event_type: str, size: int, limit: int):
        self.event_type, self.size, self.limit = event_type, size, limit
        super().__init__(f"{event_type} event of {size} bytes exceeds the {limit}-byte limit")


class RunAbandoned(Exception):
    """The worker stopped this run on purpose; the request stays uncommitted."""


def scalar_id(value: Any) -> str | None:
    """A record id as the host keeps it: a non-empty string, or the text of an integer (or of
    another scalar); None for anything else (booleans, containers, empty strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


class RecordRejected(Exception):
    """One provider record cannot become an event.

    :param record_id: the provider's id of the record, when it has one: a string or any scalar
        (an integer id is kept as its text). For a catalog item it is the ``external_id`` the item
        would have had: the host then knows the item is still listed and removes nothing.
    :param messages: marshmallow-style messages (``{field: [message, ...]}``) or a string.
    """

    def __init__(self, record_id: Any, messages: Any):
        self.record_id = scalar_id(record_id)
        self.messages = messages
        super().__init__(f"record {record_id!r} rejected: {messages}")


__all__ = [
    "ConfigError",
    "DeliveryError",
    "DocumentRefused",
    "EventTooLarge",
    "HostError",
    "InvalidRequestError",
    "PermanentDeliveryError",
    "PluginError",
    "ProviderConfigError",
    "RevisionConflict",
    "SettingsRefused",
    "ProviderError",
    "ProviderSystemError",
    "ProviderTransientError",
    "RecordRejected",
    "RunAbandoned",
    "TransportError",
    "UnknownConnectionError",
    "UnknownProviderError",
]
