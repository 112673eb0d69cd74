"""The queue's order (priority first, first in first out, aging against starvation), and silence deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def test_ranks_keep_their_order_as_text_in_the_index() -> None:
    ranks = [queue_rank(T0 + timedelta(seconds=s), p) for s, p in ((0, 0), (5, 9), (40_000, 3))]
    assert sorted(ranks) == sorted(ranks, key=lambda r: f"{r:015d}")


def test_a_silence_deadline_is_rounded_up_to_the_minute_so_contacts_within_a_minute_share_it() -> None:
    assert silent_from(datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC), 300) == "2026-11-24T10:05:00.000000Z"
    assert silent_from(datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC), 300) == "2026-11-24T10:06:00.000000Z"
    assert silent_from(datetime(2026, 11, 24, 10, 0, 59, 999, tzinfo=UTC), 300) == "2026-11-24T10:06:00.000000Z"
    assert silent_from(datetime(2026, 11, 24, 10, 0, 1, tzinfo=UTC), None) == "2026-11-24T10:06:00.000000Z"
