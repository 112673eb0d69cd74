"""An agent's answers for its leased tasks: the result of an attempt.

A result is recorded on the task, with the attempt's end, before the runner hears of it (SendTaskSuccess or
SendTaskFailure), so a repeat can be recognised: the same result again answers 200 and changes nothing, a different
one answers 409. The same write ends the lease, so the agent's slot is free at once, and completes the session when
the task was its last. A result is refused once the session has ended or the attempt's time in the runner has run
out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from opscore.agents.records import AttemptOutcome, CountedFailure
from opscore.aws.dynamodb import ConditionFailed
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Conflict, NotFound, Throttled
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import Backoff, attempts
from opscore.dispatch.errors import AttemptRequired, ResultConflict, TaskNotOpen
from opscore.dispatch.models import TaskResult, TaskResultAccepted
from opscore.sessions.attempts import AttemptEnd, agent_failure, failed, recorded, succeeded
from opscore.sessions.errors import AGENT_FAILED_ERROR, AGENT_FAILED_FINAL_ERROR
from opscore.sessions.models import TaskStatus, split_task_id
from opscore.sessions.records import TaskRecord
from opscore.sessions.store import SessionStore
from opscore.sessions.writes import SavedResult

if TYPE_CHECKING:
    from opscore.dispatch.health import AgentHealth


MAX_ATTEMPTS = 3
# The pause before reading the task again, after a write that lost its condition or met another transaction.
RESULT_BACKOFF = Backoff(0.01, 0.05)


class TaskResults:
    def __init__(
        self, store: SessionStore, runner: RunnerControl, health: AgentHealth, now: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._runner = runner
        self._health = health
        self._now = now

    def report(self, agent_id: str, task_id: str, result: TaskResult) -> TaskResultAccepted:
        session_id, index = locate_task(agent_id, task_id)
        result_json = canonical_json(result.model_dump(mode="json", exclude={"attempt"}, exclude_none=True))
        busy: Throttled | None = None
        for _ in attempts(MAX_ATTEMPTS, RESULT_BACKOFF):
            task = self._task(agent_id, task_id, session_id, index)
            now = self._now()
            known = known_answer(task, task_id, result, result_json, format_timestamp(now))
            if known is not None:
                if known.tell_again:
                    # The first call may have stopped between recording the result and moving the agent's breaker or
                    # telling the runner: do both again (each is safe to repeat; a closed token means it had heard).
                    self._health.attempt_ended(agent_id, task, outcome_of(result), _error_type(result))
                    if task.task_token is not None:
                        tell_runner(self._runner, task.task_token, result)
                return TaskResultAccepted(
                    task_id=task_id, session_id=session_id, status=result.status, attempt=known.attempt
                )
            self._health.heard_from(agent_id, task.agent_offline_after)
            ended = attempt_ended(task, result, result_json, now)
            try:
                saved = self._store.save_result(saved_result(task, agent_id, result, result_json, now), ended)
            except ConditionFailed:
                busy = None
                continue  # the task moved (a result, a timeout, a cancel) since it was read: decide again
            except Throttled as error:
                # The transaction met another on the agent's item or tallies (the ends of its other attempts write
                # them too), or the table throttled: nothing was written, so read and decide again after a pause.
                busy = error
                continue
            if not saved:
                raise TaskNotOpen(f"the session of task {task_id} has ended; it takes no more results")
            recorded(task, ended)
            # The breaker moves before the runner is told: a throttled answer to the runner fails this call, and the
            # agent's repeat (a known answer) tells the runner again without a second look at the breaker.
            self._health.attempt_ended(agent_id, task, outcome_of(result), _error_type(result))
            if task.task_token is not None:
                # A token closed meanwhile (the runner's timeout came first) is healed by the runner's next dispatch
                # of this task, which finds the run succeeded and passes the result on.
                tell_runner(self._runner, task.task_token, result)
            logger.info(
                "task result reported",
                extra={
                    "event": "result_reported",
                    "session_id": session_id,
                    "task_id": task_id,
                    "attempt": task.attempts,
                    "result": result.status,
                    "new": ended.outcome.status,
                },
            )
            metrics.add_metric(name="TaskResultsReported", unit=MetricUnit.Count, value=1)
            return TaskResultAccepted(
                task_id=task_id, session_id=session_id, status=result.status, attempt=task.attempts
            )
        if busy is not None:
            raise busy  # nothing recorded: a 429, and the agent sends the result again
        raise Conflict(f"task {task_id} is changing too fast to take this result now; send it again")

    def _task(self, agent_id: str, task_id: str, session_id: str, index: int) -> TaskRecord:
        task = self._store.get_task(session_id, index)
        # Another agent's task is answered as missing: task ids say nothing about who else has work.
        if task is None or task.agent_id != agent_id:
            raise NotFound(f"agent {agent_id} has no task {task_id}")
        return task


def saved_result(task: TaskRecord, agent_id: str, result: TaskResult, result_json: str, now: datetime) -> SavedResult:
    """The result as kept on its task, for the attempt the task is waiting on."""
    return SavedResult(
        session_id=task.session_id,
        index=task.index,
        sequence=task.dispatch_seq,
        attempt=task.attempts,
        agent_id=agent_id,
        result_json=result_json,
        counted=CountedFailure(format_timestamp(now), _error_type(result)) if outcome_of(result) == "counted" else None,
        now=format_timestamp(now),
    )


def outcome_of(result: TaskResult) -> AttemptOutcome:
    """A result as the agent's breaker sees it: a failure counts against the agent only when it says it is its own
    fault (`"fault": "agent"`); a task's own failure (the default) is its retries' business."""
    if result.error is None:
        return "succeeded"
    return "counted" if result.error.fault == "agent" else "failed"


def _error_type(result: TaskResult) -> str:
    return result.error.type if result.error is not None else ""


def attempt_ended(task: TaskRecord, result: TaskResult, result_json: str, now: datetime) -> AttemptEnd:
    """How the agent's result ends its attempt."""
    if result.status == "succeeded":
        return succeeded(task, result.output, now)
    return failed(task, agent_failure(result_json), runner_error(result), now)


