"""The kafka-python client of a configuration, and what Kafka refusing it means.

The :mod:`hostspec.transport` package is the only one that imports the Kafka client. Its
modules: topic creation in :mod:`.admin`; a sink that produces events and reports failures as
:class:`DeliveryError` in :mod:`.producers`; a group consumer with manual commits, cooperative
rebalancing and pause/resume by partition in :mod:`.consumers`; reading a topic without a group
(to follow status events) in :mod:`.follower`. Exactly-once writes are in :mod:`.transactions`,
changelog restoration in :mod:`.changelog`. Client errors are wrapped once, in this package, into
the host's errors: a client that cannot start (:func:`kafka_client`) and a refusal
(:func:`refused`) here.
"""
from __future__ import annotations

import logging
import ssl
import time
from typing import Any, Callable

from kafka import errors as kerr
from kafka.errors import KafkaError

from hostspec.errors import TransportError
from hostspec.transport.config import KafkaConfig

Partition = tuple[str, int]


# -- refusals --------------------------------------------------------------------------------------
REFUSALS = (kerr.AuthorizationError, kerr.SaslAuthenticationFailedError)   # an ACL or a credential: never retried
ACLS_HINT = "the rights each component needs: python -m hostspec.transport.acls print"


class _HandshakeRefusals(logging.Filter):
    """Remembers the last TLS or SASL refusal kafka-python met while connecting.

    kafka-python 3.0 keeps trying a bootstrap server that refuses the SASL credentials or the TLS
    handshake (or a client key it cannot open) until its bootstrap timeout, then reports only
    ``Unable to bootstrap``, as if the broker were away; the cause itself is only logged (by
    ``kafka.net.manager`` and ``kafka.net.connection``). It is kept (never a secret: the broker's
    message, or the TLS library's) for :func:`_unreachable` to say.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[float, str] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, (kerr.SaslAuthenticationFailedError, ssl.SSLError)) or (
                    isinstance(arg, kerr.KafkaConnectionError) and ("Handshake failed" in str(arg) or "[SSL" in str(arg))):
                self.last = (time.monotonic(), _text(arg))
        return True

    def since(self, started: float) -> str | None:
        last = self.last
        return last[1] if last is not None and last[0] >= started else None


_handshakes = _HandshakeRefusals()
for _name in ("kafka.net.manager", "kafka.net.connection"):
    logging.getLogger(_name).addFilter(_handshakes)


class _ClosedNotFailed(logging.Filter):
    """Drops kafka-python's ``Metadata refresh: failed Cancelled`` (``kafka.cluster``).

    Closing a client cancels the metadata request its background loop may have in flight, and
    kafka-python 3.0 logs that cancellation as an ERROR: a command that ended normally printed an
    error line. A broker that is away fails the request with another error, still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, kerr.Cancelled) for arg in args)


logging.getLogger("kafka.cluster").addFilter(_ClosedNotFailed())


def _text(exc: BaseException) -> str:
    """An error as one short text: kafka-python's own message without its ``[Error n] Name:`` prefix."""
    detail = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, KafkaError):
        return detail if detail.startswith(type(exc).__name__) else f"{type(exc).__name__}: {detail}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def refused(who: str, exc: BaseException) -> str:
    """What Kafka refused, and to whom, in one line (an authorization or SASL error)."""
    kind = {kerr.TopicAuthorizationFailedError: "the topic", kerr.GroupAuthorizationFailedError: "the consumer group",
            kerr.TransactionalIdAuthorizationFailedError: "its transactional id",
            kerr.ClusterAuthorizationFailedError: "the cluster"}.get(type(exc))
    if kind:
        arg = str(exc.args[0]) if exc.args else ""
        if arg and " " not in arg:    # kafka-python names the topic or group
            return f"Kafka refused {who}: not authorized for {kind} {arg} ({type(exc).__name__}); {ACLS_HINT}"
        return f"Kafka refused {who}: not authorized for {kind} ({type(exc).__name__}{': ' + arg if arg else ''}); " \
               f"{ACLS_HINT}"
    return f"Kafka refused {who}: {_text(exc)}; check its credentials"


def refusal(config: KafkaConfig, exc: BaseException) -> TransportError:
    return TransportError(refused(config.principal, exc))


def _unreachable(config: KafkaConfig, exc: Exception, started: float | None = None) -> TransportError:
    """The cluster could not be used: unreachable, or it refused the credentials or the TLS handshake
    (``started``: when the failed attempt began; a refusal logged since then is named)."""
    if isinstance(exc, REFUSALS):
        return refusal(config, exc)
    handshake = _handshakes.since(started) if started is not None else None
    if handshake:
        return TransportError(f"cannot connect to Kafka at {config.bootstrap_servers} ({config.security_protocol}) "
                              f"as {config.principal}: {handshake} (check the credentials, the CA file, the client "
                              f"certificate, its key and the key's password)")
    return TransportError(f"cannot reach Kafka at {config.bootstrap_servers} "
                          f"({config.security_protocol}): {type(exc).__name__}: {exc}")


def kafka_client(config: KafkaConfig, build: Callable[..., Any], **settings: Any) -> Any:
    """A kafka-python client of ``config``; what keeps it from starting raised as :class:`TransportError`."""
    started = time.monotonic()
    try:
        return build(**config.client_kwargs(), **settings)
    except (KafkaError, ValueError, OSError) as exc:  # ValueError: unreachable bootstraps; OSError: key/CA files
        raise _unreachable(config, exc, started) from None
