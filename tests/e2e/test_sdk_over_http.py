"""The Python SDK against `opscore local`: the typed client (sync and async) drives a session end to end, its errors
are the API's, its pages follow next_token, and a webhook agent built on opscore_sdk.webhook completes a task."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from opscore_sdk import AsyncOpsCore, NotFound, OpsCore, Unauthorized, ValidationFailed, webhook
from opscore_sdk.models import LeasedTask, SessionView
from tests.e2e.conftest import Api

DEADLINE_SECONDS = 30.0
TEMPLATE = {
    "name": "sdk-check",
    "tasks": [
        {"id": "fetch", "action": "web.fetch", "input": {"url": "https://example.org"}},
        {"id": "sum", "action": "text.summarise", "heartbeat_seconds": 30, "timeout_seconds": 120},
    ],
}


def _agent(api: Api, admin: OpsCore, **registration: Any) -> tuple[str, OpsCore]:
    """A new agent, registered through its own key; answers its id and a client holding that key."""
    agent_id = f"sdk-{uuid.uuid4().hex[:10]}"
    key = admin.create_key(agent_id=agent_id).api_key
    client = OpsCore(api.base_url, key)
    client.register(agent_id, {"name": "sdk agent", "capabilities": ["web.fetch", "text.summarise"], **registration})
    return agent_id, client


def _until(check: Callable[[], SessionView], done: Callable[[SessionView], bool], what: str) -> SessionView:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done(view := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached {what}: {view}")
        time.sleep(0.05)
    return view


def _lease(agent: OpsCore, agent_id: str) -> LeasedTask:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (leased := agent.next_task(agent_id)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{agent_id} was handed nothing")
        time.sleep(0.05)
    return leased


@pytest.fixture
def admin(api: Api) -> Iterator[OpsCore]:
    with OpsCore(api.base_url, api.admin_key) as client:
        yield client


def test_an_agent_on_the_sdk_runs_a_session_to_completion(api: Api, admin: OpsCore) -> None:
    # Given an agent registered and idle, and a session started for it with an inline template
    agent_id, agent = _agent(api, admin)
    with agent:
        assert agent.report_state(agent_id, "idle").state == "idle"
        started = admin.trigger(agent_id, template=TEMPLATE, input={"ticket": "T-1"})

        # When the agent leases each task, heartbeats it and reports its result with its attempt
        outputs = []
        for _ in TEMPLATE["tasks"]:
            leased = _lease(agent, agent_id)
            assert leased.session_id == started.session_id
            assert agent.heartbeat(agent_id, leased.task_id).attempt == leased.attempt
            accepted = agent.succeed(agent_id, leased.task_id, attempt=leased.attempt, output={"did": leased.action})
            assert accepted.attempt == leased.attempt
            outputs.append(leased.action)

        # Then the session completes with each task's output, and nothing is left to lease
        view = _until(
            lambda: agent.get_session(agent_id, started.session_id), lambda v: v.status == "completed", "completed"
        )
        assert outputs == ["web.fetch", "text.summarise"]
        assert [task.output for task in view.tasks] == [{"did": "web.fetch"}, {"did": "text.summarise"}]
        assert agent.next_task(agent_id) is None
        assert agent.get_agent(agent_id).current_state is not None


def test_a_repeated_trigger_with_the_same_key_starts_one_session(api: Api, admin: OpsCore) -> None:
    agent_id, agent = _agent(api, admin)
    agent.close()

    first = admin.run_task(agent_id, {"action": "web.fetch"}, idempotency_key="sdk-once")
    again = admin.run_task(agent_id, {"action": "web.fetch"}, idempotency_key="sdk-once")
    other = admin.run_task(agent_id, {"action": "web.fetch"})

    assert again.session_id == first.session_id
    assert other.session_id != first.session_id


def test_the_api_s_errors_are_the_sdk_s_exceptions(api: Api, admin: OpsCore) -> None:
    with pytest.raises(NotFound) as missing:
        admin.get_agent(f"sdk-missing-{uuid.uuid4().hex[:6]}")
    assert missing.value.code == "not_found"
    assert missing.value.request_id

    with pytest.raises(ValidationFailed) as invalid:
        admin.register("sdk-invalid", {"name": "x", "max_concurrency": 0})
    assert "max_concurrency" in invalid.value.fields

    with OpsCore(api.base_url, "not-a-key") as stranger, pytest.raises(Unauthorized):
        stranger.list_agents()


def test_iterating_sessions_follows_every_page(api: Api, admin: OpsCore) -> None:
    agent_id, agent = _agent(api, admin)
    agent.close()
    started = {admin.run_task(agent_id, {"action": "web.fetch"}).session_id for _ in range(3)}

    seen = {session.session_id for session in admin.iter_sessions(agent_id, limit=1)}

    assert seen == started


@pytest.mark.asyncio
async def test_the_async_client_runs_an_ad_hoc_task(api: Api, admin: OpsCore) -> None:
    agent_id, agent = _agent(api, admin)
    agent.close()
    key = admin.create_key(agent_id=agent_id).api_key
    async with AsyncOpsCore(api.base_url, api.admin_key) as operator, AsyncOpsCore(api.base_url, key) as worker:
        started = await operator.run_task(agent_id, {"action": "web.fetch", "input": {"n": 1}})
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (leased := await worker.next_task(agent_id)) is None:
            assert time.monotonic() < deadline, "the task was never queued"
            await asyncio.sleep(0.05)
        await worker.succeed(agent_id, leased.task_id, attempt=leased.attempt, output={"n": leased.input["n"]})
        while (view := await worker.get_session(agent_id, started.session_id)).status != "completed":
            assert time.monotonic() < deadline, f"never completed: {view}"
            await asyncio.sleep(0.05)

    assert view.tasks[0].output == {"n": 1}


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/tasks"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_webhook_agent_on_the_sdk_receiver_completes_its_task(api: Api, admin: OpsCore) -> None:
    # Given a webhook agent whose endpoint is the SDK's WSGI receiver
    secret = "sdk-webhook-secret-" + uuid.uuid4().hex[:8]
    received: list[LeasedTask] = []

    def handler(task: LeasedTask) -> dict[str, Any]:
        received.append(task)
        return {"status": "succeeded", "output": {"echo": task.input}}

    with _serving(webhook.wsgi_app(secret, handler)) as endpoint:
        agent_id, agent = _agent(api, admin, delivery="webhook", endpoint=endpoint, webhook_secret=secret)
        with agent:
            agent.report_state(agent_id, "idle")

            # When a task is run for it
            started = admin.run_task(agent_id, {"action": "web.fetch", "input": {"q": "agents"}})

            # Then the signed delivery reached the handler, and its answer completed the session
            view = _until(
                lambda: agent.get_session(agent_id, started.session_id), lambda v: v.status == "completed", "done"
            )
    assert [task.action for task in received] == ["web.fetch"]
    assert view.tasks[0].output == {"echo": {"q": "agents"}}
