"""What each operation asks of AWS: requests, DynamoDB request units, Lambda invocations, Step Functions transitions."""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Any

from bench.harness import Harness

ONE_TASK = {"name": "bench-one", "tasks": [{"id": "a", "action": "x"}]}
ONE_TASK_RETRIED = {
    "name": "bench-retry",
    "tasks": [{"id": "a", "action": "x", "retry": {"max_retries": 1, "backoff_seconds": 0}}],
}
THREE_TASKS = {
    "name": "bench-three",
    "tasks": [{"id": "a", "action": "x"}, {"id": "b", "action": "y"}, {"id": "c", "action": "z"}],
}
STAMP = "2026-11-24T05:{minute:02d}:{second:02d}Z"


def measure(harness: Harness) -> dict[str, Any]:
    agent = "bench-agent"
    harness.register(agent)
    for template in (ONE_TASK, ONE_TASK_RETRIED, THREE_TASKS):
        harness.create_workflow(template)
    results: dict[str, Any] = {}

    results["registration (re-sync)"] = harness.measured(lambda: harness.register(agent))

    status, created = harness.call(
        "KeysFunction", harness.event("keys/create_agent_key.json", body={"agent_id": agent})
    )
    assert status == 201, created
    authorize = json.loads((harness.template.root / "events/authorizer/request.json").read_text())
    for headers in ("headers", "multiValueHeaders"):
        value = created["api_key"] if headers == "headers" else [created["api_key"]]
        authorize[headers]["X-API-Key"] = value
    results["authorizer (every authenticated request)"] = harness.measured(
        lambda: harness.runtime.invoke("AuthorizerFunction", authorize)
    )

    def state_update(second: int) -> None:
        body = {"state": "idle" if second % 2 else "busy", "timestamp": STAMP.format(minute=1, second=second)}
        status, reply = harness.call(
            "StateUpdateFunction", harness.event("state_update/post.json", path={"agentId": agent}, body=body)
        )
        assert status == 200, reply

    state_update(0)
    results["state update"] = harness.measured(lambda: state_update(1))

    started: list[str] = []
    key = uuid.uuid4().hex
    results["trigger"] = harness.measured(lambda: started.append(harness.trigger(agent, "bench-one")))
    results["trigger (Idempotency-Key)"] = harness.measured(
        lambda: started.append(harness.trigger(agent, "bench-one", key=key))
    )
    results["trigger (repeated key)"] = harness.measured(lambda: harness.trigger(agent, "bench-one", key=key))
    for session_id in started:  # let their runners settle, so nothing of theirs is metered later
        harness.wait(partial(harness.dispatched, session_id, 0), "a dispatched task")

    session = harness.trigger(agent, "bench-one")
    harness.wait(lambda: harness.dispatched(session, 0), "a dispatched task")
    results["result"] = harness.measured(lambda: harness.report(agent, f"{session}-000"))
    harness.wait(lambda: harness.status(session) == "completed", "the session's end")

    holder: dict[str, str] = {}

    def three_task_session() -> None:
        holder["id"] = session_id = harness.trigger(agent, "bench-three")
        for index in range(3):
            harness.wait(partial(harness.dispatched, session_id, index), f"task {index}")
            harness.report(agent, f"{session_id}-{index:03d}")

    results["3-task session, end to end"] = harness.measured(
        three_task_session, settle=lambda: harness.status(holder["id"]) == "completed"
    )
    three = harness.transitions(holder["id"])

    one = harness.trigger(agent, "bench-one")
    harness.wait(lambda: harness.dispatched(one, 0), "a dispatched task")
    harness.report(agent, f"{one}-000")
    single = harness.transitions(one)

    retried = harness.trigger(agent, "bench-retry")
    harness.wait(lambda: harness.dispatched(retried, 0), "a dispatched task")
    harness.report(agent, f"{retried}-000", status="failed", attempt=1)
    harness.wait(lambda: harness.dispatched(retried, 0, attempts=2), "the retry")
    harness.report(agent, f"{retried}-000", attempt=2)
    with_retry = harness.transitions(retried)

    per_task = (three - single) / 2
    results["step functions transitions"] = {
        "per successful task attempt": per_task,
        "per retried attempt": with_retry - single,
        "per session (start and end)": single - per_task,
        "1-task session": single,
        "3-task session": three,
    }
    return results
