"""The runner's decisions, driven through whole sessions with scripted task outcomes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from opscore.sessions.plan import (
    MAX_BACKOFF_SECONDS,
    SessionPlan,
    Step,
    TaskError,
    after_failure,
    after_success,
    build_plan,
    first_step,
)
from opscore.workflows.templates import WorkflowTemplate

TRIAGE: dict[str, Any] = {
    "name": "triage",
    "tasks": [
        {
            "id": "fetch",
            "action": "web.fetch",
            "delay_seconds": 3,
            "retry": {"max_retries": 2, "backoff_seconds": 1, "backoff_rate": 2.0},
            "fallback": "notify",
        },
        {"id": "summarize", "action": "llm.summarize", "priority": 8},
        {"id": "notify", "action": "human.notify", "fallback_only": True},
    ],
}

Outcome = Callable[[str, int], TaskError | None]


def plan_of(body: dict[str, Any], priority: int | None = None) -> SessionPlan:
    return build_plan(WorkflowTemplate.model_validate(body), 1, {"ticket": 42}, priority)


def run(plan: SessionPlan, outcome: Outcome) -> tuple[list[tuple[str, int, int]], Step]:
    """Play the session: outcome(task_id, attempt) is None for success, else the attempt's error."""
    dispatched: list[tuple[str, int, int]] = []
    step = first_step(plan)
    while step.kind == "dispatch":
        assert step.task_index is not None
        task = plan.tasks[step.task_index]
        dispatched.append((task.id, step.attempt, step.wait_seconds))
        assert len(dispatched) < 100, "runaway session"
        error = outcome(task.id, step.attempt)
        step = after_success(plan, step) if error is None else after_failure(plan, step, error)
    return dispatched, step


def failing(*tasks: str, times: int = 99, error: str = "AgentError") -> Outcome:
    return lambda task, attempt: TaskError(error=error, cause="boom") if task in tasks and attempt <= times else None


def test_tasks_run_in_order_and_fallback_only_tasks_do_not() -> None:
    dispatched, end = run(plan_of(TRIAGE), failing())
    assert dispatched == [("fetch", 1, 3), ("summarize", 1, 0)], "the first dispatch waits the task's delay"
    assert end.kind == "completed"


def test_a_task_that_fails_then_succeeds_within_its_retries() -> None:
    dispatched, end = run(plan_of(TRIAGE), failing("fetch", times=2))
    assert dispatched == [("fetch", 1, 3), ("fetch", 2, 1), ("fetch", 3, 2), ("summarize", 1, 0)]
    assert end.kind == "completed"


def test_retries_exhausted_hand_over_to_the_fallback_and_the_session_goes_on() -> None:
    dispatched, end = run(plan_of(TRIAGE), failing("fetch"))
    assert dispatched == [("fetch", 1, 3), ("fetch", 2, 1), ("fetch", 3, 2), ("notify", 1, 0), ("summarize", 1, 0)]
    assert end.kind == "completed"


def test_timeouts_count_as_failed_attempts() -> None:
    dispatched, end = run(plan_of(TRIAGE), failing("fetch", times=1, error="States.Timeout"))
    assert dispatched[:2] == [("fetch", 1, 3), ("fetch", 2, 1)]
    assert end.kind == "completed"
    assert TaskError(error="States.HeartbeatTimeout").timed_out
    assert not TaskError(error="AgentError").timed_out


def test_without_a_fallback_the_session_fails_with_the_tasks_error() -> None:
    dispatched, end = run(plan_of(TRIAGE), failing("summarize"))
    assert dispatched == [("fetch", 1, 3), ("summarize", 1, 0)]
    assert end.kind == "failed"
    assert end.task_index == 1
    assert end.failure == TaskError(error="AgentError", cause="boom")


def test_a_failing_fallback_hands_over_to_its_own_fallback_then_the_session_goes_on() -> None:
    body = {
        "name": "chain",
        "tasks": [
            {"id": "a", "action": "x", "fallback": "f1"},
            {"id": "b", "action": "x"},
            {
                "id": "f1",
                "action": "x",
                "fallback_only": True,
                "fallback": "f2",
                "retry": {"max_retries": 1, "backoff_seconds": 5},
            },
            {"id": "f2", "action": "x", "fallback_only": True},
        ],
    }
    dispatched, end = run(plan_of(body), failing("a", "f1"))
    assert dispatched == [("a", 1, 0), ("f1", 1, 0), ("f1", 2, 5), ("f2", 1, 0), ("b", 1, 0)]
    assert end.kind == "completed"

    dispatched, end = run(plan_of(body), failing("a", "f1", "f2"))
    assert [task for task, _, _ in dispatched] == ["a", "f1", "f1", "f2"]
    assert (end.kind, end.task_index) == ("failed", 3)


def test_a_fallback_step_knows_what_it_stands_in_for() -> None:
    plan = plan_of(TRIAGE)
    step = first_step(plan)
    for _ in range(3):
        step = after_failure(plan, step, TaskError(error="AgentError"))
    assert (step.task_index, step.fallback_for, step.resume_after) == (2, 0, 0)


def test_priority_is_the_tasks_else_the_triggers_else_five() -> None:
    assert [task.priority for task in plan_of(TRIAGE, priority=2).tasks] == [2, 8, 2]
    assert [task.priority for task in plan_of(TRIAGE).tasks] == [5, 8, 5]


def test_the_plan_carries_the_static_and_the_trigger_input_side_by_side() -> None:
    plan = plan_of({"name": "x", "tasks": [{"id": "a", "action": "x", "input": {"url": "u"}}]})
    assert (plan.tasks[0].input, plan.session_input) == ({"url": "u"}, {"ticket": 42})


def test_backoff_grows_by_its_rate_and_is_capped() -> None:
    body = {
        "name": "slow",
        "tasks": [
            {"id": "a", "action": "x", "retry": {"max_retries": 10, "backoff_seconds": 3600, "backoff_rate": 10.0}}
        ],
    }
    dispatched, end = run(plan_of(body), failing("a"))
    assert [wait for _, _, wait in dispatched[1:4]] == [3600, 36000, MAX_BACKOFF_SECONDS]
    assert (len(dispatched), end.kind) == (11, "failed")


def test_an_ended_session_has_no_next_step() -> None:
    plan = plan_of(TRIAGE)
    with pytest.raises(ValueError, match="no task attempt"):
        after_success(plan, Step(kind="completed"))


def test_a_quarantined_agents_task_skips_its_retries_for_its_fallback() -> None:
    template = WorkflowTemplate.model_validate(
        {
            "name": "t",
            "tasks": [
                {"id": "a", "action": "x", "retry": {"max_retries": 3}, "fallback": "b"},
                {"id": "b", "action": "y", "fallback_only": True},
            ],
        }
    )
    plan = build_plan(template, 1, {}, None)
    step = first_step(plan)
    quarantined = after_failure(plan, step, TaskError(error="OpsCore.AgentQuarantined"))
    assert (quarantined.task_index, quarantined.fallback_for) == (1, 0)
    retried = after_failure(plan, step, TaskError(error="OpsCore.LeaseExpired"))
    assert (retried.task_index, retried.attempt) == (0, 2), "an expired lease is retried like a timeout"
    assert TaskError(error="OpsCore.LeaseExpired").timed_out
