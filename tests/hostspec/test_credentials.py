"""A credential's identity: its names and a keyed digest of its secret, never the secret."""
from __future__ import annotations

import hashlib

from hostspec import credentials
from hostspec.kit import http as httputil
from hostspec.credentials import credential_key, secret_digest


def test_the_key_holds_a_keyed_digest_never_the_secret_nor_its_plain_hash():
    key = credential_key("https://api.example.com", "acme-key", secret="s3cret-value")
    plain = hashlib.sha256(b"s3cret-value").hexdigest()
    assert key.digest == secret_digest("s3cret-value") != plain
    shown = repr(key) + str(key)
    assert "s3cret-value" not in shown and key.digest not in shown and "acme-key" in shown
    assert key == credential_key("https://api.example.com", "acme-key", secret="s3cret-value")
    assert key != credential_key("https://api.example.com", "acme-key", secret="another")
    assert key != credential_key("https://api.example.com", "other-key", secret="s3cret-value")
    assert len(credentials._PROCESS_KEY) == 32


def test_the_shared_token_cache_is_keyed_by_credential_keys():
    import requests
    cc = httputil.ClientCredentials(requests.Session(), "https://t.example/token", "acme-key", lambda: "s3cret-value",
                                    provider="acme", shared=True)
    assert cc._key() == credential_key("https://t.example/token", "acme-key", "", "basic", secret="s3cret-value")
    assert "s3cret-value" not in repr(cc._key())
