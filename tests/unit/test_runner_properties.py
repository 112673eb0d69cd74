"""Properties of the generated session runner, and of how Ops-Core records an attempt's end, over any valid template.

Templates are drawn with up to six tasks, each perhaps falling back to any other (earlier or later); those that
check_template refuses (fallback cycles, nothing on the main line) are skipped. For each:
- the definition is closed: StartAt and every Next and Catch name a state;
- every main-line task has exactly one state of its own, named after its id; a fallback_only task has none;
- exactly one Task state begins the session, the first main-line task's, and StartAt leads to it;
- a success goes on to the route's `then` and a final failure to its `fallback` (in a state for that task), else to
  Record Failure; a fallback goes on where the task it stands in for would have;
- retry_wait gives a wait for each retry, never shorter than the one before, and agrees with the state's retrier;
  after the last retry it gives None;
- attempts.failed leaves a task `retrying` until now + retry_wait exactly when the error is retried, a retry is left
  and the failure is not final; otherwise the task ends (failed or timed out) and the fallback's delay shows as a mark.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, reject
from hypothesis import strategies as st

from opscore.core.clock import format_timestamp
from opscore.core.errors import ValidationFailed
from opscore.sessions.attempts import failed, succeeded
from opscore.sessions.definition import RECORD_FAILURE, RunnerTargets, runner_definition
from opscore.sessions.errors import (
    AGENT_FAILED_FINAL_ERROR,
    AGENT_OFFLINE_ERROR,
    AGENT_QUARANTINED_ERROR,
    LEASE_EXPIRED_ERROR,
    RETRIED_ERRORS,
)
from opscore.sessions.models import Problem, SessionStatus, TaskStatus
from opscore.sessions.plan import Follower, TaskRoute, TaskRun, retry_wait, task_runs
from opscore.sessions.records import TaskRecord
from opscore.sessions.writes import TaskMark
from opscore.workflows.templates import RetryPolicy, WorkflowTemplate, check_template

TARGETS = RunnerTargets("arn:aws:lambda:us-east-1:123456789012:function:opscore-dispatch", "opscore-table")
WAIT_FOR_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"
NOW = datetime(2030, 5, 17, 8, 30, 0, 250_000, tzinfo=UTC)
TIMEOUTS = {"States.Timeout", LEASE_EXPIRED_ERROR, AGENT_OFFLINE_ERROR}
ERRORS = st.sampled_from([*RETRIED_ERRORS, AGENT_QUARANTINED_ERROR, AGENT_FAILED_FINAL_ERROR, "States.Runtime"])

retry_policies = st.builds(
    RetryPolicy,
    max_retries=st.integers(0, 10),
    backoff_seconds=st.integers(0, 3600),
    backoff_rate=st.floats(1.0, 10.0, allow_nan=False),
)


@st.composite
def templates(draw: st.DrawFn) -> WorkflowTemplate:
    count = draw(st.integers(1, 6))
    tasks: list[dict[str, Any]] = []
    for index in range(count):
        others = [f"t{other}" for other in range(count) if other != index]
        tasks.append(
            {
                "id": f"t{index}",
                "action": f"act.{index}",
                "delay_seconds": draw(st.sampled_from([0, 0, 45])),
                "timeout_seconds": draw(st.integers(1, 86_400)),
                "retry": draw(retry_policies).model_dump(),
                "fallback": draw(st.none() | st.sampled_from(others)) if others else None,
                "fallback_only": draw(st.sampled_from([False, False, True])),
            }
        )
    workflow = WorkflowTemplate.model_validate({"name": "drawn", "tasks": tasks})
    try:
        check_template(workflow)
    except ValidationFailed:
        reject()
    return workflow


def task_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in states.items() if state.get("Resource") == WAIT_FOR_TOKEN}


def route_of(state: dict[str, Any]) -> TaskRoute:
    return TaskRoute.model_validate(state["Parameters"]["Payload"]["dispatch"])


def failure_target(state: dict[str, Any]) -> str:
    target: str = next(catcher["Next"] for catcher in state["Catch"] if catcher["ErrorEquals"] == ["States.ALL"])
    return target


def entered(states: dict[str, Any], target: str) -> tuple[int, str]:
    """A transition's delay and the Task state it reaches (through a Wait, if it names one)."""
    state = states[target]
    if state["Type"] == "Wait":
        return state["Seconds"], state["Next"]
    return 0, target


