"""What the session store writes, as the runner and the services hand it over: one typed value per kind of write.

NamedTuples with evaluated annotations (no `from __future__ import annotations` here): the cheapest records to define
at a cold start.
"""

from typing import NamedTuple

from opscore.agents.records import CountedFailure
from opscore.sessions.models import SessionStatus, TaskStatus


class NewSession(NamedTuple):
    session_id: str
    agent_id: str
    workflow_id: str
    version: int
    priority: int | None
    input_json: str
    tasks_json: str  # [{"id", "action", "fallback_only"}] in template order
    created_at: str
    execution_arn: str
    triggered_by: str


class TaskMark(NamedTuple):
    """A task the runner will dispatch after a wait: shown as scheduled (first run) or retrying (after a failure)."""

    index: int  # type: ignore[assignment]  # the task's place in the template, not tuple.index
    template_id: str
    status: TaskStatus
    scheduled_for: str


class TaskOutcome(NamedTuple):
    """How one dispatched attempt ended, written once per attempt (a retried write repeats the same values)."""

    index: int  # type: ignore[assignment]  # the task's place in the template, not tuple.index
    sequence: int
    attempt: int
    status: TaskStatus
    ended_at: str
    duration_ms: int
    attempt_record_json: str
    output_json: str | None = None
    error_json: str | None = None
    scheduled_for: str | None = None


class SessionEnd(NamedTuple):
    status: SessionStatus
    ended_at: str
    error_json: str | None = None


class Dispatch(NamedTuple):
    """A new attempt, queued on its agent: `sequence` follows `previous_sequence` (0: the task's first attempt)."""

    index: int  # type: ignore[assignment]  # the task's place in the template, not tuple.index
    template_id: str
    agent_id: str
    sequence: int
    previous_sequence: int
    token: str
    action: str
    input_json: str
    session_input_json: str
    priority: int
    fallback_for: str | None
    now: str
    queue_rank: int
    lease_seconds: int
    run: str
    run_attempt: int
    route_json: str
    attempt_deadline: str
    begins: bool
    # Set (a Problem's JSON) for an attempt whose input did not resolve: recorded with that error and no queue entry,
    # so no agent can lease it, then ended at once.
    refusal_json: str | None = None
    # For a fallback: the error of the task it stands in for (a Problem's JSON), kept on it for its trace and spans.
    fallback_cause_json: str | None = None


class SavedResult(NamedTuple):
    session_id: str
    index: int  # type: ignore[assignment]  # the task's place in the template, not tuple.index
    sequence: int
    attempt: int
    agent_id: str
    result_json: str
    counted: CountedFailure | None  # a failure counted against the agent (its fault), kept with its failures
    now: str
