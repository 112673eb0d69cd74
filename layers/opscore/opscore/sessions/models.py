"""API contracts of sessions: the trigger, ad-hoc tasks, the session and task views, task ids."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from opscore.agents.models import Quarantine
from opscore.core.contracts import JsonObject, NotNull, OptionalInteger, RequestModel, ResponseModel
from opscore.workflows.templates import (
    MAX_SESSION_INPUT_BYTES,
    TaskId,
    TaskTemplate,
    WorkflowName,
    WorkflowTemplate,
    json_size,
)

# Session ids start with the creation time in microseconds (hex), so they sort by age: newest first is one Query.
SESSION_ID_PATTERN = r"^[0-9a-f]{32}$"


# A task's id is its session's id and its place in the template: it finds the task item with one GetItem.
TASK_ID_PATTERN = r"^[0-9a-f]{32}-[0-9]{3}$"


_TASK_ID = re.compile(TASK_ID_PATTERN)


def task_id(session_id: str, index: int) -> str:
    return f"{session_id}-{index:03d}"


def split_task_id(value: str) -> tuple[str, int] | None:
    if not _TASK_ID.fullmatch(value):
        return None
    session_id, _, index = value.partition("-")
    return session_id, int(index)


class SessionStatus(StrEnum):
    WAITING = "waiting"
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in {SessionStatus.COMPLETED, SessionStatus.ERROR, SessionStatus.CANCELLED}


class TaskStatus(StrEnum):
    PENDING = "pending"  # not reached yet
    SCHEDULED = "scheduled"  # waiting out its delay before dispatch
    QUEUED = "queued"  # in its agent's queue, waiting until the agent can take it
    LEASED = "leased"  # handed to the agent under a lease; the runner waits for its result
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"  # an attempt failed or timed out; the next one waits out its backoff
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # the session ended without running it

    @property
    def open(self) -> bool:
        """Started and not finished: what a cancel has to close."""
        return self in {TaskStatus.SCHEDULED, TaskStatus.QUEUED, TaskStatus.LEASED, TaskStatus.RETRYING}


class TriggerRequest(RequestModel):
    """POST /agent/{agentId}/workflow: a stored workflow (by id, optionally version) or a template sent inline."""

    workflow_id: Annotated[WorkflowName | None, NotNull] = None
    version: Annotated[OptionalInteger, NotNull] = Field(
        default=None, ge=1, le=9_999_999_999, description="Default: the workflow's latest version."
    )
    template: Annotated[WorkflowTemplate | None, NotNull] = Field(
        default=None, description="Stored as a workflow version first."
    )
    input: JsonObject = Field(default_factory=dict, description="Passed to every task beside its own input.")
    priority: Annotated[OptionalInteger, NotNull] = Field(
        default=None, ge=0, le=9, description="For tasks that set none; default 5."
    )

    @field_validator("input")
    @classmethod
    def _input_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if json_size(value) > MAX_SESSION_INPUT_BYTES:
            raise ValueError(f"input must serialise to at most {MAX_SESSION_INPUT_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _one_workflow(self) -> Self:
        if (self.workflow_id is None) == (self.template is None):
            raise ValueError("send either workflow_id or template")
        if self.version is not None and self.workflow_id is None:
            raise ValueError("version goes with workflow_id")
        return self


class Problem(ResponseModel):
    type: str
    message: str
    task_id: str | None = None
    retryable: bool | None = Field(
        default=None,
        exclude_if=lambda retryable: retryable is None,
        description="Present (false) when the agent said its failure was not worth retrying: no retry followed.",
    )


class SessionStarted(ResponseModel):
    session_id: str
    status: SessionStatus
    workflow_id: str
    version: int
    quarantine: Quarantine | None = Field(
        default=None,
        description=(
            "The agent's quarantine when it is quarantined (null otherwise): the session is accepted, but its tasks "
            "fail over to their fallbacks until the agent is half-open."
        ),
    )


class AttemptRecord(ResponseModel):
    attempt: int
    status: TaskStatus
    started_at: str
    ended_at: str | None = None
    error: Problem | None = None
    # When the attempt was put in its agent's queue (its start) and leased (None: it never was); kept from 2026-12 on,
    # so older records have neither.
    queued_at: str | None = None
    leased_at: str | None = None
    delay_seconds: int = Field(default=0, description="The delay its run waited out before this attempt was queued.")
    retry_at: str | None = Field(default=None, description="On a retried attempt: when the next one is queued.")


class TaskView(ResponseModel):
    task_id: str
    id: str = Field(description="The task's id in the template.")
    action: str
    status: TaskStatus
    attempts: int = Field(description="Dispatches so far, over every run of the task.")
    priority: int | None
    input: dict[str, Any] | None = Field(description="The template's input for the task; null until queued.")
    started_at: str | None
    ended_at: str | None
    duration_ms: int | None
    scheduled_for: str | None = Field(description="When a scheduled or retrying task is queued.")
    output: dict[str, Any] | None
    error: Problem | None
    fallback_only: bool
    fallback_for: list[str] = Field(description="Template ids of the tasks this one ran in place of.")
    history: list[AttemptRecord]


class SessionSummary(ResponseModel):
    session_id: str
    agent_id: str
    workflow_id: str
    version: int
    status: SessionStatus
    priority: int | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    error: Problem | None


class SessionView(SessionSummary):
    input: dict[str, Any]
    tasks: list[TaskView]


class SessionPage(ResponseModel):
    items: list[SessionSummary]
    next_token: str | None = Field(
        default=None, exclude_if=lambda token: token is None, description="Present when more sessions follow."
    )


class AdHocTask(TaskTemplate):
    """POST /agent/{agentId}/tasks: one task, run as a session of its own. `id` names it in that session."""

    id: TaskId = "task"

    @field_validator("fallback")
    @classmethod
    def _nothing_to_fall_back_to(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("an ad-hoc task is alone in its session: there is no task to fall back to")
        return value

    @field_validator("fallback_only")
    @classmethod
    def _runs(cls, value: bool) -> bool:
        if value:
            raise ValueError("an ad-hoc task always runs; it cannot be fallback_only")
        return value


class TaskStarted(SessionStarted):
    task_id: str
