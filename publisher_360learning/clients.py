"""One 360Learning client per credential: the connections and threads holding the same
credential share its token, rate limits and bulk slots."""
from __future__ import annotations

import threading
from typing import Callable

from hostspec.credentials import CredentialKey, credential_key
from hostspec.errors import SecretUnavailable

from .client import Learning360Client
from .errors import TargetConfigError
from .settings import Target


class Clients:
    """The deliverer's clients, by whole credential (host, client id *and* secret).

    :param factory: makes a company's client (:func:`client_for_target`)."""

    def __init__(self, factory: Callable[[Target], Learning360Client]):
        self._factory = factory
        self._clients: dict[CredentialKey, Learning360Client] = {}
        self._used: dict[str, CredentialKey] = {}        # connection -> the credential its client has
        self._lock = threading.Lock()    # lanes deliver from several threads

    def credential(self, target: Target) -> CredentialKey:
        """The whole identity of the target's credential: host, client id and a keyed digest of
        its secret (:mod:`hostspec.credentials`). :raise TargetConfigError: the secret cannot be read."""
        try:
            secret = target.client_secret.reveal()
        except SecretUnavailable as exc:
            raise TargetConfigError(f"the 360Learning client secret cannot be read: {exc}") from None
        return credential_key(target.base_url, target.client_id, secret=secret)

    def client(self, target: Target) -> Learning360Client:
        """The company's client, one per whole credential (host, client id *and* secret): the
        connections and threads holding the same credential share its rate limits and bulk slots;
        a connection naming the same client id with another secret gets a client of its own, so
        a wrong secret meets its own 401 and never rides on a neighbour's token.
        :raise TargetConfigError: the secret cannot be read."""
        key = self.credential(target)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._factory(target)
            before = self._used.get(target.connection)
            self._used[target.connection] = key
            if before is not None and before != key:      # its secret was rotated: the old client may go
                self._drop_unused({before})
            return self._clients[key]

    def forget(self, connections: set[str]) -> None:
        """``connections`` changed their settings: each gets a new client at its next delivery;
        clients no connection uses any more are closed."""
        with self._lock:
            self._drop_unused({self._used.pop(name) for name in connections if name in self._used})

    def _drop_unused(self, keys: set[CredentialKey]) -> None:
        """Close the clients of ``keys`` that no connection uses any more (hold ``_lock``)."""
        for key in keys - set(self._used.values()):
            client = self._clients.pop(key, None)
            if client is not None:
                client.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def client_for_target(target: Target) -> Learning360Client:
    """A company's client. Its retries are short (4 attempts, waits up to 10 s): a delivery holds
    one of the publisher's lane threads meanwhile, and the lane has its own longer backoff."""
    return Learning360Client(target.base_url, target.client_id, target.client_secret, max_attempts=4,
                             backoff_initial_s=target.retry_initial_s, backoff_max_s=10.0,
                             poll_interval_s=target.poll_interval_s, operation_timeout_s=900)
