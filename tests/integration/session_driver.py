"""Drive sessions through the handlers, as an operator and an agent would: trigger, read, report results, cancel.

The session runner executes for real on moto, on its own threads, so the driver waits for what the runner records by
polling the session API (never by sleeping a fixed time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Invoke

# How long the runner may take to reach a state. Generous: the machine may be busy; passing tests never wait it out.
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.05


@dataclass
class SessionDriver:
    call: Invoke
    api_event: EventFactory
    agent_id: str = "agent-1"
    # The time the agent stamps its state reports with: Ops-Core's own, when a test moves that on.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def register(self, agent_id: str | None = None, **settings: Any) -> None:
        body = {"name": "triage bot", **settings}  # no capabilities declared: the agent takes any action
        event = self.api_event(
            "registration/put.json", agent_id=agent_id or self.agent_id, body=body, caller=ADMIN_CONTEXT
        )
        status, _ = self.call("RegistrationFunction", event)
        assert status in {200, 201}

    def create_workflow(self, template: dict[str, Any]) -> tuple[int, Any]:
        return self.call("WorkflowsFunction", self.api_event("workflows/create.json", body=template))

    def trigger(
        self,
        body: dict[str, Any],
        key: str | None = None,
        agent_id: str | None = None,
        caller: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        event = self.api_event(
            "session_control/trigger.json",
            agent_id=agent_id or self.agent_id,
            body=body,
            caller=caller or ADMIN_CONTEXT,
        )
        del event["headers"]["Idempotency-Key"]
        if key is not None:
            event["headers"]["Idempotency-Key"] = key
        return self.call("SessionControlFunction", event)

    def start(self, template: dict[str, Any], **body: Any) -> str:
        """Store the template, trigger it, and return the new session's id."""
        status, _ = self.create_workflow(template)
        assert status in {200, 201}
        status, started = self.trigger({"workflow_id": template["name"], **body})
        assert status == 202, started
        return str(started["session_id"])

    def session(self, session_id: str, caller: dict[str, str] | None = None) -> tuple[int, Any]:
        event = self.api_event(
            "agent_read/get_session.json",
            path={"agentId": self.agent_id, "sessionId": session_id},
            caller=caller or ADMIN_CONTEXT,
        )
        return self.call("AgentReadFunction", event)

    def sessions(self, **query: str) -> tuple[int, Any]:
        event = self.api_event("agent_read/list_sessions.json", agent_id=self.agent_id, query=query or None)
        return self.call("AgentReadFunction", event)

    def cancel(self, session_id: str) -> tuple[int, Any]:
        event = self.api_event("session_control/cancel.json", path={"agentId": self.agent_id, "sessionId": session_id})
        return self.call("SessionControlFunction", event)

    def report(
        self, task_id: str, body: dict[str, Any], caller: dict[str, str] | None = None, agent_id: str | None = None
    ) -> tuple[int, Any]:
        event = self.api_event(
            "task_api/result.json",
            path={"agentId": agent_id or self.agent_id, "taskId": task_id},
            body=body,
            caller=caller or agent_context(agent_id or self.agent_id),
        )
        return self.call("TaskApiFunction", event)

    def next_task(self, agent_id: str | None = None, caller: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST .../tasks/next as the agent: (200, the leased task) or (204, None)."""
        agent_id = agent_id or self.agent_id
        event = self.api_event("task_api/next.json", agent_id=agent_id, caller=caller or agent_context(agent_id))
        return self.call("TaskApiFunction", event)

    def queue(self, agent_id: str | None = None, **query: str) -> tuple[int, Any]:
        event = self.api_event(
            "agent_read/list_tasks.json", agent_id=agent_id or self.agent_id, query=query or {}, caller=ADMIN_CONTEXT
        )
        return self.call("AgentReadFunction", event)

    def agent(self, agent_id: str | None = None) -> tuple[int, Any]:
        return self.call(
            "AgentReadFunction",
            self.api_event("agent_read/get_agent.json", agent_id=agent_id or self.agent_id, caller=ADMIN_CONTEXT),
        )

    def report_state(
        self, state: str, agent_id: str | None = None, caller: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """POST .../state, stamped now (each report must be later than the last)."""
        agent_id = agent_id or self.agent_id
        body = {"state": state, "timestamp": self.now().isoformat()}
        event = self.api_event(
            "state_update/post.json", agent_id=agent_id, body=body, caller=caller or agent_context(agent_id)
        )
        return self.call("StateUpdateFunction", event)

    def heartbeat(self, task_id: str) -> tuple[int, Any]:
        event = self.api_event(
            "task_api/heartbeat.json",
            path={"agentId": self.agent_id, "taskId": task_id},
            caller=agent_context(self.agent_id),
        )
        return self.call("TaskApiFunction", event)

    def succeed(self, task_id: str, output: dict[str, Any] | None = None, attempt: int | None = None) -> None:
        body: dict[str, Any] = {"status": "succeeded", "output": output or {}}
        status, answer = self.report(task_id, body if attempt is None else {**body, "attempt": attempt})
        assert status == 200, answer

    def fail(
        self,
        task_id: str,
        error_type: str = "ToolError",
        message: str = "the tool failed",
        attempt: int | None = None,
        fault: str | None = None,
    ) -> None:
        """Report a failed result: the task's own fault (the default), or `fault="agent"`."""
        error = {"type": error_type, "message": message} | ({"fault": fault} if fault else {})
        body: dict[str, Any] = {"status": "failed", "error": error}
        status, answer = self.report(task_id, body if attempt is None else {**body, "attempt": attempt})
        assert status == 200, answer

    def wait_for(self, session_id: str, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            status, view = self.session(session_id)
            assert status == 200, view
            seen.update(view)
            return done(view)

        eventually(reached, f"the session reaching {what}", lambda: seen)
        return seen

    def wait_queued(self, session_id: str, template_id: str, attempts: int = 1) -> str:
        """Wait until the task's given attempt is in its agent's queue; return its task_id."""
        view = self.wait_for(
            session_id,
            lambda view: any(
                task["id"] == template_id and task["status"] == "queued" and task["attempts"] == attempts
                for task in view["tasks"]
            ),
            f"{template_id} queued (attempt {attempts})",
        )
        return str(next(task["task_id"] for task in view["tasks"] if task["id"] == template_id))

    def wait_leased(self, session_id: str, template_id: str, attempts: int = 1) -> str:
        """Wait until the task's given attempt is queued, then lease it as the agent does; return its task_id."""
        task_id = self.wait_queued(session_id, template_id, attempts)
        status, leased = self.next_task()
        assert status == 200, leased
        assert (leased["task_id"], leased["attempt"]) == (task_id, attempts), leased
        return task_id

    def wait_ended(self, session_id: str) -> dict[str, Any]:
        return self.wait_for(session_id, lambda view: view["status"] in {"completed", "error", "cancelled"}, "its end")


def eventually(check: Callable[[], bool], what: str, last_seen: Callable[[], Any] = lambda: None) -> None:
    """Poll `check` until it holds; fail after DEADLINE_SECONDS, naming what never happened."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {last_seen()}")
        time.sleep(POLL_SECONDS)


def task(view: dict[str, Any], template_id: str) -> dict[str, Any]:
    return dict(next(task for task in view["tasks"] if task["id"] == template_id))
