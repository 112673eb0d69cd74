"""The session runners themselves: one state machine per template shape, created when a version is stored (or on the
first trigger that finds none), and each session started on the machine of the version it runs."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from opscore import wiring
from opscore.sessions.runner import SessionRunner
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import EventFactory
from tests.integration.boundary import Answer, always, intercept
from tests.integration.conftest import Invoke
from tests.integration.session_driver import SessionDriver, task
from tests.integration.test_dispatch import run_task


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> SessionDriver:
    driver = SessionDriver(call, api_event)
    driver.register()
    return driver


def machines(runtime: LambdaRuntime) -> dict[str, dict[str, Any]]:
    """Every state machine, by name, with its definition."""
    client = boto3.client("stepfunctions")
    with runtime.exclusive():
        listed = client.list_state_machines()["stateMachines"]
        described = [client.describe_state_machine(stateMachineArn=m["stateMachineArn"]) for m in listed]
    return {machine["name"]: json.loads(machine["definition"]) for machine in described}


def execution_machine(ops: SessionDriver, runtime: LambdaRuntime, session_id: str) -> str:
    """The name of the machine the session's execution runs on."""
    client = boto3.client("stepfunctions")
    with runtime.exclusive():
        for listed in client.list_state_machines()["stateMachines"]:
            names = [e["name"] for e in client.list_executions(stateMachineArn=listed["stateMachineArn"])["executions"]]
            if session_id in names:
                return str(listed["name"])
    raise AssertionError(f"no execution of session {session_id}")


def template(name: str = "triage", **fetch: Any) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": [
            {"id": "fetch", "action": "web.fetch", **fetch},
            {"id": "summarise", "action": "text.summarise"},
        ],
    }


