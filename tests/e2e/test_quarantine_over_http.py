"""Quarantine over HTTP: an agent learns it is quarantined, its idle does not lift it, an admin does.

Every answer is held to docs/openapi.yaml by the Api client (the 409 with its quarantine and Retry-After included).
The half-open probe is tested here with a one-second cool-down, polled as an agent would (its Retry-After says when
to ask again); the finer cases (concurrent pulls, the window, throttled answers) are tested on the handlers with a
moved clock (tests/integration/test_quarantine.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.e2e.conftest import Api, Reply
from tests.e2e.test_sessions_over_http import DEADLINE_SECONDS, Operator

SINGLE = [{"id": "work", "action": "web.fetch"}]


def test_a_quarantined_agent_is_told_so_and_only_an_admin_lifts_it(api: Api) -> None:
    agent = Operator(api)
    path = f"/agent/{agent.agent_id}"
    body = {"name": "e2e", "quarantine_after": 1, "quarantine_cooldown_seconds": 3600}
    assert api.request("PUT", path, key=agent.agent_key, body=body).status == 200
    assert api.admin("DELETE", f"{path}/quarantine").error_code == "not_quarantined"

    # one failure of the agent's own fault opens the breaker (quarantine_after 1)
    first = agent.start(SINGLE)
    leased = agent.lease(first, "work")
    error = {"type": "OutOfMemory", "message": "the worker ran out of memory", "fault": "agent"}
    assert agent.result(leased, {"status": "failed", "error": error}).status == 200
    assert agent.ended(first)["status"] == "error"
    registration = api.request("GET", path, key=agent.agent_key).body
    quarantine = registration["quarantine"]
    assert (registration["quarantined"], registration["current_state"]["state"]) == (True, "error")
    assert (quarantine["reason"], quarantine["failures"]) == ("failures", 1)
    assert quarantine["last_error_type"] == "OutOfMemory"

    # the agent's own idle is stored; the quarantine holds, and its pull says so
    idle = {"state": "idle", "timestamp": datetime.now(UTC).isoformat()}
    assert api.request("POST", f"{path}/state", key=agent.agent_key, body=idle).status == 200
    reply = agent.next_task()
    assert (reply.status, reply.error_code) == (409, "agent_quarantined")
    assert reply.body["error"]["quarantine"]["since"] == quarantine["since"]
    assert 3500 <= int(reply.headers["Retry-After"]) <= 3600

    # a trigger is accepted, and says so; its session's error names when the quarantine began
    started = api.admin("POST", f"{path}/tasks", body={"action": "web.fetch"})
    assert (started.status, started.body["quarantine"]["since"]) == (202, quarantine["since"])
    view = agent.ended(started.body["session_id"])
    assert view["error"]["type"] == "OpsCore.AgentQuarantined"
    since = quarantine["since"]
    assert f"has been quarantined since {since} (1 failure in 600 s: OutOfMemory)" in view["error"]["message"]

    # only an admin lifts it
    assert api.request("DELETE", f"{path}/quarantine", key=agent.agent_key).status == 403
    assert api.admin("DELETE", "/agent/e2e-nobody-here/quarantine").status == 404
    lifted = api.admin("DELETE", f"{path}/quarantine")
    assert lifted.status == 200
    assert (lifted.body["quarantined"], lifted.body["quarantine"], lifted.body["failure_streak"]) == (False, None, 0)
    assert api.admin("DELETE", f"{path}/quarantine").status == 409
    again = agent.start(SINGLE)
    agent.succeed(agent.lease(again, "work"))
    assert agent.ended(again)["status"] == "completed"


def probe_once_half_open(agent: Operator, api: Api) -> Reply:
    """Wait (polling the registration) until the breaker is half-open, queue a task, and lease it: the probe. Tasks
    queued while the breaker is open fail over at once; from half-open on they wait for the probe's verdict."""
    path = f"/agent/{agent.agent_id}"
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not api.request("GET", path, key=agent.agent_key).body["quarantine"]["half_open"]:
        assert time.monotonic() < deadline, "never half-open"
        time.sleep(0.05)
    session = api.admin("POST", f"{path}/tasks", body={"action": "web.fetch"}).body["session_id"]
    agent.queued(session, "task")
    reply = agent.next_task()
    assert (reply.status, reply.body["session_id"]) == (200, session), reply.body
    return reply


def open_breaker(agent: Operator, api: Api) -> dict[str, Any]:
    first = agent.start(SINGLE)
    error = {"type": "OutOfMemory", "message": "the worker ran out of memory", "fault": "agent"}
    assert agent.result(agent.lease(first, "work"), {"status": "failed", "error": error}).status == 200
    quarantine = api.request("GET", f"/agent/{agent.agent_id}", key=agent.agent_key).body["quarantine"]
    assert quarantine is not None
    return dict(quarantine)


def test_a_quarantined_agent_half_opens_and_its_probe_closes_or_reopens_the_breaker(api: Api) -> None:
    agent = Operator(api)
    path = f"/agent/{agent.agent_id}"
    body = {"name": "e2e", "quarantine_after": 1, "quarantine_cooldown_seconds": 1}
    assert api.request("PUT", path, key=agent.agent_key, body=body).status == 200

    # a bad probe opens the breaker again, from then
    first = open_breaker(agent, api)
    probe = probe_once_half_open(agent, api)
    assert probe.body["probe"] is True
    failure = {"status": "failed", "error": {"type": "ToolError", "message": "still broken"}}
    assert agent.result(probe.body["task_id"], failure).status == 200
    reopened = api.request("GET", path, key=agent.agent_key).body["quarantine"]
    assert (reopened["reason"], reopened["last_error_type"]) == ("probe_failed", "ToolError")
    assert reopened["since"] > first["since"]

    # a good probe closes it: the agent is idle again and takes ordinary work
    probe = probe_once_half_open(agent, api)
    assert probe.body["probe"] is True
    agent.succeed(probe.body["task_id"])
    closed = api.request("GET", path, key=agent.agent_key).body
    assert (closed["quarantined"], closed["quarantine"], closed["current_state"]["state"]) == (False, None, "idle")
    after = agent.start(SINGLE)
    agent.queued(after, "work")
    leased = agent.next_task()
    assert (leased.status, "probe" in leased.body) == (200, False)
    agent.succeed(leased.body["task_id"])
    assert agent.ended(after)["status"] == "completed"
