"""What each operation asks of AWS: requests, DynamoDB request units (the indexes' apart), Lambda invocations, Step
Functions transitions. Results are reported for tasks the agent has leased, as an agent does.

An agent in steady use is heard from several times a minute, and its silence deadline is rounded up to the minute, so
most contacts leave the deadline (a Deadlines index key) where the one before put it. Every metered contact here
follows the agent's previous contact within the same minute (`Harness.one_minute`): the rows show that common case.
The first contact of a new minute moves the deadline, 2 index WRU more."""

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
# The second task reads the first's output: its dispatch reads the session's tasks to resolve the reference.
WITH_REFERENCE = {
    "name": "bench-reference",
    "tasks": [
        {"id": "a", "action": "x"},
        {"id": "b", "action": "y", "input": {"from_a": {"$from": "tasks.a.output", "default": None}}},
    ],
}
STAMP = "2026-11-24T05:{minute:02d}:{second:02d}Z"


def measure(harness: Harness) -> dict[str, Any]:
    agent = "bench-agent"
    results: dict[str, Any] = {}
    with harness.one_minute():
        _contacts(harness, agent, results)

    started: list[str] = []
    key = uuid.uuid4().hex
    results["trigger"] = harness.measured(lambda: started.append(harness.trigger(agent, "bench-one")))
    results["trigger (Idempotency-Key)"] = harness.measured(
        lambda: started.append(harness.trigger(agent, "bench-one", key=key))
    )
    results["trigger (repeated key)"] = harness.measured(lambda: harness.trigger(agent, "bench-one", key=key))
    # Work them off, so nothing of theirs is queued or metered later. Their runners queue them in either order.
    for session_id in started:
        harness.wait(partial(harness.queued, session_id, 0), "a queued task")
    for _ in started:
        task = harness.lease(agent)
        assert task["session_id"] in started, task
        harness.report(agent, task["task_id"])
    for session_id in started:
        harness.wait(partial(_completed, harness, session_id), "the session's end")

    results.update(_one_attempt(harness, agent))
    results.update(_reference_dispatch(harness, agent))
    results.update(_sessions(harness, agent))
    results.update(_fleet(harness, agent))
    results["silence deadline"] = {
        "metered contacts": "each in the same minute as the agent's previous contact: the deadline stays",
        "first contact in a new minute adds": {"Deadlines": 2},
    }
    return results


def _contacts(harness: Harness, agent: str, results: dict[str, Any]) -> None:
    """Registration, the authorizer and state updates, each update right after the agent's previous contact."""
    harness.register(agent)
    results["store a template (new shape: its runner is created)"] = harness.measured(
        lambda: harness.create_workflow(ONE_TASK)
    )
    harness.create_workflow({"name": "bench-versions", "tasks": [{"id": "a", "action": "x", "input": {"n": 1}}]})
    same_shape = {"name": "bench-versions", "tasks": [{"id": "a", "action": "x", "input": {"n": 2}}]}
    results["store a template (new version of a stored shape)"] = harness.measured(
        lambda: harness.create_workflow(same_shape)
    )
    results["store a template (a version already stored)"] = harness.measured(lambda: harness.create_workflow(ONE_TASK))
    for template in (ONE_TASK_RETRIED, THREE_TASKS, WITH_REFERENCE):
        harness.create_workflow(template)
    results["registration (re-sync)"] = harness.measured(lambda: harness.register(agent))

    status, created = harness.call(
        "KeysFunction", harness.event("keys/create_agent_key.json", body={"agent_id": agent})
    )
    assert status == 201, created
    authorize = json.loads((harness.template.root / "events/authorizer/request.json").read_text())
    for headers in ("headers", "multiValueHeaders"):
        value = created["api_key"] if headers == "headers" else [created["api_key"]]
        authorize[headers]["X-API-Key"] = value
    # A key's first request of a UTC day records the day (last_used_on); every later one that day only reads the key.
    results["authorizer (a key's first request of a day)"] = harness.measured(
        lambda: harness.runtime.invoke("AuthorizerFunction", authorize)
    )
    results["authorizer (every authenticated request)"] = harness.measured(
        lambda: harness.runtime.invoke("AuthorizerFunction", authorize)
    )

    def state_update(second: int) -> None:
        body = {"state": "idle" if second % 2 else "busy", "timestamp": STAMP.format(minute=1, second=second)}
        status, reply = harness.call(
            "StateUpdateFunction", harness.event("state_update/post.json", path={"agentId": agent}, body=body)
        )
        assert status == 200, reply

    state_update(1)
    results["state update"] = harness.measured(lambda: state_update(2))  # busy
    # idle: a pushing channel would be served now, so the agent's delivery channel is read (one more GetItem)
    results["state update (idle)"] = harness.measured(lambda: state_update(3))


