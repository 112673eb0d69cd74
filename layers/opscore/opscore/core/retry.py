"""The one retry loop: a bounded number of attempts, with a jittered pause before each one after the first.

Conditional writes that lose a race, transactions that meet another one, a throttled Step Functions call and a webhook
that answers 5xx are all retried the same way: `for attempt in attempts(n, backoff): ...; continue` to try again,
`return` (or `break`) when done. What to retry on stays with the caller, which knows what the failure means.
"""

import random
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple


class Backoff(NamedTuple):
    """The pause before attempt `n` (n >= 1): a draw from [low, high] seconds, times n (linear) or 2**(n-1)."""

    low: float
    high: float
    exponential: bool = False

    def pause(self, attempt: int) -> float:
        growth = 2 ** (attempt - 1) if self.exponential else attempt
        return random.uniform(self.low, self.high) * growth  # noqa: S311 - jitter, not security


def attempts(count: int, backoff: Backoff | None = None, sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """Attempt numbers 0..count-1; before each after the first, a pause drawn from `backoff` (none without one)."""
    for attempt in range(count):
        if attempt and backoff is not None:
            sleep(backoff.pause(attempt))
        yield attempt
