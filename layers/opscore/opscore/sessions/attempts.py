"""How an attempt's end is recorded: the task's new status, the next task's mark, and the session's completion.

Ops-Core records an attempt's end where it learns of it: the agent's result, an expired lease, an agent gone
offline, a failed delivery, a quarantine, and, for a runner timeout (which only Step Functions sees), whichever comes
first of a pull that meets the attempt, the sweep, the run's next dispatch, the fallback's dispatch and Record
Failure. The task's route (kept on the task when it was queued) says the rest, as the state machine will act on it:
- a failure that the route's retry policy retries, with attempts left, leaves the task `retrying` until
  `scheduled_for` (Step Functions' own backoff, see opscore.sessions.plan.retry_wait);
- a success of the session's last run completes the session in the same write;
- the task that runs next after a delay shows as `scheduled` meanwhile.
A session that fails is ended by the runner's `Record Failure` state (see SessionRunner.runner_failed), so every way
a session fails ends it in one place.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.contracts import canonical_json, parse_json
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.sessions.errors import (
    AGENT_FAILED_ERROR,
    AGENT_OFFLINE_ERROR,
    AGENT_QUARANTINED_ERROR,
    DELIVERY_FAILED_ERROR,
    LEASE_EXPIRED_ERROR,
    RETRIED_ERRORS,
    TIMEOUT_ERROR,
)
from opscore.sessions.models import Problem, SessionStatus, TaskStatus
from opscore.sessions.plan import Follower, TaskRoute, retry_wait
from opscore.sessions.records import TaskRecord
from opscore.sessions.trace import attempt_record, log_spans, spans_ended
from opscore.sessions.writes import SessionEnd, TaskMark, TaskOutcome

# Errors that mean an attempt ran out of time: Step Functions' own, an expired lease, an agent gone offline.
TIMEOUT_ERRORS = frozenset({TIMEOUT_ERROR, LEASE_EXPIRED_ERROR, AGENT_OFFLINE_ERROR})
# What Ops-Core's own failures say when no cause was kept.
OPSCORE_FAILURES = {
    LEASE_EXPIRED_ERROR: "no heartbeat or result before the lease ran out",
    AGENT_OFFLINE_ERROR: "the agent went offline holding the lease",
    DELIVERY_FAILED_ERROR: "the task could not be delivered to the agent",
    AGENT_QUARANTINED_ERROR: "the agent was quarantined while the task waited in its queue",
}


# The event a recorded end logs, by the status it leaves the task in.
END_EVENTS = {
    TaskStatus.SUCCEEDED: "task_succeeded",
    TaskStatus.RETRYING: "task_retry_scheduled",
    TaskStatus.FAILED: "task_failed",
    TaskStatus.TIMED_OUT: "task_failed",
}


def recorded(task: TaskRecord, ended: AttemptEnd) -> None:
    """An attempt's end (and the session's, when it came with it) is written: count and log it, and log the spans it
    ended."""
    count(ended, task)
    log_spans(spans_ended(task, ended.outcome, ended.end))


def count(ended: AttemptEnd, task: TaskRecord) -> None:
    """The log line and metrics of a recorded end of `task`'s attempt: its outcome, and the session's completion."""
    outcome = ended.outcome
    status = outcome.status
    problem = parse_json(outcome.error_json) if outcome.error_json else None
    logger.info(
        f"task {status.value.replace('_', ' ')}",
        extra={
            "event": END_EVENTS.get(status, "task_ended"),
            "agent_id": task.agent_id,
            "session_id": task.session_id,
            "task_id": task.task_id,
            "attempt": outcome.attempt,
            "action": task.action,
            "old": task.status.value if task.status is not None else None,
            "new": status.value,
            "duration_ms": outcome.duration_ms,
            **attempt_timings(outcome.attempt_record_json),
            **({"error_type": problem.get("type"), "error_message": problem.get("message")} if problem else {}),
            **({"retryable": False} if problem and problem.get("retryable") is False else {}),
            **({"scheduled_for": outcome.scheduled_for} if outcome.scheduled_for else {}),
        },
    )
    metrics.add_metric(name=f"Tasks{status.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
    if ended.end is not None:
        logger.info(
            f"session {ended.end.status.value}",
            extra={
                "event": "session_ended",
                "agent_id": task.agent_id,
                "session_id": task.session_id,
                "old": SessionStatus.PROCESSING.value,
                "new": ended.end.status.value,
            },
        )
        metrics.add_metric(name=f"Sessions{ended.end.status.value.title()}", unit=MetricUnit.Count, value=1)


def attempt_timings(record_json: str) -> dict[str, int]:
    """The attempt's own time, from its record: in the queue (`queue_wait_ms`, until leased, or until it ended if
    never) and leased (`run_ms`, from its lease to its end; absent when it was never leased)."""
    record = parse_json(record_json) or {}
    queued, leased, ended = (parse_timestamp(record.get(key)) for key in ("queued_at", "leased_at", "ended_at"))
    if queued is None or ended is None:
        return {}
    timings = {"queue_wait_ms": _milliseconds(format_timestamp(queued), leased or ended)}
    if leased is not None:
        timings["run_ms"] = max(0, round((ended - leased).total_seconds() * 1000))
    return timings


class AttemptEnd(NamedTuple):
    """One attempt's end, as written together: the task, the next task's mark, and the session's end if it came."""

    outcome: TaskOutcome
    mark: TaskMark | None = None
    end: SessionEnd | None = None


