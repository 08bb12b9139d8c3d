"""hostspec: the contract provider plugins depend on, and the reference host that runs them.

A provider author needs only this surface (and the toolbox, :mod:`hostspec.kit`)::

    from hostspec import hookimpl, ProviderInfo, RecordRejected, ProviderTransientError, SecretField
"""
from __future__ import annotations

from hostspec.errors import (
    ConfigError,
    HostError,
    InvalidRequestError,
    PluginError,
    ProviderConfigError,
    ProviderError,
    ProviderSystemError,
    ProviderTransientError,
    RecordRejected,
    UnknownConnectionError,
    UnknownProviderError,
    scalar_id,
)
from hostspec.events import isoformat
from hostspec.markers import hookimpl, hookspec
from hostspec.provider import (
    SCOPES,
    CheckResult,
    Connection,
    ExpectedCount,
    ListingTotal,
    PageEnd,
    ProviderInfo,
    SandboxHandle,
    SyncContext,
)
from hostspec.ops.metrics import provider_call, rate_limit_wait
from hostspec.secrets import Secret, SecretField

__version__ = "0.1.0"

__all__ = [
    "SCOPES", "CheckResult", "ConfigError", "Connection", "HostError", "InvalidRequestError",
    "ExpectedCount", "ListingTotal", "PageEnd", "PluginError", "ProviderConfigError", "ProviderError", "ProviderInfo", "ProviderSystemError",
    "ProviderTransientError", "RecordRejected", "SandboxHandle", "Secret", "SecretField", "SyncContext",
    "UnknownConnectionError", "UnknownProviderError", "__version__", "hookimpl", "hookspec", "isoformat",
    "provider_call", "rate_limit_wait", "scalar_id",
]
