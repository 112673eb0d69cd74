"""Agents in the states the dashboard must show, made over HTTP as an operator and its agents make them: shared by
the browser tests and the screenshot script (screenshots.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.e2e.conftest import Api
from tests.e2e.test_quarantine_over_http import open_breaker
from tests.e2e.test_sessions_over_http import Operator
from tests.e2e.test_traces_over_http import traced_session


def report(agent: Operator, state: str) -> None:
    body = {"state": state, "timestamp": datetime.now(UTC).isoformat()}
    reply = agent.api.request("POST", f"/agent/{agent.agent_id}/state", key=agent.agent_key, body=body)
    assert reply.status == 200, reply.body


def busy_agent_with_a_queue(api: Api) -> tuple[Operator, list[str]]:
    """An agent that reported busy and has two ad-hoc tasks waiting in its queue (priorities 7 and 2): two open
    sessions."""
    agent = Operator(api)
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


def quarantined_agent(api: Api) -> tuple[Operator, dict[str, Any]]:
    """An agent whose one failure of its own (quarantine_after 1) opened its breaker for an hour."""
    agent = Operator(api)
    body = {"name": "e2e", "quarantine_after": 1, "quarantine_cooldown_seconds": 3600}
    assert api.request("PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body=body).status == 200
    report(agent, "idle")
    return agent, open_breaker(agent, api)


def retried_and_fallen_back(api: Api) -> tuple[Operator, str]:
    """A session whose first task failed twice (retried once) and whose fallback then succeeded."""
    agent, session_id = traced_session(api)
    return agent, session_id
