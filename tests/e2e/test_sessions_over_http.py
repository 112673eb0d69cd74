"""Workflow sessions over HTTP, as an operator triggers them and an agent works through its tasks.

The runner executes for real inside `opscore local`; the tests follow it through the session API only, polling
(never sleeping a fixed time) until the runner has recorded what they wait for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Api

DEADLINE_SECONDS = 30.0


class Operator:
    """The operator's and the agent's side of one agent, over HTTP."""

    def __init__(self, api: Api, agent_id: str | None = None, name: str = "e2e") -> None:
        self.api = api
        self.agent_id = agent_id or f"e2e-{uuid.uuid4().hex[:10]}"
        self.name = name
        created = api.admin("POST", "/keys", body={"agent_id": self.agent_id})
        self.agent_key = created.body["api_key"]
        assert api.request("PUT", f"/agent/{self.agent_id}", key=self.agent_key, body={"name": name}).status == 201

    def start(self, tasks: list[dict[str, Any]], **body: Any) -> str:
        name = f"e2e-{uuid.uuid4().hex[:10]}"
        assert self.api.admin("POST", "/workflows", body={"name": name, "tasks": tasks}).status == 201
        reply = self.api.admin("POST", f"/agent/{self.agent_id}/workflow", body={"workflow_id": name, **body})
        assert (reply.status, reply.body["status"], reply.body["version"]) == (202, "waiting", 1)
        return str(reply.body["session_id"])

    def view(self, session_id: str) -> dict[str, Any]:
        reply = self.api.request("GET", f"/agent/{self.agent_id}/sessions/{session_id}", key=self.agent_key)
        assert reply.status == 200, reply.body
        return dict(reply.body)

    def wait(self, session_id: str, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not done(view := self.view(session_id)):
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached {what}: {view}")
            time.sleep(0.05)
        return view

    def queued(self, session_id: str, task_id: str, attempts: int = 1) -> str:
        view = self.wait(
            session_id,
            lambda view: any(
                t["id"] == task_id and t["status"] == "queued" and t["attempts"] == attempts for t in view["tasks"]
            ),
            f"{task_id} queued",
        )
        return str(task(view, task_id)["task_id"])

    def next_task(self) -> Any:
        return self.api.request("POST", f"/agent/{self.agent_id}/tasks/next", key=self.agent_key)

    def lease(self, session_id: str, task_id: str, attempts: int = 1) -> str:
        """Wait until the task's attempt is queued, then lease it as the agent does."""
        queued = self.queued(session_id, task_id, attempts)
        reply = self.next_task()
        assert (reply.status, reply.body["task_id"], reply.body["attempt"]) == (200, queued, attempts), reply.body
        return queued

    def ended(self, session_id: str) -> dict[str, Any]:
        return self.wait(session_id, lambda view: view["status"] in {"completed", "error", "cancelled"}, "the end")

    def result(self, task_id: str, body: dict[str, Any]) -> Any:
        return self.api.request("POST", f"/agent/{self.agent_id}/tasks/{task_id}/result", key=self.agent_key, body=body)

    def succeed(self, task_id: str, output: dict[str, Any] | None = None) -> None:
        assert self.result(task_id, {"status": "succeeded", "output": output or {}}).status == 200

    def fail(self, task_id: str, attempt: int = 1) -> None:
        failure = {"type": "ToolError", "message": "it broke"}
        reply = self.result(task_id, {"status": "failed", "error": failure, "attempt": attempt})
        assert reply.status == 200, reply.body


def task(view: dict[str, Any], template_id: str) -> dict[str, Any]:
    return dict(next(t for t in view["tasks"] if t["id"] == template_id))


@pytest.fixture
def ops(api: Api) -> Operator:
    return Operator(api)