def _one_attempt(harness: Harness, agent: str) -> dict[str, Any]:
    """One attempt through its life: the runner queues it, the agent leases it, renews the lease, reports."""
    results: dict[str, Any] = {}
    holder: dict[str, str] = {}
    with harness.one_minute():
        harness.nothing_ready(agent)  # the agent's previous contact: its queue is empty
        results["dispatch (the runner queues an attempt)"] = harness.measured(
            lambda: holder.update(id=harness.trigger(agent, "bench-one")),
            settle=lambda: harness.queued(holder["id"], 0),
            only="DispatchFunction",
        )
        session = holder["id"]
        task = f"{session}-000"
        results["lease (tasks/next)"] = harness.measured(lambda: harness.lease(agent, task))
        results["heartbeat"] = harness.measured(lambda: harness.heartbeat(agent, task))
        # The agent holds its one slot (max_concurrency 1): the pull answers 204 without looking at the queue.
        results["lease (tasks/next, at max_concurrency)"] = harness.measured(lambda: harness.nothing_ready(agent))
        results["result"] = harness.measured(lambda: harness.report(agent, task))
        harness.wait(partial(_completed, harness, session), "the session's end")
        results["lease (tasks/next, nothing ready)"] = harness.measured(lambda: harness.nothing_ready(agent))
    return results


def _reference_dispatch(harness: Harness, agent: str) -> dict[str, Any]:
    """The dispatch of a task whose input has a reference, set off by the result of the task before it."""
    results: dict[str, Any] = {}
    session = harness.trigger(agent, "bench-reference")
    harness.wait(partial(harness.queued, session, 0), "task a queued")
    harness.lease(agent, f"{session}-000")
    results["dispatch (its input has a reference)"] = harness.measured(
        lambda: harness.report(agent, f"{session}-000"),
        settle=partial(harness.queued, session, 1),
        only="DispatchFunction",
    )
    harness.work(agent, session, 1)
    harness.wait(partial(_completed, harness, session), "the session's end")
    return results


def _sessions(harness: Harness, agent: str) -> dict[str, Any]:
    """Whole sessions, worked as a polling agent would, and the Step Functions transitions they take."""
    results: dict[str, Any] = {}
    holder: dict[str, str] = {}

    def session_of(workflow: str, tasks: int) -> None:
        holder["id"] = session_id = harness.trigger(agent, workflow)
        for index in range(tasks):
            harness.work(agent, session_id, index)

    with harness.one_minute():
        harness.nothing_ready(agent)  # the agent's previous contact: its queue is empty
        results["1-task session, end to end"] = harness.measured(
            partial(session_of, "bench-one", 1), settle=lambda: _completed(harness, holder["id"])
        )
        single = harness.transitions(holder["id"])
        results["3-task session, end to end"] = harness.measured(
            partial(session_of, "bench-three", 3), settle=lambda: _completed(harness, holder["id"])
        )
        three = harness.transitions(holder["id"])
    results["per task attempt (3-task less 1-task session, halved)"] = _per_task(
        results["3-task session, end to end"], results["1-task session, end to end"], 2
    )

    retried = harness.trigger(agent, "bench-retry")
    harness.work(agent, retried, 0, status="failed", attempt=1)
    harness.work(agent, retried, 0, attempts=2, attempt=2)
    with_retry = harness.transitions(retried)
    failing = harness.trigger(agent, "bench-one")
    harness.work(agent, failing, 0, status="failed", attempt=1)
    failed = harness.transitions(failing)

    per_task = (three - single) / 2
    results["step functions transitions"] = {
        "per successful task attempt": per_task,
        "per retried attempt": with_retry - single,
        "per session (start and end)": single - per_task,
        "per failed session's end": failed - single,
        "1-task session": single,
        "3-task session": three,
    }
    return results


def _fleet(harness: Harness, agent: str) -> dict[str, Any]:
    """The agent list (one page: this agent) and the agent's stats over the last hour, after its sessions above."""

    def read(name: str, path: dict[str, str] | None, query: dict[str, str]) -> None:
        event = harness.event(f"agent_read/{name}.json", path=path)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {key: [value] for key, value in query.items()}
        status, reply = harness.call("AgentReadFunction", event)
        assert status == 200, reply

    return {
        "agent list (one page)": harness.measured(partial(read, "list_agents", None, {"limit": "20"})),
        "agent stats (1h)": harness.measured(partial(read, "get_stats", {"agentId": agent}, {"window": "1h"})),
    }


def _completed(harness: Harness, session_id: str) -> bool:
    return harness.status(session_id) == "completed"


def _per_task(more: dict[str, Any], fewer: dict[str, Any], tasks: int) -> dict[str, Any]:
    """What each further task adds to a session: the difference of two sessions' rows, per task."""

    def difference(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        keys = sorted(set(a) | set(b))
        return {key: round((a.get(key, 0) - b.get(key, 0)) / tasks, 2) for key in keys if a.get(key) != b.get(key)}

    return {
        "requests": difference(more["requests"], fewer["requests"]),
        "dynamodb_rru": round((more["dynamodb_rru"] - fewer["dynamodb_rru"]) / tasks, 2),
        "dynamodb_wru": round((more["dynamodb_wru"] - fewer["dynamodb_wru"]) / tasks, 2),
        "dynamodb_index_wru": difference(more["dynamodb_index_wru"], fewer["dynamodb_index_wru"]),
        "lambda_invocations": difference(more["lambda_invocations"], fewer["lambda_invocations"]),
    }
