"""The arithmetic of an agent's stats (GET /agent/{agentId}/stats), pure: no AWS, no clock.

- `window_seconds`: the `window` query parameter (`5m` .. `24h`);
- `percentile`: nearest rank, so every answer is a value that was measured;
- `state_seconds`: time spent in each state over the window, from the state at its start and the changes inside it,
  each segment clipped to the window;
- `utilisation`: the busy share of the window;
- `tally`: the attempts ended in the window, their outcomes and timings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from opscore.core.errors import FieldProblem, ValidationFailed

MIN_WINDOW_SECONDS = 5 * 60
MAX_WINDOW_SECONDS = 24 * 3600
DEFAULT_WINDOW = "1h"
_WINDOW = re.compile(r"([1-9][0-9]{0,4})([mh])")
ENDED_STATUSES = ("succeeded", "failed", "timed_out")


def window_seconds(raw: str) -> int:
    """`5m` .. `24h` (minutes or hours) in seconds; a 400 naming `window` otherwise."""
    matched = _WINDOW.fullmatch(raw)
    seconds = int(matched.group(1)) * (60 if matched.group(2) == "m" else 3600) if matched else 0
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        message = "must be minutes or hours from 5m to 24h, such as 15m or 1h"
        raise ValidationFailed(f"window {message}", [FieldProblem("window", message, location="query")])
    return seconds


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (`fraction` in (0, 1]): the smallest value with at least that share of the values
    at or below it; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def state_seconds(
    initial: str | None, changes: Iterable[tuple[datetime, str]], since: datetime, until: datetime
) -> dict[str, float]:
    """Seconds spent in each state between `since` and `until`: `initial` holds from `since` until the first change,
    each change's state until the next one (or `until`). Changes outside the window only move the state; time in no
    known state (before the agent's first report) is counted nowhere."""
    spent: dict[str, float] = {}
    state, start = initial, since
    for moment, new_state in sorted(changes, key=lambda change: change[0]):
        _add(spent, state, start, min(max(moment, since), until))
        state, start = new_state, min(max(moment, start), until)
    _add(spent, state, start, until)
    return spent


def _add(spent: dict[str, float], state: str | None, start: datetime, end: datetime) -> None:
    if state is not None and end > start:
        spent[state] = spent.get(state, 0.0) + (end - start).total_seconds()


def utilisation(spent: dict[str, float], window: float) -> float:
    """The share of the window the agent was busy (0 to 1, four places)."""
    return round(min(1.0, spent.get("busy", 0.0) / window), 4) if window > 0 else 0.0


class Attempt(NamedTuple):
    """One ended attempt as the stats see it: its outcome and when it ended, and, where they are known, how long it
    waited in the queue and how long it ran (milliseconds)."""

    status: str
    ended_at: datetime
    queue_wait_ms: float | None = None
    run_ms: float | None = None


class Tally(NamedTuple):
    succeeded: int
    failed: int
    timed_out: int
    queue_wait_ms: list[float]
    run_ms: list[float]

    @property
    def success_rate(self) -> float | None:
        ended = self.succeeded + self.failed + self.timed_out
        return round(self.succeeded / ended, 4) if ended else None


def tally(attempts: Iterable[Attempt], since: datetime, until: datetime) -> Tally:
    """The attempts that ended inside the window (both ends included): outcomes counted, timings collected."""
    inside = [attempt for attempt in attempts if since <= attempt.ended_at <= until]
    counts = {status: sum(1 for attempt in inside if attempt.status == status) for status in ENDED_STATUSES}
    return Tally(
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        timed_out=counts["timed_out"],
        queue_wait_ms=[attempt.queue_wait_ms for attempt in inside if attempt.queue_wait_ms is not None],
        run_ms=[attempt.run_ms for attempt in inside if attempt.run_ms is not None],
    )


def milliseconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() * 1000)
