"""updateSession and dispatch: what the runner's Lambda tasks do at each transition of a session.

The state machine carries `RunnerState` (the session, its plan and the current step) and calls:
- `started` once: the session goes processing, and the first step is returned;
- `dispatch` per attempt, with the task token: the attempt is queued on its agent (the agent leases it, then
  reports its result, which closes the token);
- `succeeded` / `failed` when the attempt's wait ends: its outcome is recorded and the next step is returned.
The next step comes from opscore.sessions.plan; here it is only recorded. Every write is guarded by the session's
status (a cancelled session never moves again) and by the step's sequence number (a retried call writes nothing
new), so Step Functions may retry any of these calls.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from opscore.aws.dynamodb import ConditionFailed
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json, parse_json
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import attempts
from opscore.dispatch.models import TaskResult
from opscore.dispatch.queue import queue_rank
from opscore.dispatch.results import tell_runner
from opscore.sessions.errors import (
    AGENT_FAILED_ERROR,
    AGENT_OFFLINE_ERROR,
    AGENT_QUARANTINED_ERROR,
    DELIVERY_FAILED_ERROR,
    LEASE_EXPIRED_ERROR,
    SESSION_CANCELLED_ERROR,
)
from opscore.sessions.models import AttemptRecord, Problem, SessionStatus, TaskStatus, task_id
from opscore.sessions.plan import SessionPlan, Step, TaskError, after_failure, after_success, first_step
from opscore.sessions.records import TaskRecord, TaskRef
from opscore.sessions.store import SessionStore
from opscore.sessions.writes import Dispatch, SessionEnd, TaskMark, TaskOutcome

if TYPE_CHECKING:
    from opscore.dispatch.health import AgentHealth

# Ends of a lease a record may meet before it can be written (one is the usual case: a runner timeout).
MAX_LEASE_ENDINGS = 3
# What Ops-Core's own failures say when Step Functions did not carry their cause (moto drops it).
OPSCORE_FAILURES = {
    LEASE_EXPIRED_ERROR: "no heartbeat or result before the lease ran out",
    AGENT_OFFLINE_ERROR: "the agent went offline holding the lease",
    DELIVERY_FAILED_ERROR: "the task could not be delivered to the agent",
    AGENT_QUARANTINED_ERROR: "the agent was quarantined while the task waited in its queue",
}


class Failure(BaseModel):
    """What a Catch puts in the state: the error name and its cause."""

    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(default=None, alias="Cause")  # moto drops the cause of SendTaskFailure


class RunnerState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str
    agent_id: str
    plan: SessionPlan
    step: Step | None = None
    failure: Failure | None = None

    def current(self) -> Step:
        if self.step is None or self.step.kind != "dispatch" or self.step.task_index is None:
            raise ValueError("the runner state has no dispatched step")
        return self.step


class SessionRunner:
    def __init__(
        self,
        store: SessionStore,
        runner: RunnerControl,
        health: AgentHealth,
        wake: Callable[[str], object],
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._runner = runner
        self._health = health
        self._wake = wake  # serves an agent's queue when a lease ending here frees its slot
        self._now = now

    def started(self, state: RunnerState) -> Step:
        step = first_step(state.plan)
        now = self._now()
        if not self._store.begin(state.session_id, format_timestamp(now), self._mark(state, step, None, now)):
            session = self._store.get_session(state.session_id)
            if session is None or session.status is not SessionStatus.PROCESSING:
                return _cancelled(step)
        logger.info("session processing", extra={"session_id": state.session_id, "old_status": "waiting"})
        return step

    def dispatch(self, state: RunnerState, token: str) -> str:
        step = state.current()
        task = state.plan.tasks[step.task_index or 0]
        fallback_for = state.plan.tasks[step.fallback_for].id if step.fallback_for is not None else None
        now = self._now()
        outcome = self._store.dispatch(
            state.session_id,
            Dispatch(
                index=task.index,
                template_id=task.id,
                agent_id=state.agent_id,
                sequence=step.sequence,
                token=token,
                action=task.action,
                input_json=canonical_json(task.input),
                session_input_json=canonical_json(state.plan.session_input),
                priority=task.priority,
                fallback_for=fallback_for,
                now=format_timestamp(now),
                queue_rank=queue_rank(now, task.priority),
                # The lease is renewed by heartbeats when the task asks for them, else it lasts the whole attempt.
                lease_seconds=task.heartbeat_seconds or task.timeout_seconds,
            ),
        )
        if outcome == "session_ended":
            # Cancelled meanwhile: end the wait at once rather than let the attempt run into its timeout.
            self._runner.fail(token, SESSION_CANCELLED_ERROR, "the session was cancelled")
        elif outcome == "repeated":
            self._forward_kept_result(state, step, token)
        logger.info(
            "task queued" if outcome != "session_ended" else "task not queued: session ended",
            extra={
                "session_id": state.session_id,
                "task_id": task_id(state.session_id, task.index),
                "attempt": step.attempt,
                "action": task.action,
                "priority": task.priority,
            },
        )
        return outcome

    def _forward_kept_result(self, state: RunnerState, step: Step, token: str) -> None:
        """A retried dispatch replaced the token: a result the agent reported meanwhile goes to the new one."""
        task = self._store.get_task(state.session_id, step.task_index or 0)
        kept = task.result_for(step.sequence) if task is not None else None
        if kept is not None:
            tell_runner(self._runner, token, TaskResult.model_validate_json(kept))

    def succeeded(self, state: RunnerState) -> Step:
        step = state.current()
        task = self._task(state, step)
        result = parse_json(task.result_for(step.sequence))
        output = result.get("output") if isinstance(result, dict) else None
        return self._record(state, step, task=task, status=TaskStatus.SUCCEEDED, problem=None, output=output)

    def failed(self, state: RunnerState) -> Step:
        step = state.current()
        failure = state.failure or Failure(error="States.Runtime", cause="the runner lost the failure")
        if failure.error == SESSION_CANCELLED_ERROR:
            return _cancelled(step)
        task = self._task(state, step)
        timeout_seconds = state.plan.tasks[step.task_index or 0].timeout_seconds
        problem = failure_problem(failure, task, step.sequence, timeout_seconds)
        status = TaskStatus.TIMED_OUT if TaskError(error=failure.error).timed_out else TaskStatus.FAILED
        return self._record(state, step, task=task, status=status, problem=problem, output=None)

    def runner_failed(self, state: RunnerState) -> Step:
        """The runner itself could not go on (a transition could not be recorded): end the session in error."""
        failure = state.failure or Failure(error="States.Runtime", cause="unknown")
        problem = Problem(type=failure.error, message=(failure.cause or "")[:2048])
        stamp = format_timestamp(self._now())
        self._store.end_open(
            state.session_id, SessionEnd(SessionStatus.ERROR, stamp, canonical_json(problem.model_dump()))
        )
        logger.error("session runner failed", extra={"session_id": state.session_id, "error_type": failure.error})
        metrics.add_metric(name="SessionRunnerFailures", unit=MetricUnit.Count, value=1)
        return Step(kind="failed", failure=TaskError(error=problem.type, cause=problem.message))

    def _record(
        self,
        state: RunnerState,
        step: Step,
        *,
        task: TaskRecord,
        status: TaskStatus,
        problem: Problem | None,
        output: dict[str, Any] | None,
    ) -> Step:
        if problem is None:
            following = after_success(state.plan, step)
        else:
            following = after_failure(state.plan, step, TaskError(error=problem.type, cause=problem.message))
        now = self._now()
        outcome = attempt_outcome(task, step, following, status=status, problem=problem, output=output, now=now)
        stamp = outcome.ended_at
        end = self._end(state, following, stamp)
        mark = None if outcome.status == TaskStatus.RETRYING else self._mark(state, following, step, now)
        if not self._record_outcome(state, step, outcome, mark, end, stamp):
            session = self._store.get_session(state.session_id)
            if end is not None and session is not None and session.status == end.status:
                return following  # a retried call of the one that ended the session
            return _cancelled(following)
        _log_recorded(state.session_id, task, outcome=outcome, status=status, problem=problem, end=end)
        return following

    def _record_outcome(  # noqa: PLR0917 - the parts of one transaction
        self,
        state: RunnerState,
        step: Step,
        outcome: TaskOutcome,
        mark: TaskMark | None,
        end: SessionEnd | None,
        stamp: str,
    ) -> bool:
        """Write the outcome; an attempt that timed out in the runner while leased ends its lease first."""
        for _ in attempts(MAX_LEASE_ENDINGS):
            try:
                return self._store.record(state.session_id, outcome, mark, end, stamp)
            except ConditionFailed:
                ref = TaskRef(state.session_id, outcome.index, step.sequence)
                # The agent held it to the end: a failed attempt of that agent (and its slot comes back).
                if not self._health.end_lease(state.agent_id, ref, status=None, error=None):
                    raise
                self._wake(state.agent_id)
        raise ConditionFailed

    def _task(self, state: RunnerState, step: Step) -> TaskRecord:
        task = self._store.get_task(state.session_id, step.task_index or 0)
        if task is None:
            raise LookupError(f"session {state.session_id} has no record of task {step.task_index}")
        return task

    def _end(self, state: RunnerState, step: Step, stamp: str) -> SessionEnd | None:
        if step.kind == "completed":
            return SessionEnd(status=SessionStatus.COMPLETED, ended_at=stamp)
        if step.kind == "failed" and step.failure is not None:
            problem = Problem(
                type=step.failure.error,
                message=step.failure.cause,
                task_id=task_id(state.session_id, step.task_index or 0),
            )
            return SessionEnd(
                status=SessionStatus.ERROR, ended_at=stamp, error_json=canonical_json(problem.model_dump())
            )
        return None

    def _mark(self, state: RunnerState, step: Step, previous: Step | None, now: datetime) -> TaskMark | None:
        """A task that waits before its dispatch shows as scheduled meanwhile."""
        if step.kind != "dispatch" or step.wait_seconds <= 0 or step.task_index is None:
            return None
        if previous is not None and previous.task_index == step.task_index:
            # A retry (the outcome itself says retrying), or the same task's next run: one transaction may not
            # write its item twice, so that run shows its last outcome until it is dispatched.
            return None
        return TaskMark(
            index=step.task_index,
            template_id=state.plan.tasks[step.task_index].id,
            status=TaskStatus.SCHEDULED,
            scheduled_for=format_timestamp(now + timedelta(seconds=step.wait_seconds)),
        )


def _cancelled(step: Step) -> Step:
    return Step(kind="cancelled", sequence=step.sequence + 1)


def _milliseconds(since: str, now: datetime) -> int:
    started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    return max(0, int((now - started).total_seconds() * 1000))


def _timeout_message(timeout_seconds: int) -> str:
    return f"no result within {timeout_seconds} s of being queued"


def failure_problem(failure: Failure, task: TaskRecord, sequence: int, timeout_seconds: int) -> Problem:
    """What went wrong with the attempt dispatched at `sequence`, as the session will show it.

    The agent's own error when it reported one; for Ops-Core's failures the cause Step Functions carried, else the
    one kept on the task, else a standard sentence; for a runner timeout, the attempt's timeout.
    """
    reported = parse_json(task.result_for(sequence))
    if failure.error == AGENT_FAILED_ERROR and isinstance(reported, dict) and reported.get("error"):
        return Problem(type=reported["error"]["type"], message=reported["error"].get("message", ""))
    if failure.error in OPSCORE_FAILURES:
        message = failure.cause or task.cause_for(sequence) or OPSCORE_FAILURES[failure.error]
        return Problem(type=failure.error, message=message)
    if TaskError(error=failure.error).timed_out:
        return Problem(type=failure.error, message=_timeout_message(timeout_seconds))
    return Problem(type=failure.error, message=failure.cause or "")


def is_retry(step: Step, following: Step, failed: bool) -> bool:
    """A retry is the same run's next attempt; the same task next on the main line (after it ran as a fallback) is
    a new run, not a retry."""
    return (
        failed
        and following.kind == "dispatch"
        and following.task_index == step.task_index
        and following.attempt == step.attempt + 1
    )


def attempt_outcome(
    task: TaskRecord,
    step: Step,
    following: Step,
    *,
    status: TaskStatus,
    problem: Problem | None,
    output: dict[str, Any] | None,
    now: datetime,
) -> TaskOutcome:
    """How the attempt ended, as written: `retrying` (with when) if the next step retries it, else `status`."""
    stamp = format_timestamp(now)
    retrying = is_retry(step, following, failed=problem is not None)
    attempt = task.attempts or 1
    attempt_started = task.attempt_started_at or stamp
    record = AttemptRecord(attempt=attempt, status=status, started_at=attempt_started, ended_at=stamp, error=problem)
    return TaskOutcome(
        index=step.task_index or 0,
        sequence=step.sequence,
        attempt=attempt,
        status=TaskStatus.RETRYING if retrying else status,
        ended_at=stamp,
        duration_ms=_milliseconds(task.started_at or attempt_started, now),
        attempt_record_json=canonical_json(record.model_dump(mode="json")),
        output_json=canonical_json(output) if output is not None else None,
        error_json=canonical_json(problem.model_dump(mode="json")) if problem is not None else None,
        scheduled_for=format_timestamp(now + timedelta(seconds=following.wait_seconds)) if retrying else None,
    )


def _log_recorded(
    session_id: str,
    task: TaskRecord,
    *,
    outcome: TaskOutcome,
    status: TaskStatus,
    problem: Problem | None,
    end: SessionEnd | None,
) -> None:
    logger.info(
        "task attempt ended",
        extra={
            "session_id": session_id,
            "task_id": task_id(session_id, outcome.index),
            "attempt": outcome.attempt,
            "old_status": task.status.value if task.status is not None else None,
            "new_status": outcome.status,
            "error_type": problem.type if problem else None,
        },
    )
    metrics.add_metric(name=f"Tasks{status.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
    if end is not None:
        logger.info(
            "session ended", extra={"session_id": session_id, "old_status": "processing", "new_status": end.status}
        )
        metrics.add_metric(name=f"Sessions{end.status.title()}", unit=MetricUnit.Count, value=1)
