"""The rules derived from an agent record, each defined once beside the record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opscore.agents.models import AgentState, CurrentState
from opscore.agents.records import (
    AgentRecord,
    CountedFailure,
    QuarantineRecord,
    became_able_to_take_work,
    breaker_move,
    takes_work,
)

NOW = "2026-01-01T01:00:00.000000Z"
OPEN = QuarantineRecord(
    since="2026-01-01T00:58:00.000000Z",
    reason="failures",
    failures=3,
    last_error="OpsCore.LeaseExpired",
    probe_after="2026-01-01T01:03:00.000000Z",
)
HALF_OPEN = OPEN._replace(probe_after="2026-01-01T00:59:00.000000Z")


def failures(*seconds_ago: int) -> tuple[CountedFailure, ...]:
    """Counted failures this many seconds before NOW (at most an hour), oldest first."""
    return tuple(
        CountedFailure(f"2026-01-01T00:{(3600 - ago) // 60:02d}:{(3600 - ago) % 60:02d}.000000Z", "OOM")
        for ago in sorted(seconds_ago, reverse=True)
    )


def agent(state: AgentState | None = AgentState.IDLE, **fields: object) -> AgentRecord:
    current = None
    if state is not None:
        current = CurrentState(
            state=state, timestamp="2026-01-01T00:00:00.000000Z", details=None, error=None, version=1
        )
    return AgentRecord(agent_id="a1", name="A", current=current, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "may"),
    [
        (agent(AgentState.IDLE), True),
        (agent(AgentState.BUSY), True),
        (agent(AgentState.INITIALIZING), True),
        (agent(None), True),  # registered, never reported: it may take work
        (agent(AgentState.PAUSED), False),
        (agent(AgentState.ERROR), False),
        (agent(AgentState.OFFLINE), False),
        (agent(AgentState.IDLE, in_flight=1), False),  # at max_concurrency 1
        (agent(AgentState.IDLE, in_flight=1, max_concurrency=2), True),
        (agent(AgentState.IDLE, quarantine=OPEN), False),
        (agent(AgentState.IDLE, quarantine=HALF_OPEN), False),  # half-open: only a probe's lease
    ],
)
def test_may_take_work(record: AgentRecord, may: bool) -> None:
    assert record.may_take_work is may


@pytest.mark.parametrize(
    ("recent", "threshold", "quarantine", "due"),
    [
        (failures(10, 20), 3, None, False),
        (failures(10, 20, 30), 3, None, True),
        (failures(10, 20, 30, 40, 50), 3, None, True),
        (failures(10, 20, 30), 3, OPEN, False),  # open already
        (failures(10, 20, 700), 3, None, False),  # one is older than the window (600 s)
        (failures(600, 10, 20), 3, None, False),  # the window's start is not in it
        (failures(599, 10, 20), 3, None, True),
        (failures(5), 1, None, True),
    ],
)
def test_due_for_quarantine_counts_failures_within_the_window(
    recent: tuple[CountedFailure, ...], threshold: int, quarantine: QuarantineRecord | None, due: bool
) -> None:
    record = agent(failures=recent, quarantine_after=threshold, quarantine=quarantine)
    assert record.due_for_quarantine(NOW) is due


def test_trimmed_failures_keep_the_windows_last_quarantine_after() -> None:
    record = agent(failures=failures(900, 40, 30, 20, 10), quarantine_after=3)
    assert record.trimmed_failures(NOW) == failures(30, 20, 10)
    assert len(record.failures_within(NOW)) == 4


@pytest.mark.parametrize(
    ("record", "may"),
    [
        # the quarantine's own error does not stop a probe; an error the agent reported itself does
        (agent(AgentState.ERROR, quarantine=HALF_OPEN, state_by_opscore=True), True),
        (agent(AgentState.ERROR, quarantine=HALF_OPEN), False),
        (agent(AgentState.IDLE, quarantine=HALF_OPEN), True),
        (agent(None, quarantine=HALF_OPEN), True),
        (agent(AgentState.IDLE, quarantine=OPEN), False),  # still cooling down
        (agent(AgentState.PAUSED, quarantine=HALF_OPEN), False),
        (agent(AgentState.OFFLINE, quarantine=HALF_OPEN), False),
        (agent(AgentState.IDLE, quarantine=HALF_OPEN, in_flight=1), False),  # no slot free
        (
            agent(AgentState.IDLE, quarantine=HALF_OPEN, probe="t-000#1", probe_until="2026-01-01T01:05:00.000000Z"),
            False,
        ),
        # a probe the item still names past its grace counts as ended
        (
            agent(AgentState.IDLE, quarantine=HALF_OPEN, probe="t-000#1", probe_until="2026-01-01T00:59:00.000000Z"),
            True,
        ),
        (agent(AgentState.IDLE), False),  # not quarantined: no probe
    ],
)
def test_may_probe(record: AgentRecord, may: bool) -> None:
    assert record.may_probe(NOW) is may


PROBING = agent(AgentState.IDLE, quarantine=HALF_OPEN, probe="t-000#2")


@pytest.mark.parametrize(
    ("record", "probe", "outcome", "move"),
    [
        (PROBING, "t-000#2", "succeeded", "close"),
        (PROBING, "t-000#2", "counted", "reopen"),
        (PROBING, "t-000#2", "failed", "reopen"),  # any failed attempt of the probe, its task's fault too
        (PROBING, "t-000#2", "released", "free_probe"),  # a cancel, the agent offline: no decision
        (PROBING, "t-000#1", "succeeded", None),  # an earlier attempt's end decides nothing
        (PROBING, None, "counted", None),  # open already: a failure of another lease changes nothing
        (agent(failures=failures(10, 20, 30)), None, "counted", "open"),
        (agent(failures=failures(10, 20, 30)), None, "failed", None),  # not counted: no opening
        (agent(failures=failures(10, 20)), None, "counted", None),
        (agent(failures=failures(10, 20, 30)), None, "succeeded", None),
    ],
)
def test_breaker_moves(record: AgentRecord, probe: str | None, outcome: str, move: str | None) -> None:
    assert breaker_move(record, probe, outcome, NOW) == move  # type: ignore[arg-type]


def test_an_opening_and_its_message_say_since_when_and_why() -> None:
    record = agent(failures=failures(30, 20, 10), quarantine_cooldown_seconds=60, quarantine_window_seconds=600)
    opening = record.opening(NOW, "failures")
    assert opening == QuarantineRecord(NOW, "failures", 3, "OOM", "2026-01-01T01:01:00.000000Z")
    assert record._replace(quarantine=opening).quarantine_message() == (
        f"agent a1 has been quarantined since {NOW} (3 failures in 600 s: OOM)"
    )
    again = record.opening(NOW, "probe_failed", "ToolCrashed")
    assert record._replace(quarantine=again).quarantine_message() == (
        f"agent a1 has been quarantined since {NOW} (its probe task failed: ToolCrashed)"
    )


@pytest.mark.parametrize(
    ("silent_at", "state", "moment", "overdue"),
    [
        ("2026-01-01T00:05:00.000000Z", AgentState.IDLE, "2026-01-01T00:05:00.000001Z", True),
        ("2026-01-01T00:05:00.000000Z", AgentState.IDLE, "2026-01-01T00:05:00.000000Z", False),
        ("2026-01-01T00:05:00.000000Z", AgentState.OFFLINE, "2026-01-01T00:06:00.000000Z", False),
        (None, AgentState.IDLE, "2026-01-01T00:06:00.000000Z", False),  # marked offline: no deadline
    ],
)
def test_silent_before(silent_at: str | None, state: AgentState, moment: str, overdue: bool) -> None:
    assert agent(state, silent_at=silent_at).silent_before(moment) is overdue


def test_the_next_silence_follows_the_agents_own_setting_rounded_up_to_the_minute() -> None:
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert agent(offline_after_seconds=60).next_silence(now) == "2026-01-01T00:02:00.000000Z"
    assert agent().next_silence(now) == "2026-01-01T00:06:00.000000Z"  # the default 300 s


@pytest.mark.parametrize(
    ("previous", "state", "wakes"),
    [
        (None, AgentState.IDLE, True),
        (AgentState.BUSY, AgentState.IDLE, True),
        (AgentState.PAUSED, AgentState.BUSY, True),  # back from paused into a state that takes work
        (AgentState.OFFLINE, AgentState.INITIALIZING, True),
        (AgentState.BUSY, AgentState.BUSY, False),
        (AgentState.IDLE, AgentState.PAUSED, False),
        (AgentState.PAUSED, AgentState.ERROR, False),
        (None, AgentState.BUSY, False),
    ],
)
def test_which_state_changes_make_a_queue_worth_serving(
    previous: AgentState | None, state: AgentState, wakes: bool
) -> None:
    assert became_able_to_take_work(previous, state) is wakes


def test_paused_error_and_offline_agents_take_no_work() -> None:
    assert {state for state in AgentState if not takes_work(state)} == {
        AgentState.PAUSED,
        AgentState.ERROR,
        AgentState.OFFLINE,
    }
