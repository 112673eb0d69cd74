"""The arithmetic of an agent's stats (GET /agent/{agentId}/stats), pure: no AWS, no clock.

- `window_seconds`: the `window` query parameter (`5m` .. `24h`);
- `state_seconds`: time spent in each state over the window, from the state at its start and the changes inside it,
  each segment clipped to the window (for history written before the totals below were kept);
- `totals_at`, `seconds_between`: the same from cumulative totals per state, which each state write keeps;
- `utilisation`: the busy share of the window;
- `Attempt`, `timings`: an ended attempt, its outcome and timings (what opscore.agents.tallies counts).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
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


def timings(queued: datetime | None, leased: datetime | None, ended: datetime) -> tuple[float | None, float | None]:
    """An attempt's queue wait and run time, when its lease is known and in order (an attempt never leased has
    neither: it is counted, not timed)."""
    if queued is None or leased is None or not queued <= leased <= ended:
        return None, None
    return milliseconds(queued, leased), milliseconds(leased, ended)


def totals_at(totals: Mapping[str, int], at: datetime, state: str | None, moment: datetime) -> dict[str, int]:
    """Cumulative time in each state (microseconds) at `moment`, from `totals` as they stood at `at` while the agent
    was in `state`: `state` gains (or, for an earlier moment, gives back) the time between the two, never below zero.

    The one rule for both directions: a state write keeps `totals_at(old totals, old timestamp, old state, new
    timestamp)`, and a stats read winds the totals of the agent item forward (to the window's end) or those of the
    first change after a moment back (to the window's start)."""
    cumulative = dict(totals)
    if state is not None:
        cumulative[state] = max(0, cumulative.get(state, 0) + microseconds(at, moment))
    return cumulative


def seconds_between(earlier: Mapping[str, int], later: Mapping[str, int]) -> dict[str, float]:
    """Seconds spent in each state between two moments, from the cumulative totals at each."""
    spent = {state: (total - earlier.get(state, 0)) / 1_000_000 for state, total in later.items()}
    return {state: seconds for state, seconds in spent.items() if seconds > 0}


def microseconds(start: datetime, end: datetime) -> int:
    """Signed: negative when `end` is before `start`."""
    return (end - start) // timedelta(microseconds=1)


def milliseconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() * 1000)
