"""What the runner's states ask of Ops-Core, when Step Functions repeats, retries, times out or gives up.

Here the test stands in for Step Functions: the trigger's StartExecution is answered at the client boundary (nothing
executes), and the test invokes the dispatch function as the workflow's generated Task states would (their own
Payload, evaluated against the execution's input), repeating and retrying calls the way Step Functions does. Task
tokens are the test's own; what Ops-Core tells Step Functions about them (SendTaskSuccess, SendTaskFailure) is
answered and recorded at the boundary. Everything else is read through the session's view and the agent's APIs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from opscore import wiring
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import EventFactory
from tests.integration.boundary import Answer, intercept
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver, task

TEMPLATE = {
    "name": "triage",
    "tasks": [
        {
            "id": "fetch",
            "action": "web.fetch",
            "timeout_seconds": 60,
            "retry": {"max_retries": 1, "backoff_seconds": 5},
        },
        {"id": "summarise", "action": "text.summarise", "delay_seconds": 30, "fallback": "ask"},
        {"id": "ask", "action": "human.ask", "fallback_only": True},
    ],
}
SESSION_CANCELLED = "OpsCore.SessionCancelled"


@dataclass
class StandInStepFunctions:
    """Step Functions as the dispatch function and the task API meet it, played by the test.

    Started executions are kept, not run. A task token is open until it is answered once or `closed`; every answer
    Ops-Core sends is recorded as (token, "success" | "failure", error name or None), open or not.
    """

    runtime: LambdaRuntime
    clock: Clock
    started: list[dict[str, Any]] = field(default_factory=list)
    # When each state was entered, as `$$.State.EnteredTime` says it (the same for every retry of one entry), and
    # its retries so far (`$$.State.RetryCount`).
    entered: dict[str, str] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)
    machines: list[str] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    answers: list[tuple[str, str, str | None]] = field(default_factory=list)

    def install(self) -> None:
        client = wiring.stepfunctions()
        intercept(client, "StartExecution", self._start)
        intercept(client, "StopExecution", lambda _request: Answer.ok())
        intercept(client, "SendTaskSuccess", lambda request: self._answer(request, "success"))
        intercept(client, "SendTaskFailure", lambda request: self._answer(request, "failure"))

    def _start(self, request: dict[str, Any]) -> Answer:
        self.started.append(json.loads(request["input"]))
        self.machines.append(request["stateMachineArn"])
        return Answer.ok({"executionArn": f"{request['stateMachineArn']}:{request['name']}", "startDate": 0})

    def _answer(self, request: dict[str, Any], outcome: str) -> Answer:
        token = request["taskToken"]
        self.answers.append((token, outcome, request.get("error")))
        if token in self.closed:
            return Answer.error("TaskTimedOut", "the task token is closed")
        self.closed.add(token)
        return Answer.ok()

    def state(self, name: str, number: int = -1) -> dict[str, Any]:
        """A state of a session's machine (the last one started, by default), as created when its template was
        stored."""
        with self.runtime.exclusive():
            described = boto3.client("stepfunctions").describe_state_machine(stateMachineArn=self.machines[number])
        return dict(json.loads(described["definition"])["States"][name])

    def dispatch_session(self, number: int, state_name: str, token: str) -> str:
        """The first dispatch of a state of the `number`th session started."""
        return self._invoke(number, state_name, self._now(), 0, token)

    def dispatch(self, state_name: str, token: str, *, enter_again: bool = False) -> str:
        """Invoke the dispatch function as the only session's Task state does: its Payload, evaluated. The state is
        entered on its first dispatch (or again, with `enter_again`); later dispatches are its retries."""
        if enter_again or state_name not in self.entered:
            self.entered[state_name] = self._now()
            self.retries[state_name] = 0
        else:
            self.retries[state_name] += 1
        assert len(self.started) == 1
        return self._invoke(0, state_name, self.entered[state_name], self.retries[state_name], token)

    def _invoke(self, number: int, state_name: str, entered: str, retry_count: int, token: str) -> str:
        execution_input = self.started[number]
        route = self.state(state_name, number)["Parameters"]["Payload"]["dispatch"]
        event = {
            "dispatch": route,
            "session_id": execution_input["session_id"],
            "agent_id": execution_input["agent_id"],
            "session_input": execution_input["input"],
            "given": execution_input["tasks"][route["index"]],
            "run": entered,
            "retry_count": retry_count,
            "token": token,
        }
        return str(self.runtime.invoke("DispatchFunction", event)["dispatch"])

    def _now(self) -> str:
        """`$$.State.EnteredTime`'s format."""
        return self.clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def record_failure(self, error: str) -> Any:
        (execution_input,) = self.started
        failure = {"session_id": execution_input["session_id"], "agent_id": execution_input["agent_id"]}
        return self.runtime.invoke("DispatchFunction", {"runner_failed": {**failure, "failure": {"Error": error}}})


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    driver = SessionDriver(call, api_event, now=clock.now)
    driver.register()
    return driver


