"""The rules derived from an agent record, each defined once beside the record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opscore.agents.models import AgentState, CurrentState
from opscore.agents.records import AgentRecord, became_able_to_take_work, takes_work


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
        (agent(AgentState.IDLE, quarantined=True), False),
    ],
)
def test_may_take_work(record: AgentRecord, may: bool) -> None:
    assert record.may_take_work is may


@pytest.mark.parametrize(
    ("streak", "threshold", "quarantined", "due"),
    [(2, 3, False, False), (3, 3, False, True), (5, 3, False, True), (5, 3, True, False), (1, 1, False, True)],
)
def test_due_for_quarantine(streak: int, threshold: int, quarantined: bool, due: bool) -> None:
    record = agent(failure_streak=streak, quarantine_after=threshold, quarantined=quarantined)
    assert record.due_for_quarantine is due


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
