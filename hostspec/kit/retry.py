"""Retries of a provider's calls: the policy, its table, and the ``Retry-After`` wait it honours."""
from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

import tenacity

from hostspec.errors import ProviderTransientError
from hostspec.ops import metrics

log = logging.getLogger("hostspec.kit.http")   # the name its log lines always had


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = (now or (lambda: datetime.now(timezone.utc)))()
    return max(0.0, (when - current).total_seconds())


def _retry_after(exc: BaseException | None) -> float | None:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


@dataclass(frozen=True)
class Retry:
    """One row of a retry table: what a failed call's error leads to.

    :param when: the errors the row is for: exception classes, or a predicate.
    :param retry: False: such an error is raised at once (a setting of the other side, say).
    :param min_wait_s: a backoff wait is at least this long (a ``Retry-After`` wait is as asked).
    :param throttled: a backoff wait after such an error counts as a rate-limit wait too.
    """

    when: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
    retry: bool = True
    min_wait_s: float = 0.0
    throttled: bool = False

    def matches(self, exc: BaseException) -> bool:
        if isinstance(self.when, (type, tuple)):
            return isinstance(exc, self.when)
        return bool(self.when(exc))


def _row(table: Sequence[Retry], exc: BaseException | None) -> Retry | None:
    """The first row of ``table`` for ``exc``; None: not retried."""
    return next((row for row in table if exc is not None and row.matches(exc)), None)


def retry_policy(*, provider: str, max_attempts: int = 6, max_retry_after_s: float = 120.0,
                 initial_s: float = 0.5, max_backoff_s: float = 30.0,
                 retry_on: tuple[type[BaseException], ...] = (ProviderTransientError,),
                 table: Sequence[Retry] | None = None,
                 on_retry: Callable[[tenacity.RetryCallState], None] | None = None,
                 report: Callable[[tenacity.RetryCallState], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> tenacity.Retrying:
    """A tenacity policy for a provider's calls.

    Retries the exceptions in ``retry_on`` (by default every
    :class:`~hostspec.errors.ProviderTransientError`, :class:`~hostspec.kit.http.RetryableAnswer` included) up to
    ``max_attempts`` attempts in all, then raises the last error as it was. ``table`` (rows of
    :class:`Retry`, the first matching row decides; an error no row matches is not retried)
    replaces ``retry_on`` where errors differ: one given up at once, one waiting longer, one
    counted as throttling. Waits the error's ``retry_after`` attribute when it has one (capped
    at ``max_retry_after_s``), else exponential backoff with full jitter (``initial_s``
    doubling, at most ``max_backoff_s``; at least the row's ``min_wait_s``). Each retry is
    counted (:func:`hostspec.ops.metrics.provider_retry`, and
    :func:`~hostspec.ops.metrics.rate_limit_wait` for a ``Retry-After`` wait or a throttled
    row's) and logged as a warning, then ``on_retry`` is called; ``report`` replaces that
    counting and logging (a client with metrics of its own). ``sleep`` is injectable for tests.

    Use as ``for attempt in policy: with attempt: ...`` or ``policy(callable, *args)``.
    """
    rows: Sequence[Retry] = table if table is not None else (Retry(retry_on),)
    backoff = tenacity.wait_random_exponential(multiplier=initial_s, max=max_backoff_s)

    def retryable(exc: BaseException) -> bool:
        row = _row(rows, exc)
        return row is not None and row.retry

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = _retry_after(exc)
        if asked is not None:
            return min(asked, max_retry_after_s)
        row = _row(rows, exc)
        return max(row.min_wait_s if row is not None else 0.0, backoff(state))

    def counted(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        seconds = state.next_action.sleep if state.next_action else 0.0
        metrics.provider_retry(provider, type(exc).__name__)
        row = _row(rows, exc)
        if _retry_after(exc) is not None or (row is not None and row.throttled):
            metrics.rate_limit_wait(provider, seconds)
        log.warning("%s call failed (attempt %d of %d): %s; retrying in %.2fs",
                    provider, state.attempt_number, max_attempts, exc, seconds)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        (report or counted)(state)
        if on_retry is not None:
            on_retry(state)

    return tenacity.Retrying(retry=tenacity.retry_if_exception(retryable), wait=wait,
                             stop=tenacity.stop_after_attempt(max_attempts), sleep=sleep,
                             before_sleep=before_sleep, reraise=True)


__all__ = ["Retry", "parse_retry_after", "retry_policy"]
