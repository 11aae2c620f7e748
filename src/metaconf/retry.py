"""One retry policy for every call to a server: exponential backoff with full jitter, a server's Retry-After
honoured, a cap on attempts (and optionally on time); what is worth retrying is said here once.

An attempt raises `Retryable` for a failure that may pass (a dropped connection, 429, a transient 5xx, an
unparseable answer); any other exception goes straight through. When no attempt is left, `RetriesExhausted`
carries the count and the last reason, for the caller's own one-line error.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# HTTP statuses that may succeed when asked again: timeout, conflict, too early, rate limit, transient server errors
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 600.0


class Retryable(Exception):
    """One attempt failed in a way another attempt may not; `retry_after`: seconds the server asked to wait."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class RetriesExhausted(Exception):
    """Every attempt failed with a `Retryable`: `attempts` made, `reason` of the last one."""

    def __init__(self, attempts: int, reason: str):
        super().__init__(f"after {attempts} attempts; last error: {reason}")
        self.attempts = attempts
        self.reason = reason


def retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth asking again (the request itself was not refused)."""
    return status in RETRY_STATUS


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent or bad."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


@dataclass
class RetryPolicy:
    """How often and how long to retry: `max_retries` after the first attempt, backoff from `base` seconds up to
    `cap`, and (when set) no retry that would end past `max_elapsed` seconds after the first attempt."""

    max_retries: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_elapsed: float | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after failed attempt `attempt` (from 0): the server's Retry-After (capped), else the backoff."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        return backoff_delay(attempt, self.base, self.cap, self.rng)

    def _wait(self, attempt: int, failure: Retryable, started: float) -> float:
        """The wait before the next attempt; raises RetriesExhausted when there is none."""
        wait = self.delay(attempt, failure.retry_after)
        out_of_time = self.max_elapsed is not None and time.monotonic() - started + wait > self.max_elapsed
        if attempt >= self.max_retries or out_of_time:
            raise RetriesExhausted(attempt + 1, str(failure)) from None
        return wait

    def call(self, attempt: Callable[[], T], sleep: Callable[[float], Any] = time.sleep) -> T:
        """`attempt()`'s result, calling it again after each `Retryable` until the policy gives up."""
        started, n = time.monotonic(), 0
        while True:
            try:
                return attempt()
            except Retryable as failure:
                wait = self._wait(n, failure, started)
            sleep(wait)
            n += 1

    async def acall(
        self, attempt: Callable[[], Awaitable[T]], sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    ) -> T:
        """`call` for a coroutine: awaits `attempt()` and `sleep`."""
        started, n = time.monotonic(), 0
        while True:
            try:
                return await attempt()
            except Retryable as failure:
                wait = self._wait(n, failure, started)
            await sleep(wait)
            n += 1
