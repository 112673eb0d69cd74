"""The arithmetic of GET /agent/{agentId}/stats: windows, percentiles, time in each state, utilisation, the tally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opscore.agents.stats import (
    Attempt,
    percentile,
    state_seconds,
    tally,
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


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [
        ([], None, None),
        ([7.0], 7.0, 7.0),
        ([1.0, 2.0], 1.0, 2.0),
        ([float(value) for value in range(1, 101)], 50.0, 95.0),
        ([5.0, 1.0, 3.0, 2.0, 4.0], 3.0, 5.0),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], p50: float | None, p95: float | None) -> None:
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (p50, p95)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(min_value=0.01, max_value=1))
def test_a_percentile_is_a_measured_value_with_its_share_at_or_below(values: list[float], fraction: float) -> None:
    found = percentile(values, fraction)
    assert found in values
    assert sum(1 for value in values if value <= found) >= fraction * len(values)


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


def test_the_tally_counts_attempts_ended_inside_the_window() -> None:
    attempts = [
        Attempt("succeeded", at(5), 1000.0, 4000.0),
        Attempt("succeeded", at(6), None, None),
        Attempt("failed", at(7), 3000.0, 1000.0),
        Attempt("timed_out", at(60)),
        Attempt("succeeded", at(-1), 9.0, 9.0),  # before the window
        Attempt("failed", at(61)),  # after it
    ]
    counted = tally(attempts, at(0), at(60))
    assert (counted.succeeded, counted.failed, counted.timed_out) == (2, 1, 1)
    assert counted.success_rate == 0.5
    assert (counted.queue_wait_ms, counted.run_ms) == ([1000.0, 3000.0], [4000.0, 1000.0])
    assert tally([], at(0), at(60)).success_rate is None


def test_every_ended_attempt_is_timed_from_its_own_record_a_retried_one_too() -> None:
    from opscore.agents.analytics import attempts_of
    from opscore.sessions.models import AttemptRecord, TaskStatus
    from opscore.sessions.records import TaskRecord

    def record(attempt: int, status: TaskStatus, queued: str, leased: str | None, ended: str) -> str:
        return AttemptRecord(
            attempt=attempt, status=status, started_at=queued, ended_at=ended, queued_at=queued, leased_at=leased
        ).model_dump_json()

    task = TaskRecord(
        session_id="s" * 32,
        index=0,
        status=TaskStatus.SUCCEEDED,
        attempts=2,
        attempt_records={
            1: record(1, TaskStatus.FAILED, "2026-12-01T10:00:00.000000Z", "2026-12-01T10:00:20.000000Z",
                      "2026-12-01T10:00:21.000000Z"),
            2: record(2, TaskStatus.SUCCEEDED, "2026-12-01T10:00:22.000000Z", "2026-12-01T10:00:23.000000Z",
                      "2026-12-01T10:00:25.000000Z"),
        },
    )  # fmt: skip
    timed = [(attempt.status, attempt.queue_wait_ms, attempt.run_ms) for attempt in attempts_of(task)]

    assert timed == [("failed", 20_000, 1_000), ("succeeded", 1_000, 2_000)], "the retried attempt's wait counts too"
