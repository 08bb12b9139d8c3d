"""A stored connection's checks: its credentials at the provider (``POST /connections/{name}/check``)
and the warnings a created or changed connection's answer carries.

The credentials check is ``connector-host check`` on the control topic's document, in steps, each
``{"name", "ok", "message"}``:

* ``settings``: the document validates against its provider's settings schema and the policy;
* ``secrets``: each secret reference resolves in this process (an environment variable or a
  file the API's process holds; the workers need the same);
* ``provider``: the provider's ``check_connection`` hook, given ``timeout_s`` to answer. A
  provider that cannot be reached, that raises or that does not answer in time gives ``ok``
  false with a message, never an error of the API. A provider without the hook says so (``ok``:
  nothing refused).

No message carries a secret value: each is passed through :func:`hostspec.secrets.redact` (the
values revealed in this process), and a hook's ``details`` are not shown.

Warnings are advice, never a refusal: a connection without a publisher target is stored (a
publisher may hold its targets in a file of its own) but the answer says what will happen.
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from hostspec.engine.plugins import HostPluginManager
from hostspec.provider import SyncContext
from hostspec.secrets import Secret, redact

CHECK_TIMEOUT_S = 30.0
NO_TARGET = ("no publisher target (target): a publisher reading its targets from the control topic has nowhere to "
             "deliver this connection's records and dead-letters every one of them (reason no_target); give a target "
             "unless the publisher holds this connection's target in a targets file of its own")
UNCHECKED_TARGET = ("the target was stored unchecked: no publisher installed with this API registers a target check "
                    "(entry point group hostspec.target_checks)")


def creation_warnings(doc: Mapping[str, Any], *, target_checked: bool) -> list[str]:
    """What a client should know about the stored document ``doc`` (empty: nothing)."""
    if doc.get("deleted"):
        return []
    out = []
    if not doc.get("target"):
        out.append(NO_TARGET)
    elif not target_checked:
        out.append(UNCHECKED_TARGET)
    if doc.get("paused"):
        out.append("the connection is paused: its schedule starts no run until it is resumed (requested syncs run)")
    return out


def _step(name: str, ok: bool, message: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "message": redact(message)}


def _secrets(settings: Any, fields: tuple[str, ...]) -> list[tuple[str, Secret]]:
    found = []
    for f in fields:
        value = settings.get(f) if isinstance(settings, Mapping) else getattr(settings, f, None)
        if isinstance(value, Secret):
            found.append((f, value))
    return found


def run_check(name: str, load: Callable[[], Any], plugins: HostPluginManager, *,
              timeout_s: float = CHECK_TIMEOUT_S,
              clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> dict[str, Any]:
    """The checks of connection ``name``; ``load()`` returns its validated
    :class:`~hostspec.provider.Connection` (and raises what refuses it)."""
    steps: list[dict[str, Any]] = []
    try:
        connection = load()
        provider = plugins.provider(connection.provider)
    except Exception as exc:  # noqa: BLE001 - a refused document is this check's answer, not the API's error
        steps.append(_step("settings", False, str(exc)))
        return {"connection": name, "ok": False, "checks": steps}
    steps.append(_step("settings", True, f"valid settings for provider {provider.name}"))

    unavailable = []
    secrets = _secrets(connection.settings, tuple(provider.info.secret_fields))
    for field, secret in secrets:
        try:
            secret.reveal()
        except LookupError as exc:
            unavailable.append(f"{field}: {exc}")
    steps.append(_step("secrets", not unavailable, "; ".join(unavailable) if unavailable else
                       f"{len(secrets)} secret reference{'s' if len(secrets) != 1 else ''} resolved"))
    if unavailable:
        steps.append(_step("provider", False, "not run: a secret is unavailable"))
        return {"connection": name, "ok": False, "checks": steps}

    steps.append(_provider_step(provider, connection, timeout_s, clock))
    return {"connection": name, "ok": all(s["ok"] for s in steps), "checks": steps}


def _provider_step(provider: Any, connection: Any, timeout_s: float, clock: Callable[[], datetime]) -> dict[str, Any]:
    if not provider.hooks.check_connection.get_hookimpls():
        return _step("provider", True, f"provider {provider.name} cannot check connections: nothing checked")
    answer: dict[str, Any] = {}
    context = SyncContext(run_id=str(uuid.uuid4()), request_id="check", scope="check", now=clock())

    def call() -> None:
        try:
            answer["result"] = provider.hooks.check_connection(connection=connection, context=context)
        except Exception as exc:  # noqa: BLE001 - the hook must not raise; if it does, that is its answer
            answer["error"] = exc

    worker = threading.Thread(target=call, name=f"check:{connection.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():     # left to finish on its own (a daemon thread): the answer does not wait
        return _step("provider", False, f"provider {provider.name} did not answer within {timeout_s:g} s")
    if "error" in answer:
        exc = answer["error"]
        return _step("provider", False, f"provider {provider.name} could not be checked: {type(exc).__name__}: {exc}")
    result = answer.get("result")
    if result is None:
        return _step("provider", True, f"provider {provider.name} cannot check connections: nothing checked")
    return _step("provider", bool(result.ok), str(result.message))


__all__ = ["CHECK_TIMEOUT_S", "NO_TARGET", "UNCHECKED_TARGET", "creation_warnings", "run_check"]
