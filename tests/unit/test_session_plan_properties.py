"""Whatever its tasks' outcomes, a session ends, within its attempt bounds, the way the outcomes say.

Templates are generated valid (fallbacks without cycles, at least one main-line task); the outcome of each attempt is
drawn when the plan dispatches it. The expected next step is the rule list of opscore.sessions.plan, stated here
independently: a failed attempt is retried while retries remain (unless the error rules retries out), then handed to
its task's fallback, else the session fails; a success goes on with the next main-line task after the one the run
stands in for, else the session completes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
from opscore.workflows.templates import WorkflowTemplate, check_template

RETRYABLE = ("AgentError", "States.Timeout", "OpsCore.LeaseExpired", "OpsCore.AgentOffline")
NO_RETRY = "OpsCore.AgentQuarantined"
# None is a success; successes are drawn about as often as failures.
OUTCOMES = st.sampled_from([None, None, None, *RETRYABLE, NO_RETRY])


@st.composite
def templates(draw: st.DrawFn) -> WorkflowTemplate:
    count = draw(st.integers(1, 6))
    # A task may fall back only to a task later in this order, so following fallbacks never leads back.
    order = draw(st.permutations(range(count)))
    tasks: list[dict[str, Any]] = []
    for index in range(count):
        later = [other for other in range(count) if order.index(other) > order.index(index)]
        fallback = draw(st.none() | st.sampled_from(later)) if later else None
        tasks.append(
            {
                "id": f"t{index}",
                "action": "x",
                "delay_seconds": draw(st.sampled_from([0, 0, 30])),
                "retry": {
                    "max_retries": draw(st.integers(0, 3)),
                    "backoff_seconds": draw(st.integers(0, 3600)),
                    "backoff_rate": draw(st.sampled_from([1.0, 2.0, 10.0])),
                },
                "fallback": None if fallback is None else f"t{fallback}",
                "fallback_only": draw(st.booleans()),
            }
        )
    if all(task["fallback_only"] for task in tasks):
        tasks[draw(st.integers(0, count - 1))]["fallback_only"] = False
    template = WorkflowTemplate.model_validate({"name": "generated", "tasks": tasks})
    check_template(template)  # valid by construction
    return template


def dispatch_bound(plan: SessionPlan) -> int:
    """The most attempts a session can dispatch: each task's runs times its attempts per run.

    A task runs once on the main line (unless fallback_only), plus once per run of each task that hands over to it.
    """

    @cache
    def runs(index: int) -> int:
        on_main_line = 0 if plan.tasks[index].fallback_only else 1
        return on_main_line + sum(runs(other.index) for other in plan.tasks if other.fallback == index)

    return sum(runs(task.index) * (1 + task.retry.max_retries) for task in plan.tasks)


@settings(max_examples=150)  # pure and quick: ~5 ms an example
@given(template=templates(), data=st.data())
def test_every_session_ends_within_its_attempt_bounds_as_its_outcomes_say(
    template: WorkflowTemplate, data: st.DataObject
) -> None:
    plan = build_plan(template, 1, {}, None)
    main_line = [task.index for task in plan.tasks if not task.fallback_only]
    bound = dispatch_bound(plan)

    expected: tuple[Any, ...] = ("dispatch", main_line[0], 1)
    stands_for = main_line[0]  # the main-line task the current run is, or stands in for
    step, previous = first_step(plan), Step(kind="dispatch", sequence=0)
    dispatched: list[tuple[int, int]] = []
    errors: list[str | None] = []
    while True:
        assert step.sequence == previous.sequence + 1, "each step is numbered one after the last"
        if step.kind != "dispatch":
            break
        assert ("dispatch", step.task_index, step.attempt) == expected
        assert step.task_index is not None
        task = plan.tasks[step.task_index]
        assert 1 <= step.attempt <= 1 + task.retry.max_retries, "a run never exceeds its attempts"
        if step.attempt == 1:
            assert step.wait_seconds == task.delay_seconds
        else:
            assert 0 <= step.wait_seconds <= MAX_BACKOFF_SECONDS
        dispatched.append((task.index, step.attempt))
        assert len(dispatched) <= bound, f"more than {bound} dispatches"

        error = data.draw(OUTCOMES, label=f"{task.id} attempt {step.attempt}")
        errors.append(error)
        previous = step
        if error is None:
            step = after_success(plan, step)
            following = next((index for index in main_line if index > stands_for), None)
            expected = ("completed",) if following is None else ("dispatch", following, 1)
            stands_for = following if following is not None else stands_for
        else:
            step = after_failure(plan, step, TaskError(error=error))
            if previous.attempt < 1 + task.retry.max_retries and error != NO_RETRY:
                expected = ("dispatch", task.index, previous.attempt + 1)
            elif task.fallback is not None:
                expected = ("dispatch", task.fallback, 1)
            else:
                expected = ("failed", task.index, error)

    if step.kind == "completed":
        assert expected == ("completed",)
        assert errors[-1] is None, "a session completes on a success"
    else:
        assert (step.kind, step.task_index, step.failure.error if step.failure else None) == expected
    if all(error is None for error in errors):
        assert (step.kind, dispatched) == ("completed", [(index, 1) for index in main_line]), (
            "every main-line task once, in order"
        )
