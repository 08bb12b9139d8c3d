"""The provider author's toolbox: HTTP (token, retry, gate), paging, sandboxes, the conformance
suite and its pytest plugin, golden records, the scaffold.

A provider imports its tools from here (and its contract from :mod:`hostspec`)::

    from hostspec.kit import ClientCredentials, gate_session, offset_pages, retry_policy

The conformance suite is :mod:`hostspec.kit.testing` (it runs the engine; import it in tests only).
"""
from __future__ import annotations

from hostspec.kit.http import (
    RETRYABLE_STATUS,
    CachedToken,
    ClientCredentials,
    GatedAdapter,
    RetryableAnswer,
    body_excerpt,
    forget_tokens,
    gate_session,
    raise_for_answer,
)
from hostspec.kit.paging import advancing_pages, cursor_pages, linked_pages, next_link_pages, offset_pages
from hostspec.kit.retry import Retry, parse_retry_after, retry_policy
from hostspec.kit.sandboxes import (
    FaultBook,
    FaultRule,
    Picked,
    SandboxRequestHandler,
    SandboxServer,
    is_loopback,
    retry_after_header,
    sandbox_epoch,
)
from hostspec.ops.console import plain, port

__all__ = [
    # HTTP: tokens, retries, the account's call budget, quoting an answer
    "RETRYABLE_STATUS", "CachedToken", "ClientCredentials", "GatedAdapter", "Retry", "RetryableAnswer", "body_excerpt",
    "forget_tokens", "gate_session", "parse_retry_after", "raise_for_answer", "retry_policy",
    # paging
    "advancing_pages", "cursor_pages", "linked_pages", "next_link_pages", "offset_pages",
    # sandboxes, and the argument types of a sandbox's command line
    "FaultBook", "FaultRule", "Picked", "SandboxRequestHandler", "SandboxServer", "is_loopback",
    "retry_after_header", "sandbox_epoch", "plain", "port",
]
