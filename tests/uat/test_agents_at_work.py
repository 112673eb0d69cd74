"""Acceptance: agents doing their work through the SDK, as AgentKit would run them on Ops-Core.

Registration sync, a full workflow, two agents sharing a queue by priority, a webhook agent, and a failure not worth
retrying going straight to its fallback.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from opscore_sdk import AgentWorker, NotRetryable, OpsCore, TaskContext, ValidationFailed, webhook
from opscore_sdk.models import LeasedTask
from tests.uat.conftest import DEADLINE_SECONDS, Agent, until

NewAgent = Callable[[], Agent]


@contextmanager
def running(*workers: AgentWorker) -> Iterator[None]:
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.stop(drain_timeout=5)


def test_re_registering_with_new_capabilities_lets_the_agent_take_the_new_action(
    new_agent: NewAgent, admin: OpsCore
) -> None:
    # Given an agent whose first release took only web.fetch
    agent = new_agent()
    first = agent.worker(capabilities=["web.fetch"], name="researcher")
    with running(first):
        assert agent.client.get_agent(agent.agent_id).capabilities == ["web.fetch"]
    with pytest.raises(ValidationFailed) as refused:
        admin.run_task(agent.agent_id, {"action": "text.summarise"})
    assert "action" in str(refused.value.fields)

    # When its next release starts, with a handler for text.summarise too
    second = agent.worker(name="researcher", registration={"version": "2.0.0"})

    @second.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        return {"body": "page"}

    @second.task("text.summarise")
    def summarise(task: TaskContext) -> dict[str, Any]:
        return {"summary": task.input["text"][:4]}

    with running(second):
        registration = agent.client.get_agent(agent.agent_id)
        started = admin.run_task(agent.agent_id, {"action": "text.summarise", "input": {"text": "long text"}})
        view = agent.ended(started.session_id)

    # Then the registration says what it takes now, and the new action runs
    assert sorted(registration.capabilities) == ["text.summarise", "web.fetch"]
    assert registration.version == "2.0.0"
    assert (view.status, view.tasks[0].output) == ("completed", {"summary": "long"})


def test_a_workflow_runs_end_to_end_and_the_agent_s_state_follows_the_worker(
    new_agent: NewAgent, admin: OpsCore
) -> None:
    # Given an agent with a handler per step (one of them async) and a three-step workflow
    agent = new_agent()
    worker = agent.worker(max_concurrency=2)

    @worker.task("web.fetch")
    def fetch(task: TaskContext) -> dict[str, Any]:
        # Running until the agent shows busy: a task done before its busy report would be seen idle throughout.
        until(lambda: agent.client.get_agent(agent.agent_id).current_state, _is_busy, "the agent busy")
        return {"body": f"news about {task.input['topic']}"}

    @worker.task("text.summarise")
    async def summarise(task: TaskContext) -> dict[str, Any]:
        return {"summary": task.input["text"].upper()}

    @worker.task("post.publish")
    def publish(task: TaskContext) -> dict[str, Any]:
        return {"published": task.input["summary"], "ticket": task.task.session_input["ticket"]}

    template = {
        "name": "uat-digest",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "input": {"topic": "agents"}},
            {"id": "summarise", "action": "text.summarise", "input": {"text": {"$from": "tasks.fetch.output.body"}}},
            {
                "id": "publish",
                "action": "post.publish",
                "input": {"summary": {"$from": "tasks.summarise.output.summary"}},
            },
        ],
    }

    # When it is triggered while the worker runs, and the worker then stops
    with running(worker):
        started = admin.trigger(agent.agent_id, template=template, input={"ticket": "T-7"})
        view = agent.ended(started.session_id)
    states = [entry.state for entry in agent.client.iter_state_history(agent.agent_id)]

    # Then each step ran with the previous one's output, and the agent went idle, busy, idle, then offline
    assert view.status == "completed"
    assert view.tasks[-1].output == {"published": "NEWS ABOUT AGENTS", "ticket": "T-7"}
    assert states[0] == "offline"  # newest first
    assert states[-1] == "idle"
    assert "busy" in states
    assert agent.client.get_agent(agent.agent_id).current_state.state == "offline"  # type: ignore[union-attr]


def test_two_agents_on_one_queue_share_its_work_highest_priority_first(new_agent: NewAgent, admin: OpsCore) -> None:
    # Given six tasks queued at priorities 1, 5 and 9, before any agent runs
    agent = new_agent()
    agent.client.register(agent.agent_id, {"name": "pair", "capabilities": ["work.item"], "max_concurrency": 2})
    for priority in (1, 9, 5, 9, 1, 5):
        admin.run_task(agent.agent_id, {"action": "work.item", "priority": priority, "input": {"p": priority}})
    until(lambda: agent.client.list_tasks(agent.agent_id).items, lambda items: len(items) == 6, "six queued tasks")

    # When two agent processes (one slot each) take the work, each task held until the other process holds one too
    together = threading.Barrier(2, timeout=DEADLINE_SECONDS)
    taken: list[tuple[str, int]] = []

    def replica(name: str) -> AgentWorker:
        worker = agent.worker(name="pair", max_concurrency=1, registration={"max_concurrency": 2})

        @worker.task("work.item")
        def item(task: TaskContext) -> dict[str, Any]:
            taken.append((name, task.input["p"]))
            together.wait()
            return {"by": name}

        return worker

    with running(replica("a"), replica("b")):
        until(lambda: len(taken), lambda count: count == 6, "six tasks taken")
        until(lambda: agent.client.list_tasks(agent.agent_id).items, lambda items: not items, "the queue empty")

    # Then the pair took the two most urgent first, then the next two, and each took half
    rounds = [sorted(priority for _, priority in taken[n : n + 2]) for n in (0, 2, 4)]
    assert rounds == [[9, 9], [5, 5], [1, 1]]
    assert sorted(name for name, _ in taken) == ["a", "a", "a", "b", "b", "b"]


@contextmanager
def serving(app: Any) -> Iterator[str]:
    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/opscore/tasks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_webhook_agent_answers_one_task_at_once_and_reports_a_long_one_later(
    new_agent: NewAgent, admin: OpsCore
) -> None:
    # Given a webhook agent on the SDK's receiver: quick tasks answered in the delivery, long ones taken for later
    agent = new_agent()
    secret = f"uat-{uuid.uuid4().hex}"
    later: list[LeasedTask] = []

    def handle(task: LeasedTask) -> webhook.Outcome:
        if task.action == "report.long":
            later.append(task)
            return webhook.DEFERRED
        return {"status": "succeeded", "output": {"answer": task.input["question"].upper()}}

    with serving(webhook.wsgi_app(secret, handle)) as endpoint:
        # Two slots: which session is dispatched first is not fixed, and the long task holds its slot until reported.
        registration = {
            "name": "hooked",
            "delivery": "webhook",
            "endpoint": endpoint,
            "webhook_secret": secret,
            "max_concurrency": 2,
        }
        agent.client.register(agent.agent_id, registration)
        agent.client.report_state(agent.agent_id, "idle")

        # When a quick task and a long one are run for it
        quick = admin.run_task(agent.agent_id, {"action": "chat.answer", "input": {"question": "why?"}})
        long = admin.run_task(agent.agent_id, {"action": "report.long", "heartbeat_seconds": 30})
        quick_view = agent.ended(quick.session_id)
        until(lambda: len(later), lambda count: count == 1, "the long task delivered")
        task = later[0]
        agent.client.heartbeat(agent.agent_id, task.task_id)
        agent.client.succeed(agent.agent_id, task.task_id, attempt=task.attempt, output={"pages": 12})
        long_view = agent.ended(long.session_id)

    # Then the quick one completed with the delivery's answer, the long one with the result reported later
    assert (quick_view.status, quick_view.tasks[0].output) == ("completed", {"answer": "WHY?"})
    assert (long_view.status, long_view.tasks[0].output) == ("completed", {"pages": 12})


class CardDeclined(NotRetryable):
    pass


def test_a_failure_not_worth_retrying_goes_straight_to_its_fallback(new_agent: NewAgent, admin: OpsCore) -> None:
    # Given a charge that may be retried twice, with a refund as its fallback, and a card that is declined
    agent = new_agent()
    worker = agent.worker()
    charges: list[int] = []

    @worker.task("pay.charge")
    def charge(task: TaskContext) -> None:
        charges.append(task.attempt)
        raise CardDeclined("the card was declined")

    @worker.task("pay.refund")
    def refund(task: TaskContext) -> dict[str, Any]:
        return {"refunded": True}

    template = {
        "name": "uat-payment",
        "tasks": [
            {
                "id": "charge",
                "action": "pay.charge",
                "retry": {"max_retries": 2, "backoff_seconds": 0},
                "fallback": "refund",
            },
            {"id": "refund", "action": "pay.refund", "fallback_only": True},
        ],
    }

    # When the session runs
    with running(worker):
        view = agent.ended(admin.trigger(agent.agent_id, template=template).session_id)

    # Then the charge was tried once, and the refund ran in its place
    charge_view, refund_view = view.tasks
    assert charges == [1]
    assert (charge_view.status, charge_view.attempts) == ("failed", 1)
    assert charge_view.error is not None
    assert charge_view.error.type == "CardDeclined"
    assert (refund_view.fallback_for, refund_view.output) == (["charge"], {"refunded": True})
    assert view.status == "completed"


def _is_busy(current: Any) -> bool:
    return current is not None and current.state == "busy"