def runner_error(result: TaskResult) -> str:
    """The failure name the runner is told of a failed result: one its retriers do not list when the agent said the
    failure is not worth retrying, so the task's remaining retries are skipped."""
    assert result.error is not None  # the model requires an error on a failed result
    return AGENT_FAILED_ERROR if result.error.retryable else AGENT_FAILED_FINAL_ERROR


class KnownAnswer(NamedTuple):
    """A result said before: the attempt it answers, and whether the runner may not have heard it yet."""

    attempt: int
    tell_again: bool = False


def known_answer(task: TaskRecord, task_id: str, result: TaskResult, result_json: str, now: str) -> KnownAnswer | None:
    """The attempt a repeated result answers for; None when the result is new for the open attempt.

    Raises when the result cannot be taken: a different result was reported for this attempt, the task waits for
    no result (or another attempt's), its time in the runner ran out, or the result could be a late repeat of an
    earlier attempt's.
    """
    same = task.result_json == result_json
    reported = task.result_attempt or task.attempts
    if result.attempt not in (None, task.attempts):
        if same and result.attempt == reported:
            return KnownAnswer(reported)  # a late repeat for an earlier attempt
        raise TaskNotOpen(_not_open_message(task_id, task, result.attempt))
    if same and (task.has_result or task.status is not TaskStatus.LEASED):
        return KnownAnswer(reported, tell_again=task.has_result)
    _refuse_unless_open(task, task_id, result, same=same, reported=reported, now=now)
    return None


def _refuse_unless_open(
    task: TaskRecord, task_id: str, result: TaskResult, *, same: bool, reported: int, now: str
) -> None:
    """A new result is taken only by a leased attempt without one, in time, and never as a bare repeat of an
    earlier one."""
    if task.has_result:
        raise ResultConflict(f"a different result was already reported for attempt {task.attempts} of {task_id}")
    if task.status is not TaskStatus.LEASED:
        raise TaskNotOpen(_not_open_message(task_id, task, None))
    if task.past_deadline(now):
        raise TaskNotOpen(
            f"attempt {task.attempts} of {task_id} has timed out: the runner no longer waits for its result"
        )
    if same and result.attempt is None:
        raise AttemptRequired(
            f"this result repeats the one reported for attempt {reported} of {task_id}; to report it for the "
            f'open attempt, send it with "attempt": {task.attempts}'
        )


def locate_task(agent_id: str, task_id: str) -> tuple[str, int]:
    located = split_task_id(task_id)
    if located is None:
        raise NotFound(f"agent {agent_id} has no task {task_id}")
    return located


def tell_runner(runner: RunnerControl, token: str, result: TaskResult) -> bool:
    """Close the runner's wait with the agent's result; False when the token was already closed."""
    if result.status == "succeeded":
        return runner.succeed(token, {"status": "succeeded"})
    assert result.error is not None  # the model requires an error on a failed result
    return runner.fail(token, runner_error(result), f"{result.error.type}: {result.error.message}")


def _not_open_message(task_id: str, task: TaskRecord, attempt: int | None) -> str:
    status = task.status.value if task.status is not None else None
    if task.status is TaskStatus.LEASED and attempt is not None:
        return f"task {task_id} is waiting for attempt {task.attempts}, not {attempt}"
    if task.status is TaskStatus.QUEUED:
        return f"task {task_id} is queued: lease it (POST .../tasks/next) before reporting its result"
    return f"task {task_id} is {status}: it is not waiting for a result"