def test_a_session_runs_its_tasks_in_order_to_completion(ops: Operator) -> None:
    session_id = ops.start(
        [{"id": "fetch", "action": "web.fetch", "input": {"url": "https://example.com"}}, {"id": "sum", "action": "x"}],
        input={"ticket": "T-1"},
    )
    fetch_id = ops.lease(session_id, "fetch")
    assert task(ops.view(session_id), "fetch")["input"] == {"url": "https://example.com"}
    ops.succeed(fetch_id, {"page": "<html>"})
    ops.succeed(ops.lease(session_id, "sum"))

    view = ops.ended(session_id)
    assert (view["status"], view["input"]) == ("completed", {"ticket": "T-1"})
    assert [t["status"] for t in view["tasks"]] == ["succeeded", "succeeded"]
    listed = ops.api.request("GET", f"/agent/{ops.agent_id}/sessions", key=ops.agent_key)
    assert [item["session_id"] for item in listed.body["items"]] == [session_id]


def test_retry_then_fallback_then_the_session_goes_on(ops: Operator) -> None:
    session_id = ops.start(
        [
            {
                "id": "fetch",
                "action": "web.fetch",
                "retry": {"max_retries": 1, "backoff_seconds": 0},
                "fallback": "ask",
            },
            {"id": "ask", "action": "human.ask", "fallback_only": True},
            {"id": "sum", "action": "x"},
        ]
    )
    ops.fail(ops.lease(session_id, "fetch"))
    ops.fail(ops.lease(session_id, "fetch", attempts=2), attempt=2)
    ops.succeed(ops.lease(session_id, "ask"))
    ops.succeed(ops.lease(session_id, "sum"))

    view = ops.ended(session_id)
    assert view["status"] == "completed"
    assert (task(view, "fetch")["status"], task(view, "fetch")["attempts"]) == ("failed", 2)
    assert task(view, "ask")["fallback_for"] == ["fetch"]


def test_a_failure_without_fallback_ends_the_session_in_error(ops: Operator) -> None:
    session_id = ops.start([{"id": "fetch", "action": "web.fetch"}, {"id": "sum", "action": "x"}])
    fetch_id = ops.lease(session_id, "fetch")
    ops.fail(fetch_id)

    view = ops.ended(session_id)
    assert view["error"] == {"type": "ToolError", "message": "it broke", "task_id": fetch_id}
    assert [t["status"] for t in view["tasks"]] == ["failed", "skipped"]