def goes_on(state: dict[str, Any]) -> str | None:
    """Where a state goes on after a success: its Next, or None when it ends the execution."""
    return None if state.get("End") else state["Next"]


@given(templates())
def test_every_transition_names_a_state(workflow: WorkflowTemplate) -> None:
    definition = runner_definition(workflow, TARGETS)
    states = definition["States"]
    assert definition["StartAt"] in states
    for name, state in states.items():
        assert len(name) <= 80
        following = [catcher["Next"] for catcher in state.get("Catch", [])]
        following += [state["Next"]] if "Next" in state else []
        for target in following:
            assert target in states, f"{name!r} moves to {target!r}"
    assert len(task_states(states)) == len(task_runs(workflow))


@given(templates())
def test_every_main_line_task_has_exactly_one_state_named_after_it(workflow: WorkflowTemplate) -> None:
    states = runner_definition(workflow, TARGETS)["States"]
    routes = [route_of(state) for state in task_states(states).values()]
    for index, task in enumerate(workflow.tasks):
        own = [route for route in routes if route.id == task.id and route.fallback_for is None]
        if task.fallback_only:
            assert own == []
            assert task.id not in states
        else:
            assert [route.state for route in own] == [task.id]
            assert own[0].index == index
            assert states[task.id]["TimeoutSeconds"] == task.timeout_seconds


@given(templates())
def test_exactly_one_task_state_begins_the_session(workflow: WorkflowTemplate) -> None:
    definition = runner_definition(workflow, TARGETS)
    states = definition["States"]
    beginning = [name for name, state in task_states(states).items() if route_of(state).begins]
    first = next(task for task in workflow.tasks if not task.fallback_only)
    assert beginning == [first.id]
    assert entered(states, definition["StartAt"]) == (first.delay_seconds, first.id)


@given(templates())
def test_success_and_final_failure_go_where_the_route_says(workflow: WorkflowTemplate) -> None:
    states = runner_definition(workflow, TARGETS)["States"]
    for name, state in task_states(states).items():
        route = route_of(state)
        if route.then is None:
            assert goes_on(state) is None
        else:
            after = states[entered(states, goes_on(state) or "")[1]]
            assert (route_of(after).id, route_of(after).fallback_for) == (route.then.id, None)
        if route.fallback is None:
            assert failure_target(state) == RECORD_FAILURE
        else:
            stand_in = states[entered(states, failure_target(state))[1]]
            replaced = route_of(stand_in).fallback_for
            assert route_of(stand_in).id == route.fallback.id
            assert replaced is not None
            assert (replaced.index, replaced.id) == (route.index, route.id)
            assert goes_on(stand_in) == goes_on(state), f"the fallback for {name} goes on elsewhere"


@given(templates())
def test_every_transition_waits_out_the_delay_of_the_task_it_leads_to(workflow: WorkflowTemplate) -> None:
    states = runner_definition(workflow, TARGETS)["States"]
    for state in task_states(states).values():
        route = route_of(state)
        if route.then is not None:
            assert entered(states, goes_on(state) or "")[0] == route.then.delay_seconds
        if route.fallback is not None:
            assert entered(states, failure_target(state))[0] == route.fallback.delay_seconds


@given(retry_policies)
def test_each_retry_waits_no_less_than_the_one_before_then_none_is_left(retry: RetryPolicy) -> None:
    waits = [retry_wait(retry, attempt) for attempt in range(1, retry.max_retries + 1)]
    assert None not in waits
    assert all(1 <= (wait or 0) <= 86_400 for wait in waits)
    assert waits == sorted(waits, key=lambda wait: wait or 0)
    if waits:
        assert waits[0] == max(retry.backoff_seconds, 1)
    for attempt in (retry.max_retries + 1, retry.max_retries + 2, 11):
        assert retry_wait(retry, attempt) is None


