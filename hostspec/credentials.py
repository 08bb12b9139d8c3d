"""Who a credential is: what it names (a host, a token URL, a client id…) and its secret's digest.

Every cache of clients, tokens or sessions is keyed by the whole identity, so that a connection
naming another tenant's client id with a wrong secret gets a client, a token call and a 401 of
its own, never a neighbour's authenticated session; a rotated secret is another identity too.

The secret itself is never kept: only an HMAC-SHA256 of it under a key drawn at random when the
process starts and held in memory only. The digest is useless outside this process (it cannot
be compared with another process's, nor tried against guesses without the key), and it is still
not shown: :class:`CredentialKey`'s ``repr`` hides it.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

_PROCESS_KEY = secrets.token_bytes(32)     # never written anywhere: digests die with the process


def secret_digest(value: str) -> str:
    """The keyed digest of a secret value (hex), stable within this process only."""
    return hmac.new(_PROCESS_KEY, value.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CredentialKey:
    """A credential's whole identity, to key caches by: ``names`` (safe to show) and the
    secret's :func:`secret_digest` (never shown)."""

    names: tuple[str, ...]
    digest: str = field(repr=False)

    def __repr__(self) -> str:
        return f"CredentialKey({', '.join(self.names)}, secret=***)"

    __str__ = __repr__


def credential_key(*names: str, secret: str) -> CredentialKey:
    """The identity of the credential ``names`` + ``secret`` (the secret's value, revealed by the
    caller for this call only)."""
    return CredentialKey(tuple(names), secret_digest(secret))


__all__ = ["CredentialKey", "credential_key", "secret_digest"]
