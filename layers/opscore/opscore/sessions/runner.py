"""What the session runner's states ask of Ops-Core: queue a task attempt, and record how a failed session ended.

Each Task state of a workflow's machine (see opscore.sessions.definition) invokes the dispatch function with its
route and a task token; the attempt waits in its agent's queue until its result closes the token. Step Functions
retries the state by its `Retry` (a new token, the same route), so a dispatch tells these cases apart by what the
task shows (`next_move`):
- the run's attempt is still open and its time has not run out: a repeated invocation of the same attempt (Lambda
  retried it after it had queued); only the token is replaced;
- the run's attempt is still open and its time has run out: the runner timed it out (only Step Functions sees that),
  so it is recorded as timed out here, then the next attempt is queued;
- an earlier run's attempt is still open (the runner moved on without it): it is recorded as timed out, then this
  run's first attempt is queued;
- otherwise the run's next attempt (or its first) is queued.
A run that already succeeded (its result came as the runner timed it out) passes that success on to the new token.
A fallback's dispatch also records the timeout of the attempt it replaces, if nobody recorded its end.

`Record Failure` calls `runner_failed`: it closes an attempt the runner gave up on and ends the session in error with
the failed task's error when a task's failure ended it, else with the runner's own (a dispatch Lambda kept failing).
The dispatch's write is guarded by the session's status, so a cancelled session queues nothing more; the session's
end only ever moves a session that has not ended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from opscore.aws.dynamodb import ConditionFailed
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Throttled
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import Backoff, attempts
from opscore.dispatch.queue import queue_rank
from opscore.sessions.attempts import route_of, timeout_problem
from opscore.sessions.errors import (
    AGENT_FAILED_FINAL_ERROR,
    AGENT_QUARANTINED_ERROR,
    INPUT_MISSING_ERROR,
    INPUT_TOO_LARGE_ERROR,
    RETRIED_ERRORS,
    SESSION_CANCELLED_ERROR,
    TIMEOUT_ERROR,
)
from opscore.sessions.models import Problem, SessionStatus, TaskStatus, task_id
from opscore.sessions.plan import TaskRoute, retry_wait
from opscore.sessions.records import SessionRecord, TaskRecord, TaskRef
from opscore.sessions.store import SessionStore
from opscore.sessions.trace import log_span, log_spans, session_span, waits_ended
from opscore.sessions.writes import Dispatch, SessionEnd
from opscore.workflows.references import Sources, Unresolved, has_references, resolve_input
from opscore.workflows.templates import MAX_TASK_INPUT_BYTES

if TYPE_CHECKING:
    from opscore.dispatch.health import AgentHealth

# Reads and decisions of one dispatch before it gives up to Lambda's retry (its error is then `Throttled`).
DISPATCH_ATTEMPTS = 3
# The failures of a task itself (as opposed to the runner's): what the session's error then names.
TASK_FAILURES = frozenset({*RETRIED_ERRORS, AGENT_FAILED_FINAL_ERROR, AGENT_QUARANTINED_ERROR, INPUT_TOO_LARGE_ERROR})
# How long before now a dispatch assumes its attempt was scheduled, when nothing tells it better (a tenth of the
# timeout at most).
DEADLINE_MARGIN_SECONDS = 1.0
# An input, its references resolved, is at most what a template's task input may be: the lease answer stays one small
# read, and the task's item (input, the session's input, output and error, each within this) below DynamoDB's 400 KB.
MAX_INPUT_BYTES = MAX_TASK_INPUT_BYTES
PROBLEM_CHARS = 2048
# Tries to fail a refused attempt's wait while Step Functions throttles.
RUNNER_ATTEMPTS = 3
RUNNER_BACKOFF = Backoff(0.05, 0.2)


class Given(BaseModel):
    """What the trigger settled for one task: its input and its queue priority."""

    model_config = ConfigDict(extra="ignore")

    input: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(ge=0, le=9)


class DispatchRequest(BaseModel):
    """A Task state's invocation: its route, the session, and the token the state waits on."""

    model_config = ConfigDict(extra="ignore")

    dispatch: TaskRoute
    session_id: str
    agent_id: str
    session_input: dict[str, Any] = Field(default_factory=dict)
    given: Given
    run: str = Field(description="When the state was entered: with its name, what tells one run from another.")
    retry_count: int = Field(default=0, ge=0, description="The state's retries so far (`$$.State.RetryCount`).")
    token: str

    @property
    def run_key(self) -> str:
        return f"{self.dispatch.state}@{self.run}"


