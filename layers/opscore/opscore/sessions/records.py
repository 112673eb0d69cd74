"""Sessions and tasks as the rules see them: typed records built by the stores, and the rules derived from them.

A `TaskRecord` is one task item: the template task, its current attempt (told apart by `dispatch_seq`, which counts
the task's dispatches), the run it belongs to and that run's route, the lease while it has one, the agent's result
and the attempt history. Reads of the agents' queue indexes give the same record with only the projected fields set.
Nothing outside the stores sees an item; the questions asked of a task (is this the attempt, was a result kept for
it) are answered here once.
"""

from typing import Any, NamedTuple

from opscore.sessions.models import AttemptRecord, Problem, SessionStatus, TaskStatus, task_id

# The lease when a task item carries none (items written before leases had their own length).
DEFAULT_LEASE_SECONDS = 300
# Records are NamedTuples, not frozen dataclasses: defining one costs a cold start about a third as much, and a record
# is built only by a store and never changed. Their dict defaults are shared, so nothing may write into them.
EMPTY: dict[str, Any] = {}


class TaskRef(NamedTuple):
    """One attempt of one task: the attempt is told apart by its dispatch's number (`dispatch_seq`)."""

    session_id: str
    index: int  # type: ignore[assignment]  # the task's place in the template, not tuple.index
    sequence: int

    @property
    def task_id(self) -> str:
        return task_id(self.session_id, self.index)


class TemplateTask(NamedTuple):
    """What the session keeps of each template task, in template order (its task items are written when reached)."""

    id: str
    action: str
    fallback_only: bool = False


class SessionRecord(NamedTuple):
    session_id: str
    agent_id: str
    workflow_id: str = ""
    version: int = 0
    status: SessionStatus = SessionStatus.WAITING
    priority: int | None = None
    created_at: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    error: Problem | None = None
    # Not in the AgentSessions index: set by reads of the session item itself.
    input: dict[str, Any] = EMPTY
    tasks: tuple[TemplateTask, ...] = ()
    execution_arn: str = ""


class TaskRecord(NamedTuple):
    session_id: str
    index: int  # type: ignore[assignment]  # the task's place in the template, not tuple.index
    template_id: str = ""
    agent_id: str = ""
    status: TaskStatus | None = None  # None: the runner has not reached the task
    attempts: int = 0
    dispatch_seq: int = 0
    action: str = ""
    input: dict[str, Any] | None = None
    session_input: dict[str, Any] = EMPTY
    priority: int | None = None
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    lease_expires_at: str | None = None
    enqueued_at: str | None = None
    leased_at: str | None = None  # when the current attempt was leased (None: it has not been)
    started_at: str | None = None
    attempt_started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int | None = None
    scheduled_for: str | None = None
    output: dict[str, Any] | None = None
    error: Problem | None = None
    # Each ended attempt's record, as stored (JSON), by attempt number: parsed only by what shows it.
    attempt_records: dict[int, str] = {}  # noqa: RUF012 - shared and never written: records are read-only
    fallback_for: tuple[str, ...] = ()
    fallback_cause: Problem | None = None  # the error of the task it stands in for, kept as it was queued
    queued_as_fallback: bool = False
    task_token: str | None = None
    # The agent's result as kept (canonical JSON), the runner step it answers and the attempt it was reported for.
    result_json: str | None = None
    result_seq: int | None = None
    result_attempt: int | None = None
    agent_offline_after: int | None = None
    # The run this attempt belongs to (its state in the runner, and when the state was entered), the attempt's number
    # within that run, the run's route (JSON of opscore.sessions.plan.TaskRoute), and when the runner's timeout for
    # the attempt runs out.
    run: str | None = None
    run_attempt: int = 0
    route_json: str | None = None
    attempt_deadline: str | None = None
    # The dispatch whose lease was its half-open agent's probe (see opscore.dispatch.queue).
    probe_seq: int | None = None
    # The entry's place in its agent's queue index: a queue rank, or a lease expiry, then the task id.
    queue_position: str = ""

    @property
    def ref(self) -> TaskRef:
        return TaskRef(self.session_id, self.index, self.dispatch_seq)

    @property
    def task_id(self) -> str:
        return task_id(self.session_id, self.index)

    @property
    def has_result(self) -> bool:
        """The current attempt has a kept result."""
        return self.result_seq is not None and self.result_seq == self.dispatch_seq

    @property
    def history(self) -> list[AttemptRecord]:
        """Every ended attempt, oldest first."""
        return [
            AttemptRecord.model_validate_json(self.attempt_records[number]) for number in sorted(self.attempt_records)
        ]

    def attempt(self, number: int) -> AttemptRecord | None:
        stored = self.attempt_records.get(number)
        return AttemptRecord.model_validate_json(stored) if stored is not None else None

    def past_deadline(self, now: str) -> bool:
        """The attempt's time in the runner has run out by `now` (a stored timestamp): the runner no longer waits."""
        return self.attempt_deadline is not None and self.attempt_deadline <= now

    @property
    def refused(self) -> bool:
        """An attempt recorded with its error and no queue entry (its input did not resolve), not yet ended."""
        return self.status is TaskStatus.QUEUED and self.error is not None and not self.queue_position

    @property
    def probing(self) -> bool:
        """The current attempt was leased as its quarantined agent's probe: its end decides the breaker."""
        return self.probe_seq is not None and self.probe_seq == self.dispatch_seq

    def queued_for(self, ref: TaskRef) -> bool:
        return self.status is TaskStatus.QUEUED and self.ref == ref

    def leased_for(self, ref: TaskRef) -> bool:
        return self.status is TaskStatus.LEASED and self.ref == ref
