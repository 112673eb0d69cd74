"""API contracts of an agent's work: the leased task, the queue view, heartbeats and results."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from opscore.core.contracts import (
    JsonObject,
    NotNull,
    OptionalInteger,
    Prose,
    RequestModel,
    ResponseModel,
    canonical_json,
)

# A result's output, as stored on its task (twice: the output and the result as sent) beside the task's input and the
# session's input, each within 64 KiB: the task item stays below DynamoDB's 400 KB (docs/security.md, Limits on input).
MAX_OUTPUT_BYTES = 64 * 1024


class ReportedError(RequestModel):
    type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    message: Prose = Field(default="", max_length=2048)
    fault: Literal["task", "agent"] | None = Field(
        default=None,
        description=(
            'Whose failure it is: "task" (the default: the work failed, and the task\'s retries absorb it) or '
            '"agent" (the agent itself is unwell: a crashed tool, out of memory), which counts toward its quarantine.'
        ),
    )

    retryable: bool = Field(
        default=True,
        # The default is kept as absent, as `fault`'s is: the same result reads the same with or without it.
        exclude_if=lambda retryable: retryable,
        description=(
            "false: the failure is not worth retrying (the input is invalid, the target does not exist): the task's "
            "remaining retries are skipped and its fallback runs, or the session ends in error."
        ),
    )

    @field_validator("fault", mode="before")
    @classmethod
    def _named_when_given(cls, value: object) -> object:
        if value is None:  # the spec's enum has no null: leave the field out for "task"
            raise ValueError('fault is "task" or "agent" (leave it out for "task")')
        return value

    @field_validator("fault")
    @classmethod
    def _task_is_the_default(cls, value: str | None) -> str | None:
        """The default, "task", is kept as absent: the same result reads the same with or without it."""
        return None if value == "task" else value


class TaskResult(RequestModel):
    """POST /agent/{agentId}/tasks/{taskId}/result."""

    status: Literal["succeeded", "failed"]
    output: Annotated[JsonObject | None, NotNull] = None
    error: Annotated[ReportedError | None, NotNull] = None
    attempt: Annotated[OptionalInteger, NotNull] = Field(
        default=None, ge=1, description="The attempt this result is for; guards against a late duplicate."
    )

    @field_validator("output")
    @classmethod
    def _output_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # A webhook's answer may be larger than a request body: the stored output stays within the same limit.
        if value is not None and len(canonical_json(value).encode()) > MAX_OUTPUT_BYTES:
            raise ValueError(f"output must serialise to at most {MAX_OUTPUT_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _matches_status(self) -> Self:
        if self.status == "succeeded" and self.error is not None:
            raise ValueError("a succeeded result has no error")
        if self.status == "failed" and self.error is None:
            raise ValueError("a failed result needs an error")
        if self.status == "failed" and self.output is not None:
            raise ValueError("a failed result has no output")
        return self


class TaskResultAccepted(ResponseModel):
    task_id: str
    session_id: str
    status: Literal["succeeded", "failed"]
    attempt: int


class TaskHeartbeat(ResponseModel):
    task_id: str
    attempt: int
    lease_expires_at: str


class LeasedTask(ResponseModel):
    """A task handed to its agent: what `POST .../tasks/next` answers, and what a webhook delivers."""

    task_id: str
    session_id: str
    action: str
    input: dict[str, Any] = Field(description="The task's own input from the template.")
    session_input: dict[str, Any] = Field(description="The trigger's input, shared by every task of the session.")
    priority: int
    attempt: int = Field(description="Send it back with the result.")
    lease_expires_at: str = Field(description="Heartbeat before then, or the attempt counts as failed.")
    heartbeat_seconds: int | None = Field(
        description="Each heartbeat renews the lease for this long; null: the lease lasts the attempt, no heartbeat."
    )
    timeout_seconds: int = Field(description="The attempt's time, from being queued (queue wait and work).")
    attempt_deadline: str | None = Field(
        description="When the attempt's time runs out: no lease, heartbeat or result counts after it."
    )
    probe: bool = Field(
        default=False,
        exclude_if=lambda probe: not probe,
        description="Present (true) on a quarantined agent's probe task: its success lifts the quarantine.",
    )


QUEUE_STATUSES = ("queued", "leased")


class QueuedTask(ResponseModel):
    task_id: str
    session_id: str
    action: str
    status: Literal["queued", "leased"]
    priority: int
    attempt: int
    enqueued_at: str
    lease_expires_at: str | None


class QueuePage(ResponseModel):
    items: list[QueuedTask]
    next_token: str | None = Field(
        default=None, exclude_if=lambda token: token is None, description="Present when more tasks follow."
    )