class Failure(BaseModel):
    """What a Catch puts in the state: the error name and its cause."""

    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(default=None, alias="Cause")  # moto drops the cause of SendTaskFailure


class RunnerFailure(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str
    agent_id: str
    failure: Failure


class Dispatched(NamedTuple):
    """What a dispatch did, and the attempt it concerns (None when nothing was queued)."""

    outcome: str
    task: TaskRef | None


class SessionRunner:
    def __init__(
        self,
        store: SessionStore,
        runner: RunnerControl,
        health: AgentHealth,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._runner = runner
        self._health = health
        self._now = now

    def dispatch(self, request: DispatchRequest) -> Dispatched:
        """Queue the state's attempt on its agent: "queued", "repeated" or "session_ended", and the attempt.

        A task that moved between the read and the write (a result, a sweep, a concurrent invocation of this same
        dispatch) is read again and decided anew, rather than failing the state into its fallback.
        """
        for _ in attempts(DISPATCH_ATTEMPTS):
            try:
                return self._dispatch(request)
            except ConditionFailed:
                continue
        raise Throttled(f"task {task_id(request.session_id, request.dispatch.index)} kept changing; dispatch it again")

    def _dispatch(self, request: DispatchRequest) -> Dispatched:
        route = request.dispatch
        cause = None
        if route.fallback_for is not None:
            # The task this one replaces timed out in the runner, unless its end was recorded already.
            cause = self._close_timed_out(request.session_id, route.fallback_for.index, final=True)
        task = self._store.get_task(request.session_id, route.index)
        now = self._now()
        move = next_move(task, request.run_key, now)
        if move == "repeat":
            assert task is not None
            return self._repeated(request, task)
        scheduled = scheduled_at(task, request, now)  # read before a timeout closes the attempt
        if move in {"close_run", "close_attempt"}:
            self._close_timed_out(request.session_id, route.index, final=move == "close_run")
            task = self._store.get_task(request.session_id, route.index)
        same_run = task is not None and task.run == request.run_key
        run_attempt = task.run_attempt + 1 if same_run and task is not None else 1
        deadline = scheduled + timedelta(seconds=route.timeout_seconds)
        input_json, unresolved = self._input(request)
        if unresolved is not None:
            return self._refuse(request, task, run_attempt, deadline, unresolved, cause)
        return self._queue(request, task, run_attempt, deadline, input_json, cause=cause)

    def _input(self, request: DispatchRequest) -> tuple[str, Problem | None]:
        """The attempt's input with its references resolved, or why it cannot have one (the input as given then)."""
        given = request.given.input
        if not has_references(given):
            return canonical_json(given), None
        _, tasks = self._store.session_with_tasks(request.session_id)
        try:
            resolved = canonical_json(resolve_input(given, reference_sources(request, tasks)))
        except Unresolved as missing:
            return canonical_json(given), Problem(type=INPUT_MISSING_ERROR, message=str(missing)[:PROBLEM_CHARS])
        size = len(resolved.encode())
        if size > MAX_INPUT_BYTES:
            message = f"the input is {size} bytes with its references resolved, over the {MAX_INPUT_BYTES} allowed"
            return canonical_json(given), Problem(type=INPUT_TOO_LARGE_ERROR, message=message)
        return resolved, None

    def _refuse(  # noqa: PLR0917 - the attempt's parts, as _queue takes them
        self,
        request: DispatchRequest,
        task: TaskRecord | None,
        run_attempt: int,
        deadline: datetime,
        problem: Problem,
        cause: Problem | None,
    ) -> Dispatched:
        """Record the attempt with its error and out of the agent's reach, then end it: retries and fallback apply."""
        given = canonical_json(request.given.input)
        queued = self._queue(request, task, run_attempt, deadline, given, refusal=problem, cause=cause)
        if queued.outcome != "queued" or queued.task is None:
            return queued
        recorded = self._store.get_task(request.session_id, request.dispatch.index)
        assert recorded is not None  # just written, read consistently
        return self._end_refused(request, recorded)

    def _end_refused(self, request: DispatchRequest, task: TaskRecord) -> Dispatched:
        """End a refused attempt, then fail the runner's wait with its error.

        A dispatch cut short between the record and the end is repeated by Lambda's retry, which finds the attempt
        still refused (`next_move` "repeat") and ends it here. One cut short after the end, while Step Functions kept
        throttling the answer, is retried too, and records one more refused attempt than the runner counts.
        """
        assert task.error is not None
        problem = task.error
        self._health.end_queued(task, error=problem.type, problem=problem)
        logger.warning(
            "task input not resolved",
            extra={
                "event": "task_input_unresolved",
                "session_id": request.session_id,
                "task_id": task.task_id,
                "attempt": task.attempts,
                "error_type": problem.type,
                "error_message": problem.message,
            },
        )
        for attempt in attempts(RUNNER_ATTEMPTS, RUNNER_BACKOFF):
            try:
                self._runner.fail(request.token, problem.type, problem.message)
                break
            except Throttled:
                if attempt == RUNNER_ATTEMPTS - 1:
                    raise
        return Dispatched("input_unresolved", task.ref)

    def _queue(
        self,
        request: DispatchRequest,
        task: TaskRecord | None,
        run_attempt: int,
        deadline: datetime,
        input_json: str,
        *,
        refusal: Problem | None = None,
        cause: Problem | None = None,
    ) -> Dispatched:
        route = request.dispatch
        now = self._now()
        previous = task.dispatch_seq if task is not None else 0
        outcome = self._store.dispatch(
            request.session_id,
            Dispatch(
                index=route.index,
                template_id=route.id,
                agent_id=request.agent_id,
                sequence=previous + 1,
                previous_sequence=previous,
                token=request.token,
                action=route.action,
                input_json=input_json,
                session_input_json=canonical_json(request.session_input),
                priority=request.given.priority,
                fallback_for=route.fallback_for.id if route.fallback_for is not None else None,
                now=format_timestamp(now),
                queue_rank=queue_rank(now, request.given.priority),
                lease_seconds=route.lease_seconds,
                run=request.run_key,
                run_attempt=run_attempt,
                route_json=route.model_dump_json(exclude_defaults=True),
                attempt_deadline=format_timestamp(deadline),
                begins=route.begins,
                refusal_json=canonical_json(refusal.model_dump(mode="json")) if refusal is not None else None,
                fallback_cause_json=canonical_json(cause.model_dump(mode="json")) if cause is not None else None,
            ),
        )
        if outcome == "session_ended":
            # Cancelled meanwhile: end the wait at once rather than let the attempt run into its timeout.
            self._runner.fail(request.token, SESSION_CANCELLED_ERROR, "the session was cancelled")
        else:
            log_spans(waits_ended(queued_task(request, task, run_attempt, format_timestamp(now))))
        if refusal is not None and outcome == "queued":
            return Dispatched(outcome, TaskRef(request.session_id, route.index, previous + 1))
        _log_queued(request, task, outcome, run_attempt)
        return Dispatched(outcome, TaskRef(request.session_id, route.index, previous + 1))

    def _repeated(self, request: DispatchRequest, task: TaskRecord) -> Dispatched:
        """The same attempt again, with a new token: the runner now waits on that one. A result the agent reported
        meanwhile is passed on to it; a refused attempt the first dispatch did not end is ended now."""
        if task.refused:
            return self._end_refused(request, task)
        self._store.replace_token(request.session_id, task.index, task.dispatch_seq, request.token)
        if task.status is TaskStatus.SUCCEEDED:
            self._runner.succeed(request.token, {"status": "succeeded"})
        return Dispatched("repeated", task.ref)

    def _close_timed_out(self, session_id: str, index: int, *, final: bool) -> Problem | None:
        """Record that the runner timed out the task's open attempt (it ended no other way first); the error the
        task ended with, which is what a fallback for it stands in for."""
        task = self._store.get_task(session_id, index)
        if task is None or not _in_queue(task):
            return task.error if task is not None else None
        problem = timeout_problem(route_of(task))
        if self._end_open(task, problem, TIMEOUT_ERROR, final=final):
            return problem
        ended = self._store.get_task(session_id, index)  # it ended some other way meanwhile: with that error
        return ended.error if ended is not None else None

    def _end_open(self, task: TaskRecord, problem: Problem, error: str, *, final: bool) -> bool:
        """End an attempt the runner no longer waits on; True when that ended a lease (the agent has a slot back)."""
        if task.status is TaskStatus.LEASED:
            # The agent held it to the end: a failed attempt of that agent.
            return self._health.end_lease(
                task.agent_id, task.ref, error=error, problem=problem, final=final, tell=False
            )
        if task.status is TaskStatus.QUEUED:
            self._health.end_queued(task, error=error, problem=problem, final=final)
        return False

    def runner_failed(self, request: RunnerFailure) -> set[str]:
        """The session failed (a task without a fallback, or the runner itself): end it with the failed task's error.

        Returns the agents given a slot back (worth serving)."""
        freed: set[str] = set()
        session, tasks = self._store.session_with_tasks(request.session_id)
        if session is None or session.status.ended:
            return freed
        failure = request.failure
        for task in tasks:
            if _in_queue(task):
                if failure.error == TIMEOUT_ERROR:
                    problem = timeout_problem(route_of(task))
                else:
                    problem = Problem(type=failure.error, message=(failure.cause or "")[:2048])
                if self._end_open(task, problem, failure.error, final=True):
                    freed.add(task.agent_id)
        problem = _session_problem(request, self._store.session_with_tasks(request.session_id)[1])
        end = SessionEnd(SessionStatus.ERROR, format_timestamp(self._now()), canonical_json(problem.model_dump()))
        ended = self._store.end_open(request.session_id, end)
        if ended:
            _log_session_failed(session, problem)
            log_span(session_span(session._replace(status=end.status, ended_at=end.ended_at, error=problem)))
            metrics.add_metric(name="SessionsError", unit=MetricUnit.Count, value=1)
            if problem.task_id is None:
                logger.error(
                    "session runner failed",
                    extra={"event": "runner_failed", "session_id": request.session_id, "error_type": problem.type},
                )
                metrics.add_metric(name="SessionRunnerFailures", unit=MetricUnit.Count, value=1)
        return freed


def _log_session_failed(session: SessionRecord, problem: Problem) -> None:
    """The session's end in error, with the error that ended it (and its task, when a task's failure did)."""
    failed_task = {"task_id": problem.task_id} if problem.task_id else {}
    logger.info(
        "session ended",
        extra={
            "event": "session_ended",
            "session_id": session.session_id,
            "agent_id": session.agent_id,
            "workflow_id": session.workflow_id,
            "old": "processing",
            "new": "error",
            "error_type": problem.type,
            "error_message": problem.message,
            **failed_task,
            **({"retryable": problem.retryable} if problem.retryable is not None else {}),
        },
    )


def _log_queued(request: DispatchRequest, task: TaskRecord | None, outcome: str, run_attempt: int) -> None:
    """The dispatch's lines: `task_queued` (or `task_not_queued`), after `fallback_started` for a fallback's first."""
    route = request.dispatch
    ids = {
        "agent_id": request.agent_id,
        "session_id": request.session_id,
        "task_id": task_id(request.session_id, route.index),
        "attempt": (task.attempts if task is not None else 0) + 1,
        "action": route.action,
    }
    queued = outcome == "queued"
    if queued and route.fallback_for is not None and run_attempt == 1:
        standing_in = {"fallback_for": route.fallback_for.id}
        logger.info("fallback started", extra={"event": "fallback_started", **ids, **standing_in})
    logger.info(
        "task queued" if queued else "task not queued: session ended",
        extra={
            "event": "task_queued" if queued else "task_not_queued",
            **ids,
            "priority": request.given.priority,
            **({"new": "queued"} if queued else {}),
        },
    )


def queued_task(request: DispatchRequest, task: TaskRecord | None, run_attempt: int, now: str) -> TaskRecord:
    """The task as its new attempt was queued, for the spans of the waits that ended then."""
    route = request.dispatch
    before = task or TaskRecord(session_id=request.session_id, index=route.index)
    return before._replace(
        template_id=route.id,
        agent_id=request.agent_id,
        action=route.action,
        attempts=before.attempts + 1,
        attempt_started_at=now,
        leased_at=None,
        run_attempt=run_attempt,
        route_json=route.model_dump_json(),
    )


def reference_sources(request: DispatchRequest, tasks: list[TaskRecord]) -> Sources:
    """What the references of the request's input read: the session's input, the outputs kept on its tasks, and,
    for a fallback, the task it stands in for."""
    failed = None
    stands_in_for = request.dispatch.fallback_for
    if stands_in_for is not None:
        replaced = next((task for task in tasks if task.index == stands_in_for.index), None)
        error = replaced.error.model_dump(include={"type", "message"}) if replaced and replaced.error else None
        failed = {"task": stands_in_for.id, **({"error": error} if error is not None else {})}
    outputs = {task.template_id: task.output for task in tasks if task.output is not None}
    return Sources(request.session_input, outputs, failed)


def _session_problem(request: RunnerFailure, tasks: list[TaskRecord]) -> Problem:
    """The session's error: that of the task that failed last when a task's failure ended it, else the runner's own
    (a dispatch that kept failing is not the fault of a task that failed earlier and was stood in for)."""
    failed = [task for task in tasks if task.error is not None and task.attempt_started_at is not None]
    if failed and request.failure.error in TASK_FAILURES:
        last = max(failed, key=lambda task: task.attempt_started_at or "")
        assert last.error is not None
        return last.error.model_copy(update={"task_id": last.task_id})
    failure = request.failure
    return Problem(type=failure.error, message=(failure.cause or "the session runner failed")[:2048])


def next_move(task: TaskRecord | None, run_key: str, now: datetime) -> str:
    """What a dispatch of the run `run_key` does with the task as it stands:

    "repeat" - the same attempt again (its run's attempt is open and in time, or the run already succeeded);
    "close_attempt" - the run's open attempt ran out of time: record its timeout, then queue the run's next attempt;
    "close_run" - an earlier run's attempt is still open (the runner moved on without it): record its timeout, then
    queue this run's first attempt;
    "queue" - queue the run's next attempt (or its first).
    """
    if task is None:
        return "queue"
    same_run = task.run == run_key
    if _in_queue(task):
        if not same_run:
            return "close_run"
        return "close_attempt" if task.past_deadline(format_timestamp(now)) else "repeat"
    return "repeat" if same_run and task.status is TaskStatus.SUCCEEDED else "queue"


def scheduled_at(task: TaskRecord | None, request: DispatchRequest, now: datetime) -> datetime:
    """When Step Functions scheduled the attempt this dispatch queues, or a moment no later: its timeout counts from
    there, so the attempt's deadline in Ops-Core (this plus `timeout_seconds`) is never later than the runner's.

    - a state's first attempt (`$$.State.RetryCount` 0) was scheduled as the state was entered;
    - a retry after a failure Ops-Core recorded, when the failure's `scheduled_for` said (the retrier waits that long
      from when it heard of the failure, which was after the record);
    - a retry after a timeout, the attempt's deadline (the runner's timeout came no sooner) plus the retrier's wait;
    - otherwise (a retry of Lambda's own, or nothing to go by) a margin before now.
    """
    margin = min(timedelta(seconds=DEADLINE_MARGIN_SECONDS), timedelta(seconds=request.dispatch.timeout_seconds) / 10)
    fallback = now - margin
    if request.retry_count == 0:
        return min(now, parse_timestamp(request.run) or fallback)
    if task is None or task.run != request.run_key:
        return fallback
    return min(now, _retry_scheduled(task, request.dispatch) or fallback)


def _retry_scheduled(task: TaskRecord, route: TaskRoute) -> datetime | None:
    """When the retrier scheduled this retry of the run, as far as the task's last attempt tells."""
    if task.status is TaskStatus.RETRYING:
        return parse_timestamp(task.scheduled_for)  # the failure's record said when
    deadline = parse_timestamp(task.attempt_deadline)
    wait = retry_wait(route.retry, task.run_attempt)
    if _in_queue(task) and deadline is not None and wait is not None:
        return deadline + timedelta(seconds=wait)  # timed out no sooner than its deadline, then the retrier's wait
    return None


def _in_queue(task: TaskRecord) -> bool:
    """A dispatched attempt the runner may still wait on: queued, or leased by its agent."""
    return task.status in {TaskStatus.QUEUED, TaskStatus.LEASED} and task.route_json is not None
