"""Step Functions may run any Lambda task of the runner twice (a retry after a timeout that had already written).

These tests call the runner's library API directly, as the session_events and dispatch functions do, on a session
stored the way a trigger stores it, and repeat calls the way a retry would.
"""

from __future__ import annotations

from typing import Any

import pytest

from opscore import wiring
from opscore.agents.models import RegistrationRequest
from opscore.aws.stepfunctions import RunnerControl
from opscore.dispatch.errors import TaskNotOpen
from opscore.dispatch.models import TaskResult
from opscore.dispatch.results import TaskResults
from opscore.sessions.plan import build_plan, first_step
from opscore.sessions.records import TaskRecord
from opscore.sessions.runner import Failure, RunnerState
from opscore.sessions.store import NewSession
from opscore.workflows.templates import WorkflowTemplate

SESSION_ID = "0644e2a7c1d3f5b0e3c1a9f4d2b7e8c6"
TEMPLATE = WorkflowTemplate.model_validate(
    {
        "name": "triage",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 1, "backoff_seconds": 5}},
            {"id": "summarise", "action": "text.summarise", "delay_seconds": 30},
        ],
    }
)


@pytest.fixture
def state(aws: Any) -> RunnerState:
    wiring.registry().register("agent-1", RegistrationRequest(name="triage bot"))
    plan = build_plan(TEMPLATE, 1, {}, None)
    wiring.session_store().create_session(
        NewSession(
            session_id=SESSION_ID,
            agent_id="agent-1",
            workflow_id="triage",
            version=1,
            priority=None,
            input_json="{}",
            tasks_json='[{"id": "fetch", "action": "web.fetch"}, {"id": "summarise", "action": "text.summarise"}]',
            created_at="2026-11-24T05:00:00.000000Z",
            execution_arn="arn:aws:states:us-east-1:123456789012:execution:runner:" + SESSION_ID,
            triggered_by="0123456789abcdef",
        )
    )
    return RunnerState(session_id=SESSION_ID, agent_id="agent-1", plan=plan)


def fetch_item() -> TaskRecord:
    item = wiring.session_store().get_task(SESSION_ID, 0)
    assert item is not None
    return item


def test_a_repeated_start_and_dispatch_count_one_attempt_and_keep_the_newest_token(state: RunnerState) -> None:
    runner = wiring.session_runner()
    step = runner.started(state)
    assert runner.started(state) == step == first_step(state.plan)
    dispatched = state.model_copy(update={"step": step})

    assert runner.dispatch(dispatched, "token-1") == "queued"
    assert runner.dispatch(dispatched, "token-2") == "repeated"
    item = fetch_item()
    assert (item.attempts, item.task_token, item.status) == (1, "token-2", "queued")
    queued = wiring.dispatcher().queue("agent-1", "queued", 10, None).items
    assert [task.task_id for task in queued] == [f"{SESSION_ID}-000"], "queued once"


def test_a_repeated_record_writes_the_same_outcome_and_returns_the_same_step(state: RunnerState) -> None:
    runner = wiring.session_runner()
    dispatched = state.model_copy(update={"step": runner.started(state)})
    runner.dispatch(dispatched, "token-1")
    failed = dispatched.model_copy(update={"failure": Failure.model_validate({"Error": "States.Timeout"})})

    retry = runner.failed(failed)
    assert runner.failed(failed) == retry
    assert (retry.kind, retry.task_index, retry.attempt, retry.wait_seconds) == ("dispatch", 0, 2, 5)
    item = fetch_item()
    assert item.status == "retrying"
    assert [entry.attempt for entry in item.history] == [1], "one history entry for the one attempt"

    second = failed.model_copy(update={"step": retry, "failure": None})
    runner.dispatch(second, "token-2")
    following = runner.succeeded(second)
    assert runner.succeeded(second) == following
    assert (following.kind, following.task_index, following.wait_seconds) == ("dispatch", 1, 30)
    item = fetch_item()
    assert (item.status, item.attempts, [entry.attempt for entry in item.history]) == ("succeeded", 2, [1, 2])
    summarise = wiring.session_store().get_task(SESSION_ID, 1)
    assert summarise is not None
    assert summarise is not None
    assert summarise.status == "scheduled", "a delayed next task shows as scheduled"


def test_after_a_cancel_the_runner_records_nothing_more(state: RunnerState) -> None:
    runner = wiring.session_runner()
    dispatched = state.model_copy(update={"step": runner.started(state)})
    runner.dispatch(dispatched, "token-1")
    assert wiring.session_store().cancel(SESSION_ID, "2026-11-24T05:01:00.000000Z", "0123456789abcdef")

    assert runner.succeeded(dispatched).kind == "cancelled"
    assert fetch_item().status == "queued", "the outcome was not written"
    again = dispatched.model_copy(update={"step": dispatched.step.model_copy(update={"sequence": 2})})
    assert runner.dispatch(again, "token-2") == "session_ended"


class ClosedTokens(RunnerControl):
    """Step Functions answering every task token as closed (TaskTimedOut), as it does for a token already used."""

    def __init__(self) -> None:
        super().__init__(wiring.stepfunctions, None)

    def succeed(self, token: str, output: dict[str, Any]) -> bool:
        return False


def test_a_closed_token_while_the_attempt_still_shows_leased_keeps_the_result(state: RunnerState) -> None:
    # Two identical reports at once: the second may close the token before the first tells the runner.
    runner = wiring.session_runner()
    dispatched = state.model_copy(update={"step": runner.started(state)})
    runner.dispatch(dispatched, "token-1")
    assert wiring.dispatcher().next_task("agent-1") is not None
    results = TaskResults(wiring.session_store(), ClosedTokens(), wiring.agent_health(), wiring.utc_now)

    accepted = results.report("agent-1", f"{SESSION_ID}-000", TaskResult(status="succeeded", output={"n": 1}))
    assert accepted.attempt == 1
    assert fetch_item().result_json == '{"output":{"n":1},"status":"succeeded"}', "kept for the runner to record"
    assert runner.succeeded(dispatched).task_index == 1
    assert fetch_item().output == {"n": 1}


def test_a_closed_token_after_the_attempt_timed_out_refuses_and_forgets_the_result(state: RunnerState) -> None:
    runner = wiring.session_runner()
    dispatched = state.model_copy(update={"step": runner.started(state)})
    runner.dispatch(dispatched, "token-1")
    assert wiring.dispatcher().next_task("agent-1") is not None
    results = TaskResults(wiring.session_store(), ClosedTokens(), wiring.agent_health(), wiring.utc_now)
    # The runner records the timeout between the result being kept and the runner being told.
    timed_out = dispatched.model_copy(update={"failure": Failure.model_validate({"Error": "States.Timeout"})})
    original = results._deliver

    def deliver_after_timeout(*args: Any) -> bool:
        runner.failed(timed_out)
        return original(*args)

    results._deliver = deliver_after_timeout  # type: ignore[method-assign]
    with pytest.raises(TaskNotOpen):
        results.report("agent-1", f"{SESSION_ID}-000", TaskResult(status="succeeded"))
    item = fetch_item()
    assert (item.status, item.result_json) == ("retrying", None)
