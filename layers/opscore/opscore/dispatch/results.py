"""An agent's answers for its leased tasks: the result of an attempt.

A result is kept on the task before the runner hears of it (SendTaskSuccess/SendTaskFailure), so a repeat can be
recognised: the same result again answers 200 and changes nothing, a different one answers 409. Keeping it ends the
lease in the same transaction, so the agent's slot is free at once. If the runner no longer waits for that attempt
(it timed out, or the session was cancelled), the result is withdrawn and refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from opscore.aws.dynamodb import ConditionFailed, Item, get_n, get_s
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Conflict, NotFound
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.dispatch.errors import AttemptRequired, ResultConflict, TaskNotOpen
from opscore.dispatch.models import TaskResult, TaskResultAccepted
from opscore.sessions.errors import AGENT_FAILED_ERROR
from opscore.sessions.models import split_task_id
from opscore.sessions.store import SavedResult, SessionStore, decode

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
        for _ in range(MAX_ATTEMPTS):
            item = self._task(agent_id, task_id, session_id, index)
            answered = self._known_answer(item, task_id, result, result_json)
            if answered is not None:
                return TaskResultAccepted(
                    task_id=task_id, session_id=session_id, status=result.status, attempt=answered
                )
            attempt = get_n(item, "attempts") or 0
            sequence = get_n(item, "dispatch_seq") or 0
            self._health.heard_from(agent_id, get_n(item, "agent_offline_after"))
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
        for _ in range(MAX_ATTEMPTS):
            item = self._store.get_task(session_id, index)
            if item is None or get_n(item, "dispatch_seq") != sequence:
                return False
            if get_s(item, "status") != "leased":
                # The attempt ended: by this result (recorded with its status) or by a timeout or a cancel.
                entry = decode(item.get("history", {}).get("M", {}).get(str(get_n(item, "attempts")), {}).get("S"))
                return isinstance(entry, dict) and entry.get("status") == result.status
            token = get_s(item, "task_token")
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

    def _known_answer(self, item: Item, task_id: str, result: TaskResult, result_json: str) -> int | None:
        """The attempt a repeated result answers for; None when the result is new for the open attempt.

        Raises when the result cannot be taken: the task waits for no result (or another attempt's), a different
        result was reported for this attempt, or the result could be a late repeat of an earlier attempt's.
        """
        attempt = get_n(item, "attempts") or 0
        status = get_s(item, "status")
        has_result = get_n(item, "result_seq") == get_n(item, "dispatch_seq")  # the latest attempt has one
        same = get_s(item, "result") == result_json
        reported = get_n(item, "result_attempt") or attempt
        if result.attempt not in (None, attempt):
            if same and result.attempt == reported:
                return reported  # a late repeat for an earlier attempt
            raise TaskNotOpen(_not_open_message(task_id, item, result.attempt))
        if same and (has_result or status != "leased"):
            # Said before. If the runner may not have heard it (the first call stopped between keeping the result
            # and telling the runner), tell it again; a closed token means it had.
            token = get_s(item, "task_token")
            if status == "leased" and token is not None:
                tell_runner(self._runner, token, result)
            return reported
        if status != "leased":
            raise TaskNotOpen(_not_open_message(task_id, item, None))
        if has_result:
            raise ResultConflict(f"a different result was already reported for attempt {attempt} of {task_id}")
        if same and result.attempt is None:
            raise AttemptRequired(
                f"this result repeats the one reported for attempt {reported} of {task_id}; to report it for the "
                f'open attempt, send it with "attempt": {attempt}'
            )
        return None

    def _task(self, agent_id: str, task_id: str, session_id: str, index: int) -> Item:
        item = self._store.get_task(session_id, index)
        # Another agent's task is answered as missing: task ids say nothing about who else has work.
        if item is None or get_s(item, "agent_id") != agent_id:
            raise NotFound(f"agent {agent_id} has no task {task_id}")
        return item


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


def _not_open_message(task_id: str, item: Item, attempt: int | None) -> str:
    status = get_s(item, "status")
    current = get_n(item, "attempts") or 0
    if status == "leased" and attempt is not None:
        return f"task {task_id} is waiting for attempt {current}, not {attempt}"
    if status == "queued":
        return f"task {task_id} is queued: lease it (POST .../tasks/next) before reporting its result"
    return f"task {task_id} is {status}: it is not waiting for a result"