@pytest.fixture
def runner(aws: Any, runtime: LambdaRuntime, clock: Clock) -> StandInStepFunctions:
    stand_in = StandInStepFunctions(runtime, clock)
    stand_in.install()
    return stand_in


@pytest.fixture
def session_id(ops: SessionDriver, runner: StandInStepFunctions) -> str:
    """A session triggered through the API; its execution's input is what the trigger started it with."""
    started = ops.start(TEMPLATE)
    (execution_input,) = runner.started
    assert execution_input["session_id"] == started
    return started


def view_of(ops: SessionDriver, session_id: str) -> dict[str, Any]:
    status, view = ops.session(session_id)
    assert status == 200, view
    return dict(view)


def later(stamp: str, seconds: int) -> str:
    moment = datetime.fromisoformat(stamp) + timedelta(seconds=seconds)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_the_execution_input_carries_each_tasks_input_and_priority(
    runner: StandInStepFunctions, session_id: str
) -> None:
    (execution_input,) = runner.started
    assert execution_input["tasks"] == [
        {"input": {}, "priority": 5},
        {"input": {}, "priority": 5},
        {"input": {}, "priority": 5},
    ]
    assert runner.state("fetch")["Parameters"]["Payload"]["given.$"] == "$.tasks[0]"


def test_a_repeated_dispatch_counts_one_attempt_and_keeps_the_newest_token(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str
) -> None:
    assert view_of(ops, session_id)["status"] == "processing", "its runner has started"
    assert runner.dispatch("fetch", "token-1") == "queued"
    assert runner.dispatch("fetch", "token-2") == "repeated", "Lambda retried the invocation after it had queued"
    view = view_of(ops, session_id)
    fetch = task(view, "fetch")
    assert (view["status"], fetch["status"], fetch["attempts"]) == ("processing", "queued", 1)
    queued = ops.queue(status="queued")[1]["items"]
    assert [item["task_id"] for item in queued] == [fetch["task_id"]], "queued once"

    # the agent's result goes to the newest token only
    ops.succeed(ops.wait_leased(session_id, "fetch"))
    assert runner.answers == [("token-2", "success", None)]


def test_a_failed_attempt_is_recorded_retrying_and_the_retry_is_the_runs_next_attempt(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str
) -> None:
    runner.dispatch("fetch", "token-1")
    ops.fail(ops.wait_leased(session_id, "fetch"), "UpstreamTimeout", "tickets did not answer")
    assert runner.answers == [("token-1", "failure", "OpsCore.TaskFailed")]
    fetch = task(view_of(ops, session_id), "fetch")
    assert fetch["status"] == "retrying"
    (failed,) = fetch["history"]
    assert (failed["attempt"], failed["status"]) == (1, "failed")
    assert fetch["scheduled_for"] == later(failed["ended_at"], 5), "Step Functions retries after the backoff"

    # Step Functions' Retry: the same state, the same run, a new token
    assert runner.dispatch("fetch", "token-2") == "queued"
    ops.succeed(ops.wait_leased(session_id, "fetch", attempts=2), {"page": "<html>"})
    view = view_of(ops, session_id)
    fetch, summarise = task(view, "fetch"), task(view, "summarise")
    assert (fetch["status"], fetch["attempts"], fetch["output"]) == ("succeeded", 2, {"page": "<html>"})
    assert [(entry["attempt"], entry["status"]) for entry in fetch["history"]] == [(1, "failed"), (2, "succeeded")]
    assert summarise["status"] == "scheduled", "the next task waits out its delay, and shows it"
    assert summarise["scheduled_for"] == later(fetch["ended_at"], 30)
    assert view["status"] == "processing", "the session goes on"


def test_a_retry_after_the_attempts_time_ran_out_records_the_timeout_and_gives_the_slot_back(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str, clock: Clock
) -> None:
    runner.dispatch("fetch", "token-1")
    ops.wait_leased(session_id, "fetch")
    assert ops.agent()[1]["queue"]["in_flight"] == 1
    clock.advance(61)  # past the attempt's 60 s: Step Functions timed it out and retries it

    assert runner.dispatch("fetch", "token-2") == "queued"
    fetch = task(view_of(ops, session_id), "fetch")
    assert (fetch["status"], fetch["attempts"]) == ("queued", 2)
    (timed_out,) = fetch["history"]
    assert (timed_out["status"], timed_out["error"]["type"]) == ("timed_out", "States.Timeout")
    assert timed_out["error"]["message"] == "no result within 60 s of being queued"
    assert ops.agent()[1]["queue"]["in_flight"] == 0, "the agent's slot came back with the lease"
    assert runner.answers == [], "a timed-out token is not answered"


