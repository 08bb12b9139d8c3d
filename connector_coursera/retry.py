"""When and how long to wait before trying a Coursera call again (tenacity policy).

Retried: everything :class:`CourseraTransientError` (429, 5xx, 408, timeouts, resets, bodies
that are not JSON). Never retried: other 4xx and shape errors. The wait honours ``Retry-After``
(seconds or HTTP-date, capped at ``max_retry_after_s``); otherwise exponential backoff with jitter.
The policy is :func:`hostspec.kit.retry.retry_policy`; this module gives it Coursera's table (its error
classes; every throttled wait counts as a rate-limit wait) and its ``on_retry`` hook.
"""
from __future__ import annotations

import time
from typing import Callable

import tenacity

from hostspec.kit import (
    Retry,
    parse_retry_after,  # noqa: F401  (re-exported)
    retry_policy,
)

from .errors import CourseraTransientError, RateLimited

PROVIDER = "coursera"
# throttled: a backoff after a 429 without Retry-After is a rate-limit wait as well
TABLE = (Retry(RateLimited, throttled=True), Retry(CourseraTransientError))


def build_retrying(*, max_attempts: int, max_retry_after_s: float,
                   sleep: Callable[[float], None] = time.sleep,
                   on_retry: Callable[[tenacity.RetryCallState], None] | None = None) -> tenacity.Retrying:
    return retry_policy(provider=PROVIDER, max_attempts=max_attempts, max_retry_after_s=max_retry_after_s,
                        table=TABLE, on_retry=on_retry, sleep=sleep)
