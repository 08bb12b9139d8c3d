"""When and how long to wait before trying a Coursera call again (tenacity policy).

Retried: everything :class:`CourseraTransientError` (429, 5xx, 408, timeouts, resets, bodies
that are not JSON). Never retried: other 4xx and shape errors. The wait honours ``Retry-After``
(seconds or HTTP-date, capped at ``max_retry_after_s``); otherwise exponential backoff with jitter.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import tenacity

from hostspec import metrics
from hostspec.httputil import parse_retry_after  # noqa: F401  (re-exported)

from .errors import CourseraTransientError, RateLimited

log = logging.getLogger(__name__)


class wait_retry_after_or_backoff(tenacity.wait.wait_base):
    """Wait what the server asked for (capped), else exponential backoff with full jitter."""

    def __init__(self, cap_s: float, initial_s: float = 0.5, max_backoff_s: float = 30.0):
        self.cap_s = cap_s
        self.backoff = tenacity.wait_random_exponential(multiplier=initial_s, max=max_backoff_s)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap_s)
        return self.backoff(retry_state)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    wait = retry_state.next_action.sleep if retry_state.next_action else 0
    log.warning("coursera call failed (attempt %d): %s; retrying in %.2fs",
                retry_state.attempt_number, exc, wait)


def build_retrying(*, max_attempts: int, max_retry_after_s: float,
                   sleep: Callable[[float], None] = time.sleep,
                   on_retry: Callable[[tenacity.RetryCallState], None] | None = None) -> tenacity.Retrying:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        _log_retry(state)
        exc = state.outcome.exception() if state.outcome else None
        metrics.provider_retry("coursera", type(exc).__name__)
        if isinstance(exc, RateLimited):
            metrics.rate_limit_wait("coursera", state.next_action.sleep if state.next_action else 0)
        if on_retry is not None:
            on_retry(state)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(CourseraTransientError),
        wait=wait_retry_after_or_backoff(max_retry_after_s),
        stop=tenacity.stop_after_attempt(max_attempts),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