def test_a_result_after_the_attempts_time_ran_out_is_refused_and_changes_nothing(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str, clock: Clock
) -> None:
    runner.dispatch("fetch", "token-1")
    task_id = ops.wait_leased(session_id, "fetch")
    clock.advance(61)

    status, body = ops.report(task_id, {"status": "succeeded", "output": {}})
    assert (status, body["error"]["code"]) == (409, "task_not_open")
    assert "timed out" in body["error"]["message"]
    fetch = task(view_of(ops, session_id), "fetch")
    assert (fetch["status"], fetch["history"], fetch["output"]) == ("leased", [], None)
    assert runner.answers == []


def test_a_success_the_runner_missed_is_passed_on_to_the_retry(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str
) -> None:
    # The runner timed the attempt out just as its result was recorded: the result's token is closed.
    runner.dispatch("fetch", "token-1")
    task_id = ops.wait_leased(session_id, "fetch")
    runner.closed.add("token-1")
    status, accepted = ops.report(task_id, {"status": "succeeded", "output": {"n": 1}})
    assert (status, accepted["attempt"]) == (200, 1)

    assert runner.dispatch("fetch", "token-2") == "repeated", "the retry finds the run succeeded"
    assert runner.answers[-1] == ("token-2", "success", None)
    fetch = task(view_of(ops, session_id), "fetch")
    assert (fetch["status"], fetch["attempts"], fetch["output"]) == ("succeeded", 1, {"n": 1})


def test_after_a_cancel_a_dispatch_queues_nothing_and_ends_the_wait(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str
) -> None:
    runner.dispatch("fetch", "token-1")
    assert ops.cancel(session_id)[0] == 200
    assert set(runner.answers) == {("token-1", "failure", SESSION_CANCELLED)}, "the cancel ends the runner's wait"

    assert runner.dispatch("fetch", "token-2", enter_again=True) == "session_ended"
    assert runner.answers[-1] == ("token-2", "failure", SESSION_CANCELLED), "the new wait is ended at once"
    fetch = task(view_of(ops, session_id), "fetch")
    assert (fetch["status"], fetch["attempts"], fetch["history"]) == ("skipped", 1, [])


def test_the_fallbacks_dispatch_records_the_timeout_of_the_task_it_replaces(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str, clock: Clock
) -> None:
    runner.dispatch("fetch", "token-1")
    ops.succeed(ops.wait_leased(session_id, "fetch"))
    runner.dispatch("summarise", "token-2")
    ops.wait_leased(session_id, "summarise")
    clock.advance(301)  # summarise's 300 s ran out, with no retry left: Step Functions catches it

    assert runner.dispatch("ask (fallback for summarise)", "token-3") == "queued"
    view = view_of(ops, session_id)
    summarise, ask = task(view, "summarise"), task(view, "ask")
    assert (summarise["status"], summarise["error"]["type"]) == ("timed_out", "States.Timeout")
    assert (ask["status"], ask["fallback_for"]) == ("queued", ["summarise"])
    ops.succeed(ops.wait_leased(session_id, "ask"))
    view = view_of(ops, session_id)
    assert view["status"] == "completed", "the fallback of the last task completes the session"


def test_record_failure_ends_the_session_with_the_timeout_of_the_task_it_gave_up_on(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str, clock: Clock
) -> None:
    runner.dispatch("fetch", "token-1")
    task_id = ops.wait_leased(session_id, "fetch")
    clock.advance(61)
    runner.dispatch("fetch", "token-2")  # the retry
    ops.wait_leased(session_id, "fetch", attempts=2)
    clock.advance(61)  # the last attempt runs out too: no fallback, so Step Functions goes to Record Failure

    runner.record_failure("States.Timeout")
    runner.record_failure("States.Timeout")  # Lambda may run it twice: the session ends once
    view = view_of(ops, session_id)
    fetch = task(view, "fetch")
    assert view["status"] == "error"
    assert view["error"] == {
        "type": "States.Timeout",
        "message": "no result within 60 s of being queued",
        "task_id": task_id,
    }
    assert [entry["status"] for entry in fetch["history"]] == ["timed_out", "timed_out"]
    assert (fetch["status"], task(view, "summarise")["status"]) == ("timed_out", "skipped")
    assert ops.agent()[1]["queue"]["in_flight"] == 0


