"""A task item's attempt history, at its bound, run by the real session runner (moto executes the ASL, its Lambda
tasks run the real handlers): the largest history a template may cause fits DynamoDB's item limit beside the largest
inputs and outputs, and a template that could cause a larger one is refused when it is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opscore import wiring
from opscore.workflows.attempt_history import ATTEMPT_MESSAGE_CHARS, ITEM_LIMIT_BYTES, MAX_STORED_ATTEMPTS
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Invoke
from tests.integration.session_driver import SessionDriver, eventually, task

WIDE = "\U0001f600"  # 4 bytes in UTF-8
NEAR_64_KIB = {"text": WIDE * (62 * 1024 // 4)}  # within a body's 64 KiB as sent
LONGEST_MESSAGE = WIDE * 2048


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> SessionDriver:
    driver = SessionDriver(call, api_event)
    driver.register()
    return driver


def shared_fallback(namers: int, ask_input: dict[str, Any] | None = None) -> dict[str, Any]:
    """`namers` tasks that fall back to `ask`, whose own fallback `note` lets the session go on after it fails."""
    return {
        "name": "shared",
        "tasks": [
            *({"id": f"t{number}", "action": "work", "fallback": "ask"} for number in range(namers)),
            {"id": "ask", "action": "human.ask", "fallback_only": True, "input": ask_input or {}, "fallback": "note"},
            {"id": "note", "action": "note", "fallback_only": True},
        ],
    }


def lease(ops: SessionDriver, task_id: str, attempt: int) -> str:
    """Lease the agent's next task as the agent polls for it (the session's view, with its large values, is not read
    at each step); it must be `task_id`'s `attempt`."""
    leased: dict[str, Any] = {}

    def next_one() -> bool:
        status, answer = ops.next_task()
        if status == 200:
            leased.update(answer)
        return status == 200

    eventually(next_one, f"{task_id} attempt {attempt} queued")
    assert (leased["task_id"], leased["attempt"]) == (task_id, attempt)
    return task_id


def send(ops: SessionDriver, function: str, event: str, body: dict[str, Any], **where: Any) -> tuple[int, Any]:
    """A request whose body is sent as UTF-8, as clients send it (not with `\\u` escapes, three times as long)."""
    request = ops.api_event(event, raw_body=json.dumps(body, ensure_ascii=False), **{"caller": ADMIN_CONTEXT, **where})
    request["headers"].pop("Idempotency-Key", None)
    return ops.call(function, request)


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: each attribute's name and value (strings in UTF-8; numbers at most 21
    bytes; a map or list 3 bytes and 1 per element besides its contents)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def value_size(value: dict[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return 21
    if kind == "SS":
        return sum(len(member.encode()) for member in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(member) for name, member in content.items())
    if kind == "L":
        return 3 + sum(1 + value_size(member) for member in content)
    return 1


def test_the_largest_attempt_history_a_template_may_cause_fits_its_item(
    ops: SessionDriver, aws: Any, runtime: LambdaRuntime
) -> None:
    # given the worst case a template may cause: a fallback shared by as many tasks as the bound allows, its input and
    # the session's near their limits in 4-byte characters
    namers = MAX_STORED_ATTEMPTS
    assert send(ops, "WorkflowsFunction", "workflows/create.json", shared_fallback(namers, NEAR_64_KIB))[0] == 201
    trigger = {"workflow_id": "shared", "input": NEAR_64_KIB}
    status, started = send(
        ops, "SessionControlFunction", "session_control/trigger.json", trigger, agent_id=ops.agent_id
    )
    assert status == 202, started
    session_id = started["session_id"]

    # when every task fails, and the fallback fails in its place each time with the longest message (the last time
    # it succeeds with an output near its limit, so its item holds the result as sent too)
    ask_id, note_id = f"{session_id}-{namers:03d}", f"{session_id}-{namers + 1:03d}"
    for number in range(namers):
        ops.fail(lease(ops, f"{session_id}-{number:03d}", 1), message=LONGEST_MESSAGE)
        lease(ops, ask_id, number + 1)
        if number + 1 < namers:
            ops.fail(ask_id, message=LONGEST_MESSAGE, attempt=number + 1)  # the same result for each attempt
            ops.succeed(lease(ops, note_id, number + 1), attempt=number + 1)
        else:
            result = {"status": "succeeded", "output": NEAR_64_KIB, "attempt": namers}
            path = {"agentId": ops.agent_id, "taskId": ask_id}
            caller = agent_context(ops.agent_id)
            status, answer = send(ops, "TaskApiFunction", "task_api/result.json", result, path=path, caller=caller)
            assert status == 200, answer

    # then the session completes, the fallback's history holds every attempt, each record keeping the start of its
    # message and the task's last error whole
    view = ops.wait_ended(session_id)
    assert view["status"] == "completed", view.get("error")
    ask = task(view, "ask")
    assert (ask["status"], ask["attempts"], len(ask["history"])) == ("succeeded", namers, namers)
    assert ask["output"] == NEAR_64_KIB
    failed = ask["history"][0]["error"]["message"]
    assert (len(failed), failed[-1]) == (ATTEMPT_MESSAGE_CHARS, "…")
    assert task(view, "note")["error"] is None
    # and every item stays within the limit the bound was computed for
    with runtime.exclusive():
        query = aws.get_paginator("query").paginate(
            TableName=wiring.settings().table_name,
            KeyConditionExpression="PK = :session",
            ExpressionAttributeValues={":session": {"S": f"SESSION#{session_id}"}},
        )
        sizes = {item["SK"]["S"]: item_size(item) for page in query for item in page["Items"]}
    assert max(sizes.values()) <= ITEM_LIMIT_BYTES, sizes
    assert sizes["TASK#031"] > 300_000, "the fallback's item is near the limit: the case is the worst one"


def test_the_task_error_keeps_the_whole_message_the_record_its_start(ops: SessionDriver) -> None:
    message = "x" * 2048
    session_id = ops.start({"name": "one", "tasks": [{"id": "fetch", "action": "web.fetch"}]})
    ops.fail(ops.wait_leased(session_id, "fetch"), message=message)
    fetch = task(ops.wait_ended(session_id), "fetch")
    assert fetch["error"]["message"] == message
    assert fetch["history"][0]["error"]["message"] == "x" * (ATTEMPT_MESSAGE_CHARS - 1) + "…"


def test_a_template_past_the_bound_is_refused_naming_the_fallback_and_stores_nothing(ops: SessionDriver) -> None:
    status, body = ops.create_workflow(shared_fallback(MAX_STORED_ATTEMPTS + 1))
    assert (status, body["error"]["code"]) == (400, "validation_error")
    # ask, with one task too many naming it; note, ask's fallback, running once for each of ask's runs
    fields = [f"tasks.{MAX_STORED_ATTEMPTS}.fallback", f"tasks.{MAX_STORED_ATTEMPTS + 1}.fallback"]
    assert [problem["field"] for problem in body["error"]["details"]] == fields
    problem = body["error"]["details"][0]
    assert problem["type"] == "too_many_attempts"
    assert f"{MAX_STORED_ATTEMPTS} attempt records" in problem["message"]
    event = ops.api_event("workflows/get.json", path={"workflowId": "shared"})
    assert ops.call("WorkflowsFunction", event)[0] == 404, "nothing stored"

    status, body = ops.trigger({"template": shared_fallback(MAX_STORED_ATTEMPTS + 1)})
    assert status == 400
    assert [problem["field"] for problem in body["error"]["details"]] == [f"template.{field}" for field in fields]
    assert ops.sessions()[1]["items"] == [], "nothing started"