def test_storing_a_version_creates_its_runner_named_after_the_workflow_and_shaped_like_it(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    assert ops.create_workflow(template(retry={"max_retries": 2}))[0] == 201
    (name,) = machines(runtime)
    assert name.startswith("opscore-triage-")
    definition = machines(runtime)[name]
    assert definition["StartAt"] == "fetch"
    assert definition["States"]["fetch"]["Next"] == "summarise"
    assert definition["States"]["fetch"]["Retry"][0]["MaxAttempts"] == 2
    assert definition["States"]["summarise"]["End"] is True


def test_versions_of_one_shape_share_a_runner_and_each_session_runs_on_its_versions(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    ops.create_workflow(template(input={"url": "https://tickets.example.com/1"}))
    ops.create_workflow(template(input={"url": "https://tickets.example.com/2"}, priority=9))
    assert len(machines(runtime)) == 1, "versions that differ only in inputs and priorities share one machine"
    ops.create_workflow(template(timeout_seconds=60))
    assert len(machines(runtime)) == 2, "a new shape is a new machine"

    first = ops.trigger({"workflow_id": "triage", "version": 1})[1]["session_id"]
    third = ops.trigger({"workflow_id": "triage", "version": 3})[1]["session_id"]
    assert execution_machine(ops, runtime, first) != execution_machine(ops, runtime, third)
    ops.wait_queued(first, "fetch")
    assert task(ops.session(first)[1], "fetch")["input"] == {"url": "https://tickets.example.com/1"}
    for session_id in (first, third):
        ops.cancel(session_id)


def test_ad_hoc_tasks_of_one_shape_share_a_runner_created_by_the_first(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    assert machines(runtime) == {}
    one = run_task(ops, input={"url": "https://a.example.com"})
    two = run_task(ops, input={"url": "https://b.example.com"}, priority=9)
    assert len(machines(runtime)) == 1
    assert execution_machine(ops, runtime, one["session_id"]) == execution_machine(ops, runtime, two["session_id"])
    run_task(ops, timeout_seconds=30)
    assert len(machines(runtime)) == 2
    for answer in (one, two):
        ops.cancel(answer["session_id"])


def test_a_trigger_that_finds_no_runner_creates_it_and_starts_the_session(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    ops.create_workflow(template())
    client = boto3.client("stepfunctions")
    with runtime.exclusive():
        (listed,) = client.list_state_machines()["stateMachines"]
        client.delete_state_machine(stateMachineArn=listed["stateMachineArn"])
    session_id = ops.start(template())
    ops.succeed(ops.wait_leased(session_id, "fetch"))
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    assert ops.wait_ended(session_id)["status"] == "completed"


def test_a_version_whose_runner_cannot_be_created_is_not_stored(ops: SessionDriver) -> None:
    quota = Answer.error("StateMachineLimitExceeded", "the maximum number of state machines has been reached")
    interception = intercept(wiring.stepfunctions(), "CreateStateMachine", always(quota))
    status, body = ops.create_workflow(template())
    assert (status, body["error"]["code"]) == (409, "runner_limit_reached")
    interception.remove()
    event = ops.api_event("workflows/get.json", path={"workflowId": "triage"})
    assert ops.call("WorkflowsFunction", event)[0] == 404, "nothing stored"

    throttled = intercept(wiring.stepfunctions(), "CreateStateMachine", always(Answer.error("ThrottlingException")))
    assert ops.create_workflow(template())[0] == 429
    throttled.remove()
    assert ops.create_workflow(template())[0] == 201


def test_a_template_too_large_for_one_state_machine_is_refused_naming_its_tasks(ops: SessionDriver) -> None:
    # 31 tasks falling back into a chain of 69 (each task within its attempt bound): 2,170 task runs
    chain = [{"id": f"t{i}", "action": "x", "fallback": "f0"} for i in range(31)] + [
        {"id": f"f{i}", "action": "x", "fallback_only": True, "fallback": f"f{i + 1}" if i < 68 else None}
        for i in range(69)
    ]
    status, body = ops.create_workflow({"name": "chain", "tasks": chain})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    (problem,) = body["error"]["details"]
    assert (problem["field"], problem["type"]) == ("tasks", "too_large")


def test_when_record_failure_itself_fails_the_runner_ends_the_session_without_lambda(
    ops: SessionDriver, runtime: LambdaRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_self: SessionRunner, _request: Any) -> set[str]:
        raise RuntimeError("the table is gone")

    monkeypatch.setattr(SessionRunner, "runner_failed", broken)
    session_id = ops.start(template(retry={"max_retries": 0}))
    ops.fail(ops.wait_leased(session_id, "fetch"))

    view = ops.wait_ended(session_id)
    assert view["status"] == "error"
    assert view["error"]["type"] == "OpsCore.RunnerFailed", "written by Record Runner Failure, a direct DynamoDB update"
    assert view["ended_at"] is not None
    client = boto3.client("stepfunctions")
    with runtime.exclusive():
        (listed,) = client.list_state_machines()["stateMachines"]
        (execution,) = client.list_executions(stateMachineArn=listed["stateMachineArn"])["executions"]
        history = client.get_execution_history(executionArn=execution["executionArn"])["events"]
    entered = [event["stateEnteredEventDetails"]["name"] for event in history if "stateEnteredEventDetails" in event]
    assert entered == ["fetch", "Record Failure", "Record Runner Failure", "Runner Failed"]


def test_an_inline_template_too_large_for_one_state_machine_is_named_where_the_body_has_it(ops: SessionDriver) -> None:
    # 31 tasks falling back into a chain of 69 (each task within its attempt bound): 2,170 task runs
    chain = [{"id": f"t{i}", "action": "x", "fallback": "f0"} for i in range(31)] + [
        {"id": f"f{i}", "action": "x", "fallback_only": True, "fallback": f"f{i + 1}" if i < 68 else None}
        for i in range(69)
    ]
    status, body = ops.trigger({"template": {"name": "chain", "tasks": chain}})
    assert (status, [problem["field"] for problem in body["error"]["details"]]) == (400, ["template.tasks"])
    assert ops.sessions()[1]["items"] == [], "nothing started"
