"""Step Functions may run any Lambda task of the runner twice (a retry after a timeout that had already written).

Here the test stands in for Step Functions: the trigger's StartExecution is answered at the client boundary (nothing
executes), and the test makes the runner's calls itself, sending the session_events and dispatch functions the runner
state the trigger started with, and repeating calls the way a retry would. Task tokens are the test's own; what
Ops-Core tells Step Functions about them (SendTaskSuccess, SendTaskFailure) is answered and recorded at the boundary.
Everything else is read through the session's view and the agent's task API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opscore import wiring
from opscore.sessions.plan import SessionPlan, Step, first_step
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import EventFactory
from tests.integration.boundary import Answer, intercept
from tests.integration.conftest import Invoke
from tests.integration.session_driver import SessionDriver, task

TEMPLATE = {
    "name": "triage",
    "tasks": [
        {"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 1, "backoff_seconds": 5}},
        {"id": "summarise", "action": "text.summarise", "delay_seconds": 30},
    ],
}
SESSION_CANCELLED = "OpsCore.SessionCancelled"


@dataclass
class StandInStepFunctions:
    """Step Functions as the runner's functions and the task API meet it, played by the test.

    Started executions are kept, not run. A task token is open until it is answered once or `closed`; every answer
    Ops-Core sends is recorded as (token, "success" | "failure", error name or None), open or not.
    """

    runtime: LambdaRuntime
    started: list[dict[str, Any]] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    answers: list[tuple[str, str, str | None]] = field(default_factory=list)
    # Runs when an answer for a token arrives, before it is answered: what the runner does meanwhile.
    meanwhile: Callable[[str], None] | None = None

    def install(self) -> None:
        client = wiring.stepfunctions()
        intercept(client, "StartExecution", self._start)
        intercept(client, "StopExecution", lambda _request: Answer.ok())
        intercept(client, "SendTaskSuccess", lambda request: self._answer(request, "success"))
        intercept(client, "SendTaskFailure", lambda request: self._answer(request, "failure"))

    def _start(self, request: dict[str, Any]) -> Answer:
        self.started.append(json.loads(request["input"]))
        return Answer.ok({"executionArn": f"{request['stateMachineArn']}:{request['name']}", "startDate": 0})

    def _answer(self, request: dict[str, Any], outcome: str) -> Answer:
        token = request["taskToken"]
        self.answers.append((token, outcome, request.get("error")))
        if self.meanwhile is not None:
            self.meanwhile(token)
        if token in self.closed:
            return Answer.error("TaskTimedOut", "the task token is closed")
        self.closed.add(token)
        return Answer.ok()

    # The runner's calls, as the state machine makes them.
    def event(self, name: str, state: dict[str, Any]) -> dict[str, Any]:
        step: dict[str, Any] = self.runtime.invoke("SessionEventsFunction", {"event": name, "state": state})
        return step

    def dispatch(self, state: dict[str, Any], token: str) -> str:
        return str(self.runtime.invoke("DispatchFunction", {"state": state, "token": token})["dispatch"])


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> SessionDriver:
    driver = SessionDriver(call, api_event)
    driver.register()
    return driver


@pytest.fixture
def runner(aws: Any, runtime: LambdaRuntime) -> StandInStepFunctions:
    stand_in = StandInStepFunctions(runtime)
    stand_in.install()
    return stand_in


@pytest.fixture
def state(ops: SessionDriver, runner: StandInStepFunctions) -> dict[str, Any]:
    """The runner state of a session triggered through the API: what its execution would have started with."""
    session_id = ops.start(TEMPLATE)
    (started,) = runner.started
    assert started["session_id"] == session_id
    return started


def fetch_of(ops: SessionDriver, state: dict[str, Any]) -> dict[str, Any]:
    status, view = ops.session(state["session_id"])
    assert status == 200, view
    return task(view, "fetch")


def later(stamp: str, seconds: int) -> str:
    moment = datetime.fromisoformat(stamp) + timedelta(seconds=seconds)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_repeated_start_and_dispatch_count_one_attempt_and_keep_the_newest_token(
    ops: SessionDriver, runner: StandInStepFunctions, state: dict[str, Any]
) -> None:
    step = runner.event("started", state)
    assert runner.event("started", state) == step
    assert Step.model_validate(step) == first_step(SessionPlan.model_validate(state["plan"]))
    dispatched = {**state, "step": step}

    assert runner.dispatch(dispatched, "token-1") == "queued"
    assert runner.dispatch(dispatched, "token-2") == "repeated"
    fetch = fetch_of(ops, state)
    assert (fetch["status"], fetch["attempts"]) == ("queued", 1)
    queued = ops.queue(status="queued")[1]["items"]
    assert [item["task_id"] for item in queued] == [fetch["task_id"]], "queued once"

    # the agent's result goes to the newest token only
    task_id = ops.wait_leased(state["session_id"], "fetch")
    ops.succeed(task_id)
    assert runner.answers == [("token-2", "success", None)]


def test_a_repeated_record_writes_the_same_outcome_and_returns_the_same_step(
    ops: SessionDriver, runner: StandInStepFunctions, state: dict[str, Any]
) -> None:
    dispatched = {**state, "step": runner.event("started", state)}
    runner.dispatch(dispatched, "token-1")
    failed = {**dispatched, "failure": {"Error": "States.Timeout"}}

    retry = runner.event("failed", failed)
    assert runner.event("failed", failed) == retry
    assert (retry["kind"], retry["task_index"], retry["attempt"], retry["wait_seconds"]) == ("dispatch", 0, 2, 5)
    fetch = fetch_of(ops, state)
    assert fetch["status"] == "retrying"
    (timed_out,) = fetch["history"]
    assert (timed_out["attempt"], timed_out["status"]) == (1, "timed_out"), "one history entry for the one attempt"
    assert fetch["scheduled_for"] == later(timed_out["ended_at"], 5), "retried after its backoff"

    second = {**failed, "step": retry, "failure": None}
    runner.dispatch(second, "token-2")
    following = runner.event("succeeded", second)
    assert runner.event("succeeded", second) == following
    assert (following["kind"], following["task_index"], following["wait_seconds"]) == ("dispatch", 1, 30)
    status, view = ops.session(state["session_id"])
    assert status == 200, view
    fetch, summarise = task(view, "fetch"), task(view, "summarise")
    assert (fetch["status"], fetch["attempts"]) == ("succeeded", 2)
    assert [(entry["attempt"], entry["status"]) for entry in fetch["history"]] == [(1, "timed_out"), (2, "succeeded")]
    assert summarise["status"] == "scheduled", "a delayed next task shows as scheduled"
    assert summarise["scheduled_for"] == later(fetch["ended_at"], 30)


def test_after_a_cancel_the_runner_records_nothing_more(
    ops: SessionDriver, runner: StandInStepFunctions, state: dict[str, Any]
) -> None:
    dispatched = {**state, "step": runner.event("started", state)}
    runner.dispatch(dispatched, "token-1")
    assert ops.cancel(state["session_id"])[0] == 200
    assert set(runner.answers) == {("token-1", "failure", SESSION_CANCELLED)}, "the cancel ends the runner's wait"

    assert runner.event("succeeded", dispatched)["kind"] == "cancelled"
    fetch = fetch_of(ops, state)
    assert (fetch["status"], fetch["history"], fetch["output"]) == ("skipped", [], None), "the outcome was not written"
    again = {**dispatched, "step": {**dispatched["step"], "sequence": 2}}
    assert runner.dispatch(again, "token-2") == "session_ended"
    assert runner.answers[-1] == ("token-2", "failure", SESSION_CANCELLED), "the new wait is ended at once"


def test_a_closed_token_while_the_attempt_still_shows_leased_keeps_the_result(
    ops: SessionDriver, runner: StandInStepFunctions, state: dict[str, Any]
) -> None:
    # Two identical reports at once: the second may close the token before the first tells the runner.
    dispatched = {**state, "step": runner.event("started", state)}
    runner.dispatch(dispatched, "token-1")
    task_id = ops.wait_leased(state["session_id"], "fetch")
    runner.closed.add("token-1")

    status, accepted = ops.report(task_id, {"status": "succeeded", "output": {"n": 1}})
    assert (status, accepted["attempt"]) == (200, 1)
    assert runner.answers == [("token-1", "success", None)]
    # Kept for the runner: a retried dispatch (with a new token) hands it on, and the record shows its output.
    assert runner.dispatch(dispatched, "token-2") == "repeated"
    assert runner.answers[-1] == ("token-2", "success", None)
    assert runner.event("succeeded", dispatched)["task_index"] == 1
    fetch = fetch_of(ops, state)
    assert (fetch["status"], fetch["output"]) == ("succeeded", {"n": 1})


def test_a_closed_token_after_the_attempt_timed_out_refuses_and_forgets_the_result(
    ops: SessionDriver, runner: StandInStepFunctions, state: dict[str, Any]
) -> None:
    dispatched = {**state, "step": runner.event("started", state)}
    runner.dispatch(dispatched, "token-1")
    task_id = ops.wait_leased(state["session_id"], "fetch")
    timed_out = {**dispatched, "failure": {"Error": "States.Timeout"}}
    recorded: list[dict[str, Any]] = []

    def the_runner_records_the_timeout_first(token: str) -> None:
        # The attempt times out between the result being kept and the runner being told: its token is closed.
        runner.meanwhile = None
        recorded.append(runner.event("failed", timed_out))
        runner.closed.add(token)

    runner.meanwhile = the_runner_records_the_timeout_first
    status, body = ops.report(task_id, {"status": "succeeded"})
    assert status == 409, body
    assert body["error"]["code"] == "task_not_open"
    assert [(step["kind"], step["attempt"]) for step in recorded] == [("dispatch", 2)], "the runner went on to a retry"
    fetch = fetch_of(ops, state)
    assert (fetch["status"], fetch["output"]) == ("retrying", None)
    assert [entry["status"] for entry in fetch["history"]] == ["timed_out"]
    status, body = ops.report(task_id, {"status": "succeeded"})
    assert status == 409, f"forgotten, so not answered as a repeat: {body}"
    assert body["error"]["code"] == "task_not_open"
