"""Agents in the states the dashboard must show, made over HTTP as an operator and its agents make them: shared by
the browser tests and the screenshot script (screenshots.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Api
from tests.e2e.test_quarantine_over_http import SINGLE, open_breaker
from tests.e2e.test_sessions_over_http import Operator
from tests.e2e.test_traces_over_http import TASKS


def report(agent: Operator, state: str, minutes_ago: float = 0) -> None:
    """The agent reports its state, as of now or of some minutes ago (a report may be late)."""
    body = {"state": state, "timestamp": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()}
    reply = agent.api.request("POST", f"/agent/{agent.agent_id}/state", key=agent.agent_key, body=body)
    assert reply.status == 200, reply.body


NewAgent = Callable[[Api], Operator]


def busy_agent_with_a_queue(api: Api, new: NewAgent = Operator) -> tuple[Operator, list[str]]:
    """An agent that reported busy and has two ad-hoc tasks waiting in its queue (priorities 7 and 2): two open
    sessions."""
    agent = new(api)
    report(agent, "idle")
    report(agent, "busy")
    sessions = []
    for priority in (7, 2):
        started = api.admin(
            "POST", f"/agent/{agent.agent_id}/tasks", body={"action": "web.fetch", "priority": priority}
        )
        assert started.status == 202, started.body
        sessions.append(started.body["session_id"])
        agent.queued(started.body["session_id"], "task")
    return agent, sessions


def quarantined_agent(api: Api, new: NewAgent = Operator) -> tuple[Operator, dict[str, Any]]:
    """An agent whose one failure of its own (quarantine_after 1) opened its breaker for an hour."""
    agent = new(api)
    body = {"name": agent.name, "quarantine_after": 1, "quarantine_cooldown_seconds": 3600}
    assert api.request("PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body=body).status == 200
    report(agent, "idle")
    return agent, open_breaker(agent, api)


def failing_agent(api: Api, failures: int, new: NewAgent = Operator) -> Operator:
    """An agent whose last `failures` tasks failed by its own fault, one short of its quarantine: its error streak."""
    agent = new(api)
    body = {"name": agent.name, "quarantine_after": failures + 1, "quarantine_cooldown_seconds": 3600}
    assert api.request("PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body=body).status == 200
    report(agent, "idle")
    error = {"type": "OutOfMemory", "message": "the worker ran out of memory", "fault": "agent"}
    for _ in range(failures):
        task = agent.lease(agent.start(SINGLE), "work")
        assert agent.result(task, {"status": "failed", "error": error}).status == 200
    return agent


def retried_and_fallen_back(api: Api, new: NewAgent = Operator) -> tuple[Operator, str]:
    """A session whose first task failed twice (retried once) and whose fallback then succeeded."""
    agent = new(api)
    session_id = agent.start(TASKS)
    for attempt in (1, 2):
        fetch = agent.lease(session_id, "fetch", attempts=attempt)
        error = {"type": "ToolError", "message": f"try {attempt} failed"}
        assert agent.result(fetch, {"status": "failed", "error": error}).status == 200
    agent.succeed(agent.lease(session_id, "ask"), {"answer": "the page moved to /v2"})
    assert agent.ended(session_id)["status"] == "completed"
    return agent, session_id
