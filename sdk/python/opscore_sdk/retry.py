"""When and how long the client waits before trying a request again.

Exponential backoff with full jitter: before retry n (1, 2, ...) the client waits a random time between 0 and
min(cap, base * 2 ** (n - 1)), so many clients that failed together do not come back together. A 429's
`Retry-After` (a 429's or a 503's, in seconds or as an HTTP date) is honoured instead (capped at `cap`). Only
answers that may go away are retried (429, 5xx, the 409s that say to send the request again) and requests that got
no answer (connection errors, timeouts), and then only when repeating the request is safe.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# 409s that ask for the request again: a repeat of an idempotent request whose first try is still running
# (`request_in_progress`), and a write that lost a race to another (`conflict`: "changing too fast... send it again").
RETRIED_CONFLICTS = frozenset({"request_in_progress", "conflict"})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first try (1 never retries); `base` and `cap` are seconds. `sleep` and `random`
    may be replaced (tests pass a recording sleep and a fixed random); the async client awaits `asyncio.sleep`
    unless `async_sleep` is given."""

    max_attempts: int = 4
    base: float = 0.5
    cap: float = 20.0
    sleep: Callable[[float], None] | None = None
    async_sleep: Callable[[float], Awaitable[object]] | None = None
    random: Callable[[], float] = field(default=random.random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        if retry_after is not None:
            return min(self.cap, max(0.0, retry_after))
        return self.random() * min(self.cap, self.base * 2.0 ** (retry - 1))


NO_RETRIES = RetryPolicy(max_attempts=1)
