"""The arithmetic of GET /agent/{agentId}/stats: windows, time in each state (counted, and from totals), utilisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opscore.agents.stats import (
    seconds_between,
    state_seconds,
    totals_at,
    utilisation,
    window_seconds,
)
from opscore.core.errors import ValidationFailed

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STATES = st.sampled_from(["idle", "busy", "paused", "error", "offline"])


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(("raw", "seconds"), [("5m", 300), ("15m", 900), ("1h", 3600), ("90m", 5400), ("24h", 86400)])
def test_windows_in_minutes_or_hours(raw: str, seconds: int) -> None:
    assert window_seconds(raw) == seconds


@pytest.mark.parametrize("raw", ["4m", "25h", "0h", "1d", "1H", "h", "", "01h", "60s", "1.5h", " 1h"])
def test_other_windows_are_a_400_naming_window(raw: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        window_seconds(raw)
    assert [problem.field for problem in refused.value.details] == ["window"]


def test_state_time_is_each_state_until_the_next_clipped_to_the_window() -> None:
    # given idle before the window, busy at 10 min, idle at 25, busy from 50 until after the window's end
    changes = [(at(10), "busy"), (at(25), "idle"), (at(50), "busy"), (at(70), "paused")]
    # when the window is 0..60 min
    spent = state_seconds("idle", changes, at(0), at(60))
    # then
    assert spent == {"idle": 600 + 1500, "busy": 900 + 600}
    assert utilisation(spent, 3600) == round(1500 / 3600, 4)


def test_changes_before_the_window_only_set_the_state() -> None:
    assert state_seconds(None, [(at(-30), "busy"), (at(-5), "error")], at(0), at(10)) == {"error": 600.0}


def test_time_before_the_first_known_state_counts_nowhere() -> None:
    assert state_seconds(None, [(at(40), "idle")], at(0), at(60)) == {"idle": 1200.0}


@given(
    st.one_of(st.none(), STATES),
    st.lists(st.tuples(st.integers(min_value=-120, max_value=180), STATES)),
)
def test_state_time_fills_the_window_once_the_state_is_known(
    initial: str | None, changes: list[tuple[int, str]]
) -> None:
    moments = [(at(minute), state) for minute, state in changes]
    spent = state_seconds(initial, moments, at(0), at(60))
    assert all(seconds > 0 for seconds in spent.values())
    assert sum(spent.values()) <= 3600 + 1e-6
    known_from_start = initial is not None or any(moment <= at(0) for moment, _ in moments)
    if known_from_start:
        assert sum(spent.values()) == pytest.approx(3600)
    assert 0 <= utilisation(spent, 3600) <= 1


def test_a_state_write_adds_the_time_in_the_previous_state_to_the_totals() -> None:
    # given totals of 10 min idle, kept when the agent became busy at 0 min
    totals = {"idle": 600_000_000}
    # when it reports paused at 15 min 0.5 s
    after = totals_at(totals, at(0), "busy", at(15) + timedelta(milliseconds=500))
    # then busy gains exactly that, in microseconds, and the earlier totals stand
    assert after == {"idle": 600_000_000, "busy": 900_500_000}
    assert totals == {"idle": 600_000_000}, "not written through"
    assert totals_at({}, at(0), None, at(5)) == {}, "the first state: nothing before it is counted"


def test_totals_wound_back_to_an_earlier_moment_never_go_below_zero() -> None:
    # the first change after the window's start kept busy 300 s up to 10 min, busy since 5 min
    assert totals_at({"busy": 300_000_000}, at(10), "busy", at(8)) == {"busy": 180_000_000}
    assert totals_at({"busy": 300_000_000}, at(10), "busy", at(2)) == {"busy": 0}


def test_time_in_each_state_is_the_difference_of_the_totals_at_the_windows_ends() -> None:
    earlier = {"idle": 1_000_000, "busy": 2_500_000}
    later = {"idle": 1_000_000, "busy": 4_000_000, "paused": 250_000}
    assert seconds_between(earlier, later) == {"busy": 1.5, "paused": 0.25}


@given(
    st.one_of(st.none(), STATES),
    st.lists(st.tuples(st.integers(min_value=-120, max_value=180), STATES), unique_by=lambda change: change[0]),
    st.integers(min_value=-150, max_value=170),
    st.integers(min_value=5, max_value=200),
)
def test_totals_give_the_same_time_in_each_state_as_counting_the_changes(
    initial: str | None, changes: list[tuple[int, str]], start: int, length: int
) -> None:
    # given an agent whose state was `initial` from -200 min, then each change in time order, every write keeping
    # its totals as the registry does
    history = sorted(changes)
    state, stamp, totals = initial, at(-200), {}
    written: list[tuple[datetime, str | None, dict[str, int]]] = []  # each change: when, the state it ended, totals
    for minute, new_state in history:
        totals = totals_at(totals, stamp, state, at(minute))
        written.append((at(minute), state, totals))
        state, stamp = new_state, at(minute)

    def cumulative(moment: datetime) -> dict[str, int]:
        later = next((change for change in written if change[0] > moment), None)
        if later is None:  # from the agent item: its totals and the current state since its timestamp
            return totals_at(totals, stamp, state, moment)
        return totals_at(later[2], later[0], later[1], moment)  # from the first change after the moment

    since, until = at(start), at(start + length)
    # when the time in each state is the difference of the totals at the window's ends
    spent = seconds_between(cumulative(since), cumulative(until))
    # then it is what counting the changes in the window finds
    before = [change for change in history if at(change[0]) <= since]
    state_at_start = before[-1][1] if before else initial
    counted = state_seconds(
        state_at_start, [(at(minute), new) for minute, new in history if at(minute) > since], since, until
    )
    assert spent == pytest.approx(counted)
