"""hostspec: the contract provider plugins depend on, and the reference host that runs them.

A provider author needs only this surface::

    from hostspec import hookimpl, ProviderInfo, RecordRejected, ProviderTransientError
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
from hostspec.secrets import Secret

__version__ = "0.1.0"

__all__ = [
    "SCOPES", "CheckResult", "ConfigError", "Connection", "HostError", "InvalidRequestError",
    "ExpectedCount", "ListingTotal", "PageEnd", "PluginError", "ProviderConfigError", "ProviderError", "ProviderInfo", "ProviderSystemError",
    "ProviderTransientError", "RecordRejected", "SandboxHandle", "Secret", "SyncContext",
    "UnknownConnectionError", "UnknownProviderError", "__version__", "hookimpl", "hookspec", "provider_call",
    "rate_limit_wait", "scalar_id",
]