SLOW = {
    "name": "slow",
    "tasks": [
        {
            "id": "work",
            "action": "web.fetch",
            "timeout_seconds": 60,
            "retry": {"max_retries": 1, "backoff_seconds": 3600},
        }
    ],
}


def test_attempts_the_runner_timed_out_leave_the_queue_at_the_next_pull_or_sweep(
    ops: SessionDriver, runner: StandInStepFunctions, clock: Clock, runtime: LambdaRuntime
) -> None:
    stale = []
    for number in range(11):
        stale.append(ops.start(SLOW))
        assert runner.dispatch_session(number, "work", f"token-{number}") == "queued"
    clock.advance(61)  # the runner timed all of them out; their retries come in an hour
    fresh = ops.start(SLOW)
    assert runner.dispatch_session(11, "work", "token-fresh") == "queued"

    status, leased = ops.next_task()
    assert (status, leased["session_id"]) == (200, fresh), "timed-out attempts never block the queue's head"
    recorded = [task(view_of(ops, session_id), "work") for session_id in stale]
    assert {entry["status"] for entry in recorded[:10]} == {"retrying"}, "those the pull met are recorded at once"
    runtime.invoke("SweepFunction", {})
    last = task(view_of(ops, stale[10]), "work")
    assert (last["status"], last["history"][0]["error"]["type"]) == ("retrying", "States.Timeout"), (
        "the sweep: the rest"
    )
    assert [item["session_id"] for item in ops.queue(status="queued")[1]["items"]] == []
    assert runner.answers == [], "a token the runner timed out is not answered"


def test_a_lease_ends_with_the_attempts_time_and_the_sweep_gives_the_slot_back(
    ops: SessionDriver, runner: StandInStepFunctions, clock: Clock, runtime: LambdaRuntime
) -> None:
    ops.register(max_concurrency=1)
    first = ops.start(SLOW)
    runner.dispatch_session(0, "work", "token-1")
    clock.advance(50)  # leased after 50 s in the queue: 10 s are left of its 60 s
    task_id = ops.wait_leased(first, "work")
    assert task(view_of(ops, first), "work")["status"] == "leased"
    second = ops.start(SLOW)
    runner.dispatch_session(1, "work", "token-2")
    clock.advance(15)

    assert ops.heartbeat(task_id)[0] == 409, "no renewal past the attempt's time"
    runtime.invoke("SweepFunction", {})
    work = task(view_of(ops, first), "work")
    assert (work["status"], work["history"][0]["error"]["type"]) == ("retrying", "States.Timeout")
    assert ops.agent()[1]["queue"]["in_flight"] == 0
    status, leased = ops.next_task()
    assert (status, leased["session_id"]) == (200, second)


def test_a_trigger_whose_processing_mark_fails_still_answers_for_its_session(
    ops: SessionDriver, runner: StandInStepFunctions
) -> None:
    def conflict(request: dict[str, Any]) -> Answer | None:
        if request.get("ConditionExpression") == "#status = :waiting" and request["Key"]["SK"]["S"] == "SESSION":
            return Answer.error("TransactionConflictException", "ongoing transaction for the item")
        return None

    hook = intercept(wiring.dynamodb(), "UpdateItem", conflict)
    status, started = ops.trigger({"template": SLOW}, key="ticket-7")
    hook.remove()
    assert status == 202, started
    assert ops.trigger({"template": SLOW}, key="ticket-7") == (202, started), "its retry is the same session"
    assert len(runner.started) == 1
    assert runner.dispatch_session(0, "work", "token-1") == "queued"
    assert view_of(ops, started["session_id"])["status"] == "processing", "its first dispatch marked it"


def test_record_failure_after_lambda_kept_failing_blames_the_runner_not_a_task_stood_in_for(
    ops: SessionDriver, runner: StandInStepFunctions, session_id: str
) -> None:
    runner.dispatch("fetch", "token-1")
    ops.succeed(ops.wait_leased(session_id, "fetch"))
    runner.dispatch("summarise", "token-2")
    ops.fail(ops.wait_leased(session_id, "summarise"), "ToolError", "no summary")
    assert task(view_of(ops, session_id), "summarise")["status"] == "failed", "no retry: its fallback comes next"
    # The fallback's dispatch never ran: Lambda kept failing, and the state's Catch went to Record Failure.
    runner.record_failure("Lambda.ServiceException")
    view = view_of(ops, session_id)
    assert (view["status"], view["error"]["type"], view["error"]["task_id"]) == (
        "error",
        "Lambda.ServiceException",
        None,
    )
