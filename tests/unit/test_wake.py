"""When a state report wakes an agent's queue: idle, or back into a state that takes work; and only push agents."""

from __future__ import annotations

from typing import Any

import pytest

from opscore.agents.models import AgentState, StateAccepted
from opscore.dispatch.wake import Waker


class Agents:
    def __init__(self, delivery: str | None) -> None:
        self.delivery = delivery

    def delivery_of(self, agent_id: str) -> str | None:
        return self.delivery


class Lambda:
    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **request: Any) -> None:
        self.invocations.append(request)


def report(previous: AgentState | None, state: AgentState) -> StateAccepted:
    return StateAccepted(
        agent_id="agent-1", state=state, previous_state=previous, timestamp="2026-11-24T10:00:00.000000Z", version=2
    )


@pytest.mark.parametrize(
    ("previous", "state", "wakes"),
    [
        (AgentState.BUSY, AgentState.IDLE, True),
        (AgentState.IDLE, AgentState.IDLE, True),
        (AgentState.PAUSED, AgentState.BUSY, True),
        (AgentState.ERROR, AgentState.BUSY, True),
        (AgentState.OFFLINE, AgentState.INITIALIZING, True),
        (None, AgentState.BUSY, False),
        (AgentState.IDLE, AgentState.BUSY, False),
        (AgentState.BUSY, AgentState.PAUSED, False),
        (AgentState.PAUSED, AgentState.ERROR, False),
    ],
)
def test_a_push_agent_is_served_when_it_can_take_work_again(
    previous: AgentState | None, state: AgentState, wakes: bool
) -> None:
    client = Lambda()
    waker = Waker(Agents("webhook"), lambda: client, "arn:aws:lambda:us-east-1:123456789012:function:dispatch")  # type: ignore[arg-type]
    assert waker.state_changed(report(previous, state)) is wakes
    assert len(client.invocations) == int(wakes)
    if wakes:
        (request,) = client.invocations
        assert (request["InvocationType"], request["Payload"]) == ("Event", b'{"serve": "agent-1"}')


@pytest.mark.parametrize("delivery", ["poll", None])
def test_a_polling_or_unknown_agent_is_never_woken(delivery: str | None) -> None:
    client = Lambda()
    waker = Waker(Agents(delivery), lambda: client, "arn:aws:lambda:us-east-1:123456789012:function:dispatch")  # type: ignore[arg-type]
    assert waker.state_changed(report(AgentState.BUSY, AgentState.IDLE)) is False
    assert client.invocations == []
