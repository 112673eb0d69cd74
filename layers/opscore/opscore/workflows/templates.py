"""Workflow templates: the tasks an operator wants run for an agent, in order, with their timing and failure rules.

Two layers of checks: the pydantic model (types, ranges, unknown fields) and `check_template` for what relates tasks
to each other (unique ids, fallbacks that exist, fallback cycles). Both report each problem with its path, such as
`tasks.2.fallback`.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from opscore.core.contracts import Integer, JsonObject, OptionalInteger, Prose, RequestModel, canonical_json
from opscore.core.errors import FieldProblem, ValidationFailed
from opscore.workflows.attempt_history import history_problems
from opscore.workflows.references import reference_problems

WORKFLOW_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
TASK_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

WorkflowName = Annotated[str, Field(pattern=WORKFLOW_NAME_PATTERN, description="The workflow_id.")]
TaskId = Annotated[str, Field(pattern=TASK_ID_PATTERN, description="Unique within the template.")]

# Sizes of inputs as stored (canonical JSON, UTF-8), which can be larger than the body that carried them (`1E5` is
# stored as 100000.0, YAML's `~` as null). A task's input, its references resolved, stays within MAX_TASK_INPUT_BYTES
# (the task's item in DynamoDB, 400 KB, holds it beside the session's input and the result); a template's inputs
# together within MAX_TEMPLATE_INPUT_BYTES, so that they and a session's input (MAX_SESSION_INPUT_BYTES) fit in the
# session runner's execution input, which Step Functions limits to 256 KiB.
MAX_TASK_INPUT_BYTES = 64 * 1024
MAX_TEMPLATE_INPUT_BYTES = 128 * 1024
MAX_SESSION_INPUT_BYTES = 64 * 1024


def json_size(value: object) -> int:
    """Bytes of the value as Ops-Core stores and passes it."""
    return len(canonical_json(value).encode())


class RetryPolicy(RequestModel):
    max_retries: Integer = Field(default=0, ge=0, le=10, description="Attempts after the first one.")
    backoff_seconds: Integer = Field(
        default=1, ge=0, le=3600, description="Wait before the first retry (Step Functions waits at least 1 s: 0 is 1)."
    )
    backoff_rate: float = Field(default=2.0, ge=1.0, le=10.0, description="Each later wait is this times longer.")


class TaskTemplate(RequestModel):
    id: TaskId
    action: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", description="What the agent does."
    )
    input: JsonObject = Field(
        default_factory=dict,
        description=(
            'The task\'s input. Any value in it may be a reference, {"$from": PATH} (or a list of paths, the first '
            'with a value winning) with an optional "default", replaced when the task is queued by the value at '
            "PATH: input.KEY... (the session's input), tasks.ID.output.KEY... (the output of a task that runs before "
            "this one), failed.error.type|message or failed.task (in a fallback: the task it stands in for)."
        ),
    )
    priority: OptionalInteger = Field(
        default=None, ge=0, le=9, description="9 most urgent; default: the trigger's priority, else 5."
    )
    delay_seconds: Integer = Field(
        default=0, ge=0, le=604_800, description="Wait before the task is queued (at most 7 days)."
    )
    timeout_seconds: Integer = Field(
        default=300, ge=1, le=86_400, description="Per attempt, from the moment it is queued (queue wait and work)."
    )
    heartbeat_seconds: OptionalInteger = Field(
        default=None,
        ge=1,
        le=86_399,  # below timeout_seconds, whose maximum is 86400
        description=(
            "The lease, renewed by each heartbeat; must be less than timeout_seconds (a 400 names it otherwise). "
            "Default: timeout_seconds."
        ),
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    fallback: TaskId | None = Field(
        default=None,
        description=(
            "Task run instead when this one still fails after its retries. A task runs once on the main line (unless "
            "fallback_only) and once for each run of a task naming it as fallback (down fallback chains), each run up "
            "to retry.max_retries + 1 attempts; its item keeps a record of each, at most 31 in a session (DynamoDB's "
            "400 KB item limit): a template that could pass that is refused, a 400 of type too_many_attempts naming "
            "the fallback that takes a task past it."
        ),
    )
    fallback_only: bool = Field(default=False, description="Runs only as some task's fallback.")

    @field_validator("input")
    @classmethod
    def _input_size(cls, value: dict[str, object]) -> dict[str, object]:
        if json_size(value) > MAX_TASK_INPUT_BYTES:
            raise ValueError(f"input must serialise to at most {MAX_TASK_INPUT_BYTES} bytes")
        return value

    @field_validator("heartbeat_seconds")
    @classmethod
    def _heartbeat_within_timeout(cls, value: int | None, info: ValidationInfo) -> int | None:
        timeout = info.data.get("timeout_seconds")  # absent when timeout_seconds itself was invalid
        if value is not None and timeout is not None and value >= timeout:
            raise ValueError("heartbeat_seconds must be less than timeout_seconds")
        return value


class WorkflowTemplate(RequestModel):
    name: WorkflowName
    description: Prose | None = Field(default=None, max_length=1024)
    tasks: list[TaskTemplate] = Field(min_length=1, max_length=100, description="Run in this order.")

    @field_validator("tasks")
    @classmethod
    def _inputs_size(cls, value: list[TaskTemplate]) -> list[TaskTemplate]:
        total = sum(json_size(task.input) for task in value)
        if total > MAX_TEMPLATE_INPUT_BYTES:
            raise ValueError(
                f"the tasks' inputs serialise to {total} bytes together, over the {MAX_TEMPLATE_INPUT_BYTES} allowed"
            )
        return value

    def canonical(self) -> str:
        """One spelling per template, defaults included: templates that mean the same are the same text."""
        return canonical_json(self.model_dump(mode="json"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


def check_template(template: WorkflowTemplate, prefix: str = "") -> None:
    """Refuse what the model alone cannot see: duplicate ids, unknown or circular fallbacks, a task that could keep
    more attempt records than its item holds (opscore.workflows.attempt_history), nothing to run, references to tasks
    that do not run before the task that reads them.

    `prefix` places the paths inside a larger body (a template sent inline with a trigger, say).
    """
    first_index: dict[str, int] = {}
    for index, task in enumerate(template.tasks):
        first_index.setdefault(task.id, index)
    problems = _duplicate_ids(template, first_index, prefix) + _fallback_problems(template, first_index, prefix)
    if not problems:  # runs are counted along fallbacks, which must then exist and end
        problems = history_problems(template, prefix)
    problems += reference_problems(template.tasks, lambda index: f"{prefix}tasks.{index}.input")
    if all(task.fallback_only for task in template.tasks):
        problems.append(
            FieldProblem(f"{prefix}tasks", "at least one task must not be fallback_only", type="nothing_to_run")
        )
    if problems:
        raise ValidationFailed("the workflow template is not valid", problems)


def _duplicate_ids(template: WorkflowTemplate, first_index: dict[str, int], prefix: str) -> list[FieldProblem]:
    return [
        FieldProblem(f"{prefix}tasks.{index}.id", f"repeats the id of tasks.{first_index[task.id]}", type="duplicate")
        for index, task in enumerate(template.tasks)
        if first_index[task.id] != index
    ]


def _fallback_problems(template: WorkflowTemplate, first_index: dict[str, int], prefix: str) -> list[FieldProblem]:
    # The first task with an id defines it, as for the duplicate check.
    fallbacks = {
        task.id: task.fallback
        for index, task in enumerate(template.tasks)
        if task.fallback is not None and first_index[task.id] == index
    }
    problems = []
    for index, task in enumerate(template.tasks):
        where = f"{prefix}tasks.{index}.fallback"
        if task.fallback is None:
            continue
        if task.fallback not in first_index:
            problems.append(
                FieldProblem(where, f"{task.fallback!r} is not a task of this template", type="unknown_task")
            )
        elif _leads_back(task.id, fallbacks):
            problems.append(FieldProblem(where, f"following fallbacks from {task.id!r} leads back to it", type="cycle"))
    return problems


def _leads_back(start: str, fallbacks: dict[str, str]) -> bool:
    seen: set[str] = set()
    current = fallbacks.get(start)
    while current is not None and current not in seen:
        if current == start:
            return True
        seen.add(current)
        current = fallbacks.get(current)
    return False
