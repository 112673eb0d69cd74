"""An agent's answers for its leased tasks: the result of an attempt.

A result is kept on the task before the runner hears of it (SendTaskSuccess/SendTaskFailure), so a repeat can be
recognised: the same result again answers 200 and changes nothing, a different one answers 409. Keeping it ends the
lease in the same transaction, so the agent's slot is free at once. If the runner no longer waits for that attempt
(it timed out, or the session was cancelled), the result is withdrawn and refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from opscore.aws.dynamodb import ConditionFailed
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Conflict, NotFound
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import attempts
from opscore.dispatch.errors import AttemptRequired, ResultConflict, TaskNotOpen
from opscore.dispatch.models import TaskResult, TaskResultAccepted
from opscore.sessions.errors import AGENT_FAILED_ERROR
from opscore.sessions.models import TaskStatus, split_task_id
from opscore.sessions.records import TaskRecord
from opscore.sessions.store import SessionStore
from opscore.sessions.writes import SavedResult

if TYPE_CHECKING:
    from opscore.dispatch.health import AgentHealth


MAX_ATTEMPTS = 3


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
        for _ in attempts(MAX_ATTEMPTS):
            task = self._task(agent_id, task_id, session_id, index)
            known = known_answer(task, task_id, result, result_json)
            if known is not None:
                if known.tell_again and task.task_token is not None:
                    # The first call may have stopped between keeping the result and telling the runner: tell it
                    # again (a closed token means it had heard).
                    tell_runner(self._runner, task.task_token, result)
                return TaskResultAccepted(
                    task_id=task_id, session_id=session_id, status=result.status, attempt=known.attempt
                )
            attempt = task.attempts
            sequence = task.dispatch_seq
            self._health.heard_from(agent_id, task.agent_offline_after)
            saved_result = SavedResult(
                session_id=session_id,
                index=index,
                sequence=sequence,
                attempt=attempt,
                agent_id=agent_id,
                result_json=result_json,
                counted="success" if result.status == "succeeded" else "failure",
                now=format_timestamp(self._now()),
            )
            try:
                saved = self._store.save_result(saved_result)
            except ConditionFailed:
                continue  # the task moved (a result, a timeout, a cancel) since it was read: decide again
            if not saved:
                raise TaskNotOpen(f"the session of task {task_id} has ended; it takes no more results")
            if not self._deliver(session_id, index, sequence, result):
                self._store.withdraw_result(session_id, index, sequence)
                raise TaskNotOpen(f"attempt {attempt} of {task_id} has already ended (timed out or cancelled)")
            logger.info(
                "task result reported",
                extra={"session_id": session_id, "task_id": task_id, "attempt": attempt, "result": result.status},
            )
            metrics.add_metric(name="TaskResultsReported", unit=MetricUnit.Count, value=1)
            if result.status == "failed":
                self._health.after_failure(agent_id)
            return TaskResultAccepted(task_id=task_id, session_id=session_id, status=result.status, attempt=attempt)
        raise Conflict(f"task {task_id} is changing too fast to take this result now; send it again")

    def _deliver(self, session_id: str, index: int, sequence: int, result: TaskResult) -> bool:
        """Tell the runner the kept result; False only when its attempt visibly ended without it.

        A closed token is not proof of that: a concurrent identical report may have used it, or a retried dispatch
        may have replaced it. So the task is read again each time, and the answer follows what it shows.
        """
        tried: set[str] = set()
        for _ in attempts(MAX_ATTEMPTS):
            task = self._store.get_task(session_id, index)
            if task is None or task.dispatch_seq != sequence:
                return False
            if task.status is not TaskStatus.LEASED:
                # The attempt ended: by this result (recorded with its status) or by a timeout or a cancel.
                entry = task.attempt(task.attempts)
                return entry is not None and entry.status == result.status
            token = task.task_token
            if token is None:
                return False
            if token in tried:
                # Still shown leased with a closed token: a concurrent identical report told the runner, or
                # the runner is recording a timeout right now. The result is kept; the session shows which.
                return True
            tried.add(token)
            if tell_runner(self._runner, token, result):
                return True
        return True

    def _task(self, agent_id: str, task_id: str, session_id: str, index: int) -> TaskRecord:
        task = self._store.get_task(session_id, index)
        # Another agent's task is answered as missing: task ids say nothing about who else has work.
        if task is None or task.agent_id != agent_id:
            raise NotFound(f"agent {agent_id} has no task {task_id}")
        return task


class KnownAnswer(NamedTuple):
    """A result said before: the attempt it answers, and whether the runner may not have heard it yet."""

    attempt: int
    tell_again: bool = False


def known_answer(task: TaskRecord, task_id: str, result: TaskResult, result_json: str) -> KnownAnswer | None:
    """The attempt a repeated result answers for; None when the result is new for the open attempt.

    Raises when the result cannot be taken: the task waits for no result (or another attempt's), a different
    result was reported for this attempt, or the result could be a late repeat of an earlier attempt's.
    """
    same = task.result_json == result_json
    reported = task.result_attempt or task.attempts
    if result.attempt not in (None, task.attempts):
        if same and result.attempt == reported:
            return KnownAnswer(reported)  # a late repeat for an earlier attempt
        raise TaskNotOpen(_not_open_message(task_id, task, result.attempt))
    leased = task.status is TaskStatus.LEASED
    if same and (task.has_result or not leased):
        return KnownAnswer(reported, tell_again=leased)
    _refuse_unless_open(task, task_id, result, same=same, reported=reported)
    return None


def _refuse_unless_open(task: TaskRecord, task_id: str, result: TaskResult, *, same: bool, reported: int) -> None:
    """A new result is taken only by a leased attempt without one, and never as a bare repeat of an earlier one."""
    if task.status is not TaskStatus.LEASED:
        raise TaskNotOpen(_not_open_message(task_id, task, None))
    if task.has_result:
        raise ResultConflict(f"a different result was already reported for attempt {task.attempts} of {task_id}")
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
    return runner.fail(token, AGENT_FAILED_ERROR, f"{result.error.type}: {result.error.message}")


def _not_open_message(task_id: str, task: TaskRecord, attempt: int | None) -> str:
    status = task.status.value if task.status is not None else None
    if task.status is TaskStatus.LEASED and attempt is not None:
        return f"task {task_id} is waiting for attempt {task.attempts}, not {attempt}"
    if task.status is TaskStatus.QUEUED:
        return f"task {task_id} is queued: lease it (POST .../tasks/next) before reporting its result"
    return f"task {task_id} is {status}: it is not waiting for a result"