def route_of(task: TaskRecord) -> TaskRoute:
    """The route the task's current run was dispatched with.

    A task dispatched before runners were generated per workflow has none: it gets one that neither retries nor leads
    anywhere, so its end is still recorded (its session, whose runner is gone, is for an operator to cancel).
    """
    if task.route_json is None:
        return TaskRoute(
            state="", index=task.index, id=task.template_id, action=task.action, timeout_seconds=1, legacy=True
        )
    return TaskRoute.model_validate_json(task.route_json)


def timeout_problem(route: TaskRoute) -> Problem:
    return Problem(type=TIMEOUT_ERROR, message=f"no result within {route.timeout_seconds} s of being queued")


def opscore_problem(error: str, cause: str | None) -> Problem:
    return Problem(type=error, message=cause or OPSCORE_FAILURES.get(error, ""))


def succeeded(task: TaskRecord, output: dict[str, Any] | None, now: datetime) -> AttemptEnd:
    route = route_of(task)
    outcome = _outcome(task, TaskStatus.SUCCEEDED, None, output, now, retry_in=None)
    last = route.then is None and not route.legacy
    end = SessionEnd(SessionStatus.COMPLETED, format_timestamp(now)) if last else None
    return AttemptEnd(outcome, _mark(route, route.then, now), end)


def failed(task: TaskRecord, problem: Problem, error: str, now: datetime, *, final: bool = False) -> AttemptEnd:
    """Attempt `task.attempts` failed with `error` (a failure name the runner sees) and `problem` (what it shows)."""
    route = route_of(task)
    status = TaskStatus.TIMED_OUT if error in TIMEOUT_ERRORS else TaskStatus.FAILED
    retry_in = None if final or error not in RETRIED_ERRORS else retry_wait(route.retry, task.run_attempt)
    # A runner timeout recorded late (by the sweep, a pull, the next dispatch) happened at the attempt's deadline or
    # soon after: the retrier's wait counts from there, not from the record.
    since = _deadline_of(task, now) if error == TIMEOUT_ERROR else now
    outcome = _outcome(task, status, problem, None, now, retry_in=retry_in, since=since)
    mark = _mark(route, route.fallback, now) if retry_in is None else None
    return AttemptEnd(outcome, mark)


def retry_after_timeout(task: TaskRecord) -> str | None:
    """When the runner retries an attempt whose failure it was never told: at its own timeout (the attempt's
    deadline), then the retrier's wait. None when nothing says (no deadline, no retry left)."""
    deadline = parse_timestamp(task.attempt_deadline)
    wait = retry_wait(route_of(task).retry, task.run_attempt)
    if deadline is None or wait is None:
        return None
    return format_timestamp(deadline + timedelta(seconds=wait))


def agent_failure(result_json: str) -> Problem:
    """The agent's own error, from its failed result; it keeps `"retryable": false`, so the task shows why no retry
    followed."""
    reported = parse_json(result_json) or {}
    error = reported.get("error") or {}
    return Problem(
        type=str(error.get("type", AGENT_FAILED_ERROR)),
        message=str(error.get("message", "")),
        retryable=False if error.get("retryable") is False else None,
    )


def _outcome(  # noqa: PLR0917 - the parts of one outcome
    task: TaskRecord,
    status: TaskStatus,
    problem: Problem | None,
    output: dict[str, Any] | None,
    now: datetime,
    retry_in: int | None,
    since: datetime | None = None,
) -> TaskOutcome:
    stamp = format_timestamp(now)
    attempt_started = task.attempt_started_at or stamp
    retry_at = format_timestamp((since or now) + timedelta(seconds=retry_in)) if retry_in is not None else None
    record = attempt_record(task, status, problem, stamp, retry_at)
    return TaskOutcome(
        index=task.index,
        sequence=task.dispatch_seq,
        attempt=task.attempts or 1,
        status=TaskStatus.RETRYING if retry_in is not None else status,
        ended_at=stamp,
        duration_ms=_milliseconds(task.started_at or attempt_started, now),
        attempt_record_json=canonical_json(record.model_dump(mode="json")),
        output_json=canonical_json(output) if output is not None else None,
        error_json=canonical_json(problem.model_dump(mode="json")) if problem is not None else None,
        scheduled_for=retry_at,
    )


def _mark(route: TaskRoute, follower: Follower | None, now: datetime) -> TaskMark | None:
    """The task that runs next after a delay shows as scheduled until then (one write may not touch an item twice,
    so a task that follows itself shows its last outcome meanwhile)."""
    if follower is None or follower.delay_seconds <= 0 or follower.index == route.index:
        return None
    return TaskMark(
        index=follower.index,
        template_id=follower.id,
        status=TaskStatus.SCHEDULED,
        scheduled_for=format_timestamp(now + timedelta(seconds=follower.delay_seconds)),
    )


def _deadline_of(task: TaskRecord, now: datetime) -> datetime:
    """The attempt's deadline, when it is known and past; else now."""
    return min(parse_timestamp(task.attempt_deadline) or now, now)


def _milliseconds(since: str, now: datetime) -> int:
    started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    return max(0, int((now - started).total_seconds() * 1000))
