"""Session plans and the runner's decisions: what runs next after a task attempt succeeds or fails.

A plan is a workflow template resolved for one trigger: priorities settled, the trigger's input beside each task's own.
The decisions are pure functions of the plan and the current step, so the session runner's state machine only routes
on `Step.kind`, and every rule (order, retries and backoff, fallbacks, the end of a session) is unit-tested here.

The rules:
- tasks run in template order; `fallback_only` tasks run only as some task's fallback;
- a failed attempt is retried while attempts remain (`max_retries` after the first), after
  `backoff_seconds * backoff_rate ** (retry - 1)` seconds (at most MAX_BACKOFF_SECONDS), unless its agent was
  quarantined (NO_RETRY_ERRORS);
- a task that still fails hands over to its fallback, if it names one; a fallback that completes lets the session go
  on after the task it stood in for; a fallback that fails hands over to its own fallback, if any;
- otherwise the session fails with the task's error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from opscore.workflows.templates import RetryPolicy, WorkflowTemplate

DEFAULT_PRIORITY = 5
MAX_BACKOFF_SECONDS = 86_400
# Errors that mean an attempt ran out of time: Step Functions' own, an expired lease, an agent gone offline.
TIMEOUT_ERRORS = frozenset(
    {"States.Timeout", "States.HeartbeatTimeout", "OpsCore.LeaseExpired", "OpsCore.AgentOffline"}
)
# Errors after which retrying is pointless: the task goes straight to its fallback (its agent was quarantined).
NO_RETRY_ERRORS = frozenset({"OpsCore.AgentQuarantined"})


class PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskPlan(PlanModel):
    index: int
    id: str
    action: str
    input: dict[str, Any]
    priority: int = Field(ge=0, le=9)
    delay_seconds: int
    timeout_seconds: int
    heartbeat_seconds: int | None
    retry: RetryPolicy
    fallback: int | None = Field(description="Index of the fallback task.")
    fallback_only: bool


class SessionPlan(PlanModel):
    workflow_id: str
    version: int
    session_input: dict[str, Any]
    tasks: list[TaskPlan]


class TaskError(PlanModel):
    error: str
    cause: str = ""

    @property
    def timed_out(self) -> bool:
        return self.error in TIMEOUT_ERRORS


class Step(PlanModel):
    """What the runner does next. `dispatch` carries the task attempt and its timing; the others end the session."""

    kind: Literal["dispatch", "completed", "failed", "cancelled"]
    # Counts the steps of a session (1 for the first): what makes a retried runner call recognisable as a repeat.
    sequence: int = 1
    task_index: int | None = None
    attempt: int = 0
    wait_seconds: int = 0
    timeout_seconds: int = 0
    heartbeat_seconds: int | None = None
    # The main-line task a fallback stands in for: the session goes on after it when the fallback completes.
    resume_after: int | None = None
    # The task whose failure made this one run (set on fallbacks only).
    fallback_for: int | None = None
    failure: TaskError | None = None


def build_plan(
    template: WorkflowTemplate, version: int, session_input: dict[str, Any], priority: int | None
) -> SessionPlan:
    index_of = {task.id: index for index, task in reversed(list(enumerate(template.tasks)))}
    tasks = [
        TaskPlan(
            index=index,
            id=task.id,
            action=task.action,
            input=task.input,
            priority=next(value for value in (task.priority, priority, DEFAULT_PRIORITY) if value is not None),
            delay_seconds=task.delay_seconds,
            timeout_seconds=task.timeout_seconds,
            heartbeat_seconds=task.heartbeat_seconds,
            retry=task.retry,
            fallback=index_of[task.fallback] if task.fallback is not None else None,
            fallback_only=task.fallback_only,
        )
        for index, task in enumerate(template.tasks)
    ]
    return SessionPlan(workflow_id=template.name, version=version, session_input=session_input, tasks=tasks)


def first_step(plan: SessionPlan) -> Step:
    return _next_main_task(plan, after=-1, sequence=1)


def after_success(plan: SessionPlan, step: Step) -> Step:
    """The attempt in `step` succeeded: go on with the next main-line task."""
    done = _dispatched_index(step)
    return _next_main_task(
        plan, after=step.resume_after if step.resume_after is not None else done, sequence=step.sequence + 1
    )


def after_failure(plan: SessionPlan, step: Step, failure: TaskError) -> Step:
    """The attempt in `step` failed (or timed out): retry it, hand over to its fallback, or fail the session."""
    task = plan.tasks[_dispatched_index(step)]
    retries_used = step.attempt - 1
    if retries_used < task.retry.max_retries and failure.error not in NO_RETRY_ERRORS:
        wait = min(round(task.retry.backoff_seconds * task.retry.backoff_rate**retries_used), MAX_BACKOFF_SECONDS)
        return _dispatch(task, attempt=step.attempt + 1, wait=wait, sequence=step.sequence + 1).model_copy(
            update={"resume_after": step.resume_after, "fallback_for": step.fallback_for}
        )
    if task.fallback is not None:
        fallback = plan.tasks[task.fallback]
        resume_after = step.resume_after if step.resume_after is not None else task.index
        return _dispatch(fallback, attempt=1, wait=fallback.delay_seconds, sequence=step.sequence + 1).model_copy(
            update={"resume_after": resume_after, "fallback_for": task.index}
        )
    return Step(kind="failed", task_index=task.index, attempt=step.attempt, failure=failure, sequence=step.sequence + 1)


def _dispatched_index(step: Step) -> int:
    if step.kind != "dispatch" or step.task_index is None:
        raise ValueError(f"a {step.kind} step has no task attempt")
    return step.task_index


def _next_main_task(plan: SessionPlan, after: int, sequence: int) -> Step:
    for task in plan.tasks[after + 1 :]:
        if not task.fallback_only:
            return _dispatch(task, attempt=1, wait=task.delay_seconds, sequence=sequence)
    return Step(kind="completed", sequence=sequence)


def _dispatch(task: TaskPlan, attempt: int, wait: int, sequence: int) -> Step:
    return Step(
        kind="dispatch",
        sequence=sequence,
        task_index=task.index,
        attempt=attempt,
        wait_seconds=wait,
        timeout_seconds=task.timeout_seconds,
        heartbeat_seconds=task.heartbeat_seconds,
    )