def test_a_failure_not_worth_retrying_skips_the_retries_for_the_fallback(ops: Operator) -> None:
    # given a task with three retries and a fallback, its first attempt leased
    session_id = ops.start(
        [
            {"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 3}, "fallback": "ask"},
            {"id": "ask", "action": "human.ask", "fallback_only": True},
        ]
    )
    fetch_id = ops.lease(session_id, "fetch")

    # when the agent says `retryable` with the wrong type, then reports a failure not worth retrying
    wrong = ops.result(fetch_id, {"status": "failed", "error": {"type": "InvalidUrl", "retryable": "no"}})
    error = {"type": "InvalidUrl", "message": "no such host", "retryable": False}
    assert ops.result(fetch_id, {"status": "failed", "error": error}).status == 200

    # then the first is a 400 naming the field, and the fallback runs after the one attempt
    assert (wrong.status, [detail["field"] for detail in wrong.body["error"]["details"]]) == (400, ["error.retryable"])
    ops.succeed(ops.lease(session_id, "ask"))
    view = ops.ended(session_id)
    fetch = task(view, "fetch")
    assert (view["status"], fetch["status"], fetch["attempts"]) == ("completed", "failed", 1)
    assert fetch["error"] == {"type": "InvalidUrl", "message": "no such host", "task_id": None, "retryable": False}
    assert task(view, "ask")["fallback_for"] == ["fetch"]


def test_a_delay_then_a_timeout_then_a_retry(ops: Operator) -> None:
    session_id = ops.start(
        [{"id": "slow", "action": "x", "delay_seconds": 1, "timeout_seconds": 1, "retry": {"max_retries": 1}}]
    )
    ops.lease(session_id, "slow")
    retried = ops.lease(session_id, "slow", attempts=2)
    ops.succeed(retried)

    view = ops.ended(session_id)
    slow = task(view, "slow")
    assert [entry["status"] for entry in slow["history"]] == ["timed_out", "succeeded"]
    waited = datetime.fromisoformat(slow["started_at"]) - datetime.fromisoformat(view["started_at"])
    assert waited >= timedelta(seconds=1), "the delay was waited out before the first dispatch"


def test_cancel_and_results_after_it(ops: Operator) -> None:
    session_id = ops.start([{"id": "fetch", "action": "web.fetch"}])
    fetch_id = ops.lease(session_id, "fetch")

    reply = ops.api.admin("POST", f"/agent/{ops.agent_id}/sessions/{session_id}/cancel")
    assert (reply.status, reply.body["status"]) == (200, "cancelled")
    assert ops.result(fetch_id, {"status": "succeeded"}).error_code == "task_not_open"
    refused = ops.api.request("POST", f"/agent/{ops.agent_id}/sessions/{session_id}/cancel", key=ops.agent_key)
    assert refused.status == 403, "agents do not cancel sessions"


def test_idempotent_trigger_and_repeated_results(ops: Operator) -> None:
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    assert ops.api.admin("POST", "/workflows", body={"name": name, "tasks": [{"id": "a", "action": "x"}]}).status == 201
    path = f"/agent/{ops.agent_id}/workflow"
    headers = {"Idempotency-Key": f"order-{name}"}

    first = ops.api.admin("POST", path, body={"workflow_id": name}, headers=headers)
    again = ops.api.admin("POST", path, body={"workflow_id": name}, headers=headers)
    assert (first.status, again.status, again.body) == (202, 202, first.body)
    reused = ops.api.admin("POST", path, body={"workflow_id": name, "priority": 1}, headers=headers)
    assert (reused.status, reused.error_code) == (409, "idempotency_key_reused")

    session_id = first.body["session_id"]
    a_id = ops.lease(session_id, "a")
    result = {"status": "succeeded", "output": {"n": 1}}
    assert ops.result(a_id, result).status == 200
    assert ops.result(a_id, result).status == 200
    assert ops.result(a_id, {"status": "succeeded", "output": {"n": 2}}).status == 409
    assert ops.ended(session_id)["status"] == "completed"
    listed = ops.api.request("GET", f"/agent/{ops.agent_id}/sessions", key=ops.agent_key)
    assert len(listed.body["items"]) == 1, "the repeated trigger started nothing"


def test_concurrent_repeats_of_a_trigger_and_of_a_result_take_effect_once(ops: Operator) -> None:
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    assert ops.api.admin("POST", "/workflows", body={"name": name, "tasks": [{"id": "a", "action": "x"}]}).status == 201
    path = f"/agent/{ops.agent_id}/workflow"

    with ThreadPoolExecutor(max_workers=6) as pool:
        triggers = list(
            pool.map(
                lambda _: ops.api.admin(
                    "POST", path, body={"workflow_id": name}, headers={"Idempotency-Key": f"burst-{name}"}
                ),
                range(6),
            )
        )
    started = {reply.body["session_id"] for reply in triggers if reply.status == 202}
    assert len(started) == 1, [reply.body for reply in triggers]
    assert all(reply.status == 202 or reply.error_code == "request_in_progress" for reply in triggers)
    (session_id,) = started

    a_id = ops.lease(session_id, "a")
    result = {"status": "succeeded", "output": {"n": 1}, "attempt": 1}
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: ops.result(a_id, result), range(6)))
    assert [answer.status for answer in answers] == [200] * 6
    view = ops.ended(session_id)
    assert (view["status"], task(view, "a")["attempts"], len(task(view, "a")["history"])) == ("completed", 1, 1)
    listed = ops.api.request("GET", f"/agent/{ops.agent_id}/sessions", key=ops.agent_key)
    assert [item["session_id"] for item in listed.body["items"]] == [session_id]
