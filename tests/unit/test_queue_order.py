"""The queue's order (priority first, first in first out, aging against starvation), and silence deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from opscore.agents.records import silent_from
from opscore.dispatch.queue import QUEUE_AGING_SECONDS, queue_rank

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def order(*tasks: tuple[str, int, float]) -> list[str]:
    """Names of (name, priority, seconds after T0) tasks in the order the queue hands them out."""
    return [name for name, priority, at in sorted(tasks, key=lambda t: queue_rank(T0 + timedelta(seconds=t[2]), t[1]))]


def test_higher_priority_goes_first_and_equal_priorities_keep_their_arrival_order() -> None:
    assert order(("low", 2, 0), ("high", 8, 1), ("mid", 5, 2), ("high-later", 8, 3)) == [
        "high",
        "high-later",
        "mid",
        "low",
    ]


def test_waiting_is_worth_one_level_per_aging_period_so_nothing_starves() -> None:
    aging = QUEUE_AGING_SECONDS
    assert order(("old-5", 5, 0), ("new-6", 6, aging - 1)) == ["new-6", "old-5"], "less than one period: priority"
    assert order(("old-5", 5, 0), ("new-6", 6, aging + 1)) == ["old-5", "new-6"], "more than one period: age"
    # The longest a priority-0 task can be overtaken: nine levels of aging.
    assert order(("zero", 0, 0), ("nine", 9, 9 * aging + 1)) == ["zero", "nine"]
    assert order(("zero", 0, 0), ("nine", 9, 9 * aging - 1)) == ["nine", "zero"]


# The rank has millisecond resolution, and its float arithmetic may round a whole millisecond down by one: the
# properties compare moments at least 2 ms apart.
MOMENTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
PRIORITIES = st.integers(0, 9)
MARGINS = st.integers(2, QUEUE_AGING_SECONDS * 1000 - 2).map(lambda ms: timedelta(milliseconds=ms))


@given(at=MOMENTS, priorities=st.lists(PRIORITIES, min_size=2, max_size=2, unique=True))
def test_at_the_same_moment_the_higher_priority_ranks_first(at: datetime, priorities: list[int]) -> None:
    lower, higher = sorted(priorities)
    assert queue_rank(at, higher) < queue_rank(at, lower)


@given(at=MOMENTS, priority=PRIORITIES, later=st.integers(0, 10**12), gap_ms=st.integers(2, 10**9))
def test_within_a_priority_the_first_in_is_the_first_out(at: datetime, priority: int, later: int, gap_ms: int) -> None:
    assert queue_rank(at, priority) <= queue_rank(at + timedelta(microseconds=later), priority), "never reversed"
    assert queue_rank(at, priority) < queue_rank(at + timedelta(milliseconds=gap_ms), priority)


@given(at=MOMENTS, priority=st.integers(0, 8), levels=st.integers(1, 9), margin=MARGINS)
def test_each_aging_period_waited_is_worth_one_priority_level(
    at: datetime, priority: int, levels: int, margin: timedelta
) -> None:
    assume(priority + levels <= 9)
    periods = timedelta(seconds=levels * QUEUE_AGING_SECONDS)
    urgent = queue_rank(at, priority + levels)
    assert queue_rank(at - periods - margin, priority) < urgent, "waited longer than the periods: it goes first"
    assert queue_rank(at - periods + margin, priority) > urgent, "waited less: the higher priority goes first"


@given(first=st.tuples(MOMENTS, PRIORITIES), second=st.tuples(MOMENTS, PRIORITIES))
def test_ranks_keep_their_order_as_the_indexs_fifteen_digit_text(
    first: tuple[datetime, int], second: tuple[datetime, int]
) -> None:
    ranks = [queue_rank(*first), queue_rank(*second)]
    assert all(0 <= rank < 10**15 for rank in ranks)
    assert (ranks[0] < ranks[1]) == (f"{ranks[0]:015d}" < f"{ranks[1]:015d}")


def test_a_silence_deadline_is_rounded_up_to_the_minute_so_contacts_within_a_minute_share_it() -> None:
    assert silent_from(datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC), 300) == "2026-11-24T10:05:00.000000Z"
    assert silent_from(datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC), 300) == "2026-11-24T10:06:00.000000Z"
    assert silent_from(datetime(2026, 11, 24, 10, 0, 59, 999, tzinfo=UTC), 300) == "2026-11-24T10:06:00.000000Z"
    assert silent_from(datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC), None) == "2026-11-24T10:06:00.000000Z"
