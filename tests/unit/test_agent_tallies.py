"""An agent's tallies: histogram buckets and percentiles, the window's keys, and what an attempt's end adds."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opscore.agents.tallies import (
    RELATIVE_ERROR,
    Tally,
    bucket_of,
    bucket_value,
    ended_attempt,
    histogram_percentile,
    hour_key,
    minute_key,
    summed,
    tally_updates,
    window_ranges,
)
from opscore.sessions.models import AttemptRecord, TaskStatus
from opscore.sessions.writes import TaskOutcome

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DURATIONS = st.floats(min_value=0, max_value=48 * 3600 * 1000, allow_nan=False)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_buckets_are_ten_percent_wide_with_one_below_a_millisecond() -> None:
    assert [bucket_of(value) for value in (0, 0.99, 1, 1.09, 1.1, 1.22)] == [0, 0, 1, 1, 2, 3]
    assert bucket_value(0) == 0.5
    assert bucket_value(1) == pytest.approx(math.sqrt(1.1))
    assert pytest.approx(0.0488, abs=1e-4) == RELATIVE_ERROR


@given(DURATIONS)
def test_a_bucket_reports_its_values_within_the_stated_error(value: float) -> None:
    reported = bucket_value(bucket_of(value))
    if value < 1:
        assert abs(reported - value) <= 0.5
    else:
        assert abs(reported - value) <= RELATIVE_ERROR * value * (1 + 1e-9)


@given(st.lists(DURATIONS, min_size=1, max_size=300), st.sampled_from([0.5, 0.95, 0.99, 1.0]))
def test_the_histograms_percentile_is_the_measured_ones_within_the_stated_error(
    values: list[float], fraction: float
) -> None:
    # given the values counted in a histogram
    histogram: dict[int, int] = {}
    for value in values:
        histogram[bucket_of(value)] = histogram.get(bucket_of(value), 0) + 1
    # when its nearest-rank percentile is read
    found = histogram_percentile(histogram, fraction)
    # then it is the exact nearest-rank percentile, as its bucket reports it
    exact = sorted(values)[max(1, math.ceil(fraction * len(values))) - 1]
    assert found == bucket_value(bucket_of(exact))


def test_an_empty_histogram_has_no_percentile() -> None:
    assert histogram_percentile({}, 0.5) is None
    assert histogram_percentile({3: 0}, 0.5) is None


def test_keys_name_the_utc_minute_and_hour() -> None:
    moment = datetime(2026, 12, 1, 11, 7, 59, tzinfo=UTC) + timedelta(microseconds=999_999)
    assert (minute_key(moment), hour_key(moment)) == ("TALLY#M#2026-12-01T11:07", "TALLY#H#2026-12-01T11")


@pytest.mark.parametrize(
    ("since", "until", "ranges"),
    [
        # inside one hour: its minutes
        (at(5.5), at(45), [("M", "10:05", "10:45")]),
        # an hour across a clock hour: the minutes of both partial hours, one range (their keys are contiguous)
        (at(20.5), at(80.5), [("M", "10:20", "11:20")]),
        # from a whole minute on the hour to the next one: the whole hour, then the last minute
        (at(0), at(60), [("H", "10", "10"), ("M", "11:00", "11:00")]),
        # the last minute of an hour completes it
        (at(-1), at(59.5), [("M", "09:59", "09:59"), ("H", "10", "10")]),
        # 24 hours: the partial hours' minutes and the 23 whole hours between, across midnight
        (
            at(20.5),
            at(20.5 + 24 * 60),
            [("M", "10:20", "10:59"), ("H", "11", "T09"), ("M", "T10:00", "T10:20")],
        ),
    ],
)
def test_a_window_reads_the_minutes_of_its_partial_hours_and_the_hours_between(
    since: datetime, until: datetime, ranges: list[tuple[str, str, str]]
) -> None:
    def key(kind: str, when: str) -> str:
        day = "2026-12-02" if when.startswith("T") else "2026-12-01"
        return f"TALLY#{kind}#{day}T{when.removeprefix('T')}"

    assert window_ranges(since, until) == [(key(kind, low), key(kind, high)) for kind, low, high in ranges]


@given(st.integers(min_value=0, max_value=3 * 24 * 60 * 60), st.integers(min_value=5 * 60, max_value=24 * 3600))
def test_a_windows_ranges_cover_each_of_its_minutes_once_within_the_bound(start: int, length: int) -> None:
    since = T0 + timedelta(seconds=start)
    until = since + timedelta(seconds=length)
    ranges = window_ranges(since, until)
    covered: list[datetime] = []
    for low, high in ranges:
        first, last = _moment(low), _moment(high)
        step = timedelta(hours=1) if low.startswith("TALLY#H#") else timedelta(minutes=1)
        items = int((last - first) / step) + 1
        covered += [first + i * step + timedelta(minutes=m) for i in range(items) for m in range(int(step / _MIN))]
    minute = since.replace(second=0, microsecond=0)
    expected = [minute + i * _MIN for i in range(int((until.replace(second=0, microsecond=0) - minute) / _MIN) + 1)]
    assert sorted(covered) == expected
    assert len(ranges) <= 3
    assert sum(_items(low, high) for low, high in ranges) <= 2 * 60 + 24


_MIN = timedelta(minutes=1)


def _moment(key: str) -> datetime:
    stamp = key.split("#")[2]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M" if len(stamp) > 13 else "%Y-%m-%dT%H").replace(tzinfo=UTC)


def _items(low: str, high: str) -> int:
    step = timedelta(hours=1) if low.startswith("TALLY#H#") else _MIN
    return int((_moment(high) - _moment(low)) / step) + 1


def outcome(status: TaskStatus, queued: str, leased: str | None, ended: str, *, as_status: TaskStatus) -> TaskOutcome:
    record = AttemptRecord(
        attempt=1, status=status, started_at=queued, queued_at=queued, leased_at=leased, ended_at=ended
    )
    return TaskOutcome(
        index=0,
        sequence=1,
        attempt=1,
        status=as_status,
        ended_at=ended,
        duration_ms=0,
        attempt_record_json=record.model_dump_json(),
    )


def test_an_attempts_end_adds_its_own_outcome_and_timings_to_its_minute_and_hour() -> None:
    # given a failed attempt that will be retried (the task shows retrying), queued 2 s before its lease, run 0.5 s
    ended = outcome(
        TaskStatus.FAILED,
        "2026-12-01T10:06:57.000000Z",
        "2026-12-01T10:06:59.000000Z",
        "2026-12-01T10:06:59.500000Z",
        as_status=TaskStatus.RETRYING,
    )
    # when its tally updates are built
    minute, hour = (item["Update"] for item in tally_updates("table", "agent-1", ended))
    # then each adds one failure and one to each timing's bucket, and expires two days after its bucket
    assert (minute["Key"]["SK"], hour["Key"]["SK"]) == (
        {"S": "TALLY#M#2026-12-01T10:06"},
        {"S": "TALLY#H#2026-12-01T10"},
    )
    assert minute["Key"]["PK"] == hour["Key"]["PK"] == {"S": "AGENT#agent-1"}
    added = {minute["ExpressionAttributeNames"][name] for name in minute["ExpressionAttributeNames"]}
    assert added == {"failed", f"q{bucket_of(2000)}", f"r{bucket_of(500)}", "expires_at"}
    assert minute["UpdateExpression"].startswith("ADD ")
    assert minute["ExpressionAttributeValues"][":expires"] == {"N": str(int(at(6 + 2 * 24 * 60).timestamp()))}
    assert hour["ExpressionAttributeValues"][":expires"] == {"N": str(int(at(2 * 24 * 60).timestamp()))}
    assert "ConditionExpression" not in minute, "the record's own condition guards the transaction"


def test_an_attempt_never_leased_is_counted_not_timed() -> None:
    ended = outcome(
        TaskStatus.TIMED_OUT,
        "2026-12-01T10:00:00.000000Z",
        None,
        "2026-12-01T10:05:00.000000Z",
        as_status=TaskStatus.TIMED_OUT,
    )
    attempt = ended_attempt(ended)
    assert attempt is not None
    assert (attempt.status, attempt.queue_wait_ms, attempt.run_ms) == ("timed_out", None, None)
    names = tally_updates("table", "agent-1", ended)[0]["Update"]["ExpressionAttributeNames"]
    assert set(names.values()) == {"timed_out", "expires_at"}


def test_tally_items_sum_to_the_windows_counts_and_histograms() -> None:
    items = [
        {"PK": "AGENT#a", "SK": "TALLY#M#2026-12-01T10:01", "succeeded": 2, "q3": 2, "r40": 1, "r41": 1},
        {"PK": "AGENT#a", "SK": "TALLY#H#2026-12-01T11", "failed": 1, "timed_out": 1, "q3": 1, "r41": 1},
        {"PK": "AGENT#a", "SK": "TALLY#M#2026-12-01T12:00", "expires_at": 1_800_000_000},
    ]
    assert summed(items) == Tally(succeeded=2, failed=1, timed_out=1, queue_wait={3: 3}, run_time={40: 1, 41: 2})
    assert summed(items).success_rate == 0.5
    assert Tally().success_rate is None