@given(templates())
def test_retry_wait_agrees_with_the_states_retrier(workflow: WorkflowTemplate) -> None:
    """Ops-Core's scheduled_for and Step Functions' retry: IntervalSeconds * BackoffRate ** n, capped."""
    states = runner_definition(workflow, TARGETS)["States"]
    for state in task_states(states).values():
        route = route_of(state)
        retriers = [retrier for retrier in state["Retry"] if RETRIED_ERRORS[0] in retrier["ErrorEquals"]]
        if route.retry.max_retries == 0:
            assert retriers == []
            continue
        (retrier,) = retriers
        assert retrier["MaxAttempts"] == route.retry.max_retries
        for attempt in range(1, retrier["MaxAttempts"] + 1):
            native = retrier["IntervalSeconds"] * retrier["BackoffRate"] ** (attempt - 1)
            assert retry_wait(route.retry, attempt) == min(round(native), retrier["MaxDelaySeconds"])


def record(run: TaskRun, run_attempt: int, attempts: int) -> TaskRecord:
    return TaskRecord(
        session_id="s-1",
        index=run.route.index,
        template_id=run.route.id,
        attempts=attempts,
        dispatch_seq=attempts + 2,
        run=run.route.state,
        run_attempt=run_attempt,
        route_json=run.route.model_dump_json(),
        attempt_started_at=format_timestamp(NOW - timedelta(seconds=30)),
    )


def expected_mark(route: TaskRoute, follower: Follower | None) -> TaskMark | None:
    if follower is None or follower.delay_seconds == 0 or follower.index == route.index:
        return None
    when = format_timestamp(NOW + timedelta(seconds=follower.delay_seconds))
    return TaskMark(follower.index, follower.id, TaskStatus.SCHEDULED, when)


@given(templates(), st.data())
def test_a_failure_is_retried_exactly_when_the_runner_retries_it(
    workflow: WorkflowTemplate, data: st.DataObject
) -> None:
    run = data.draw(st.sampled_from(task_runs(workflow)))
    route = run.route
    run_attempt = data.draw(st.integers(1, route.retry.max_retries + 2))
    attempts = run_attempt + data.draw(st.integers(0, 3))
    error, final = data.draw(ERRORS), data.draw(st.booleans())

    end = failed(record(run, run_attempt, attempts), Problem(type=error, message="m"), error, NOW, final=final)

    retried = not final and error in RETRIED_ERRORS and run_attempt <= route.retry.max_retries
    ended = TaskStatus.TIMED_OUT if error in TIMEOUTS else TaskStatus.FAILED
    assert end.end is None
    assert end.outcome.attempt == attempts
    if retried:
        wait = retry_wait(route.retry, run_attempt)
        assert wait is not None
        assert end.outcome.status is TaskStatus.RETRYING
        assert end.outcome.scheduled_for == format_timestamp(NOW + timedelta(seconds=wait))
        assert end.mark is None
    else:
        assert end.outcome.status is ended
        assert end.outcome.scheduled_for is None
        assert end.mark == expected_mark(route, route.fallback)


@given(templates(), st.data())
def test_a_success_completes_the_session_only_on_its_last_run(workflow: WorkflowTemplate, data: st.DataObject) -> None:
    run = data.draw(st.sampled_from(task_runs(workflow)))
    end = succeeded(record(run, 1, 1), {"ok": True}, NOW)
    assert end.outcome.status is TaskStatus.SUCCEEDED
    assert end.outcome.scheduled_for is None
    if run.next_state is None:
        assert end.end is not None
        assert end.end.status is SessionStatus.COMPLETED
    else:
        assert end.end is None
    assert end.mark == expected_mark(run.route, run.route.then)
