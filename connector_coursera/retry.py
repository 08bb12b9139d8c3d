"""When and how long to wait before trying a Coursera call again (tenacity policy).

Retried: everything :class:`CourseraTransientError` (429, 5xx, 408, timeouts, resets, bodies
that are not JSON). Never retried: other 4xx and shape errors. The wait honours ``Retry-After``
(seconds or HTTP-date, capped at ``max_retry_after_s``); otherwise exponential backoff with jitter.
The policy is :func:`hostspec.kit.http.retry_policy`; this module adds Coursera's error class, its
``on_retry`` hook, and counts every throttled wait as a rate-limit wait.
"""
from __future__ import annotations

import time
from typing import Callable

import tenacity

from hostspec import rate_limit_wait
from hostspec.kit import (
    parse_retry_after,  # noqa: F401  (re-exported)
    retry_policy,
)

from .errors import CourseraTransientError, RateLimited

PROVIDER = "coursera"


def build_retrying(*, max_attempts: int, max_retry_after_s: float,
                   sleep: Callable[[float], None] = time.sleep,
                   on_retry: Callable[[tenacity.RetryCallState], None] | None = None) -> tenacity.Retrying:
    policy = retry_policy(provider=PROVIDER, max_attempts=max_attempts, max_retry_after_s=max_retry_after_s,
                          retry_on=(CourseraTransientError,), sleep=sleep)
    counted = policy.before_sleep

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if counted is not None:
            counted(state)          # logs, counts the retry and any Retry-After wait
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is None:   # throttled, backing off on our own
            rate_limit_wait(PROVIDER, state.next_action.sleep if state.next_action else 0)
        if on_retry is not None:
            on_retry(state)

    return policy.copy(before_sleep=before_sleep)
