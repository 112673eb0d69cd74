"""Agent-aware dispatch over HTTP: agents lease their own work from `opscore local`, or have it pushed to them."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import Api, LocalProcess
from tests.e2e.test_sessions_over_http import DEADLINE_SECONDS, Operator, task
from tests.webhook_receiver import SECRET, webhook_receiver

FIVE_STEPS = [{"id": f"step-{n}", "action": f"tool.step{n}", "input": {"n": n}} for n in range(1, 6)]


def work_through(agent: Operator, session_id: str) -> list[str]:
    """The agent's loop: lease the next task, do it, report it; until its session ends. Returns what it did."""
    done: list[str] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while agent.view(session_id)["status"] not in {"completed", "error", "cancelled"}:
        reply = agent.next_task()
        if reply.status == 204:
            if time.monotonic() > deadline:
                raise AssertionError(f"{agent.agent_id} waited too long for work: {agent.view(session_id)}")
            time.sleep(0.05)
            continue
        assert reply.status == 200, reply.body
        leased = reply.body
        assert leased["session_id"] == session_id, "an agent is handed only its own work"
        agent.succeed(leased["task_id"], {"did": leased["action"], "by": agent.agent_id})
        done.append(leased["action"])
    return done


def test_a_five_task_workflow_runs_to_completion_for_two_agents_at_once(api: Api) -> None:
    agents = [Operator(api), Operator(api)]
    sessions = [agent.start(FIVE_STEPS, input={"ticket": agent.agent_id}) for agent in agents]

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(work_through, agents, sessions))

    for agent, session_id, actions in zip(agents, sessions, done, strict=True):
        assert actions == [f"tool.step{n}" for n in range(1, 6)], "in template order, each once"
        view = agent.ended(session_id)
        assert view["status"] == "completed"
        assert [t["output"] for t in view["tasks"]] == [
            {"did": f"tool.step{n}", "by": agent.agent_id} for n in range(1, 6)
        ]
        counts = api.admin("GET", f"/agent/{agent.agent_id}").body["queue"]
        assert counts == {"queued": 0, "in_flight": 0, "queued_by_priority": {}}


def test_pulls_follow_priority_and_respect_max_concurrency(api: Api) -> None:
    agent = Operator(api)
    reply = api.request(
        "PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body={"name": "e2e", "max_concurrency": 2}
    )
    assert reply.status == 200
    started = []
    for priority in (1, 9, 4):
        answer = api.admin(
            "POST", f"/agent/{agent.agent_id}/tasks", body={"action": f"p{priority}", "priority": priority}
        )
        assert answer.status == 202, answer.body
        started.append(answer.body)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(api.admin("GET", f"/agent/{agent.agent_id}/tasks").body["items"]) < len(started):
            assert time.monotonic() < deadline, "the ad-hoc task never reached the queue"
            time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda _: agent.next_task(), range(4)))
    leased = sorted((reply.body for reply in replies if reply.status == 200), key=lambda t: -t["priority"])
    assert [t["action"] for t in leased] == ["p9", "p4"], "the two most urgent, each to one pull only"
    assert sorted(reply.status for reply in replies) == [200, 200, 204, 204]
    queue = api.request("GET", f"/agent/{agent.agent_id}/tasks", key=agent.agent_key, query={"status": "leased"})
    assert {t["task_id"] for t in queue.body["items"]} == {t["task_id"] for t in leased}

    for item in leased:
        agent.succeed(item["task_id"])
    last = agent.next_task()
    assert (last.status, last.body["action"]) == (200, "p1")
    agent.succeed(last.body["task_id"])
    for answer in started:
        assert agent.ended(answer["session_id"])["status"] == "completed"


def test_a_webhook_agent_gets_its_tasks_pushed_and_signed(api: Api, local_ops_core: LocalProcess | None) -> None:
    if local_ops_core is None:
        pytest.skip("a deployed stack cannot reach a receiver on this machine's loopback")
    agent = Operator(api)

    def work(delivered: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "succeeded", "output": {"did": delivered["action"]}}

    with webhook_receiver(work) as receiver:
        settings = {"name": "e2e", "delivery": "webhook", "endpoint": receiver.url, "webhook_secret": SECRET}
        reply = api.request("PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body=settings)
        assert (reply.status, reply.body["delivery"]) == (200, "webhook")
        assert "webhook_secret" not in reply.body, "the secret is never returned"
        session_id = agent.start(FIVE_STEPS[:2])
        view = agent.ended(session_id)
        deliveries = receiver.wait_for(2)

    assert view["status"] == "completed"
    assert [task(view, f"step-{n}")["output"] for n in (1, 2)] == [{"did": "tool.step1"}, {"did": "tool.step2"}]
    assert all(delivery.signed for delivery in deliveries)


def test_dispatch_routes_refuse_bad_input_and_other_agents(api: Api) -> None:
    agent, other = Operator(api), Operator(api)
    assert api.request("POST", f"/agent/{agent.agent_id}/tasks/next", key=other.agent_key).status == 403
    assert (
        api.request("POST", f"/agent/{agent.agent_id}/tasks", key=agent.agent_key, body={"action": "x"}).status == 403
    )
    reply = api.admin("POST", f"/agent/{agent.agent_id}/tasks", body={"action": "x", "priority": 10})
    assert (reply.status, reply.body["error"]["details"][0]["field"]) == (400, "priority")
    reply = api.request("GET", f"/agent/{agent.agent_id}/tasks", key=agent.agent_key, query={"status": "finished"})
    assert (reply.status, reply.body["error"]["details"][0]["field"]) == (400, "status")
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    assert api.admin("POST", f"/agent/{ghost}/tasks/next").status == 404
    reply = api.request("PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body={"name": "e2e", "delivery": "sqs"})
    assert (reply.status, reply.body["error"]["details"][0]["field"]) == (400, "delivery")
    reply = api.request(
        "PUT", f"/agent/{agent.agent_id}", key=agent.agent_key, body={"name": "e2e", "delivery": "webhook"}
    )
    assert [d["field"] for d in reply.body["error"]["details"]] == ["endpoint", "webhook_secret"]
