"""How an attempt's end is recorded (opscore.sessions.attempts), from the route kept on the task when it was queued.

What is checked: a success of the session's last run completes the session, and only that one; the task that runs
next after a delay shows as scheduled; a retried failure leaves the task `retrying` until Step Functions' backoff runs
out; a failure with no retry left ends the task (failed, or timed out for a timeout, an expired lease or an agent gone
offline) and marks a delayed fallback; a quarantine, a final failure and a failure the agent says is not worth retrying
are never retried; the attempt's history entry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opscore.core.clock import format_timestamp
from opscore.sessions.attempts import agent_failure, failed, succeeded
from opscore.sessions.errors import (
    AGENT_FAILED_ERROR,
    AGENT_FAILED_FINAL_ERROR,
    AGENT_OFFLINE_ERROR,
    AGENT_QUARANTINED_ERROR,
    DELIVERY_FAILED_ERROR,
    LEASE_EXPIRED_ERROR,
)
from opscore.sessions.models import Problem, SessionStatus, TaskStatus
from opscore.sessions.plan import TaskRoute, first_mark, task_runs
from opscore.sessions.records import TaskRecord
from opscore.sessions.writes import TaskMark
from opscore.workflows.templates import WorkflowTemplate, check_template

NOW = datetime(2030, 5, 17, 8, 30, 0, 250_000, tzinfo=UTC)
STAMP = format_timestamp(NOW)
STARTED = format_timestamp(NOW - timedelta(seconds=12))

# fetch: retried twice, 5 s then 15 s; falls back to notify, which waits a minute. summarize waits 30 s.
WORKFLOW = WorkflowTemplate.model_validate(
    {
        "name": "triage",
        "tasks": [
            {
                "id": "fetch",
                "action": "web.fetch",
                "retry": {"max_retries": 2, "backoff_seconds": 5, "backoff_rate": 3.0},
                "fallback": "notify",
            },
            {"id": "summarize", "action": "llm.summarize", "delay_seconds": 30},
            {"id": "publish", "action": "doc.publish", "fallback": "notify", "retry": {"max_retries": 4}},
            {"id": "notify", "action": "human.notify", "fallback_only": True, "delay_seconds": 60},
        ],
    }
)
check_template(WORKFLOW)
ROUTES = {run.route.state: run.route for run in task_runs(WORKFLOW)}


def task(state: str, *, run_attempt: int = 1, attempts: int | None = None) -> TaskRecord:
    """The task item of the attempt `run_attempt` of a run, dispatched as its task's attempt `attempts`."""
    route = ROUTES[state]
    return TaskRecord(
        session_id="s-1",
        index=route.index,
        template_id=route.id,
        attempts=attempts or run_attempt,
        dispatch_seq=7,
        run=route.state,
        run_attempt=run_attempt,
        route_json=route.model_dump_json(),
        started_at=STARTED,
        attempt_started_at=STARTED,
    )


def problem(error: str) -> Problem:
    return Problem(type=error, message=f"{error} happened")


def history(record_json: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(record_json)
    return entry


def scheduled(index: int, template_id: str, seconds: int) -> TaskMark:
    return TaskMark(index, template_id, TaskStatus.SCHEDULED, format_timestamp(NOW + timedelta(seconds=seconds)))


# Successes.


def test_a_success_of_the_last_run_completes_the_session() -> None:
    end = succeeded(task("publish"), {"url": "https://example.com/r/1"}, NOW)
    assert end.end is not None
    assert (end.end.status, end.end.ended_at, end.end.error_json) == (SessionStatus.COMPLETED, STAMP, None)
    assert end.outcome.status is TaskStatus.SUCCEEDED
    assert json.loads(end.outcome.output_json or "") == {"url": "https://example.com/r/1"}
    assert (end.outcome.error_json, end.outcome.scheduled_for) == (None, None)
    assert end.mark is None


def test_a_success_of_a_fallback_for_the_last_task_completes_the_session() -> None:
    end = succeeded(task("notify (fallback for publish)"), None, NOW)
    assert end.end is not None
    assert end.end.status is SessionStatus.COMPLETED
    assert end.outcome.output_json is None


@pytest.mark.parametrize("state", ["fetch", "summarize", "notify (fallback for fetch)"])
def test_a_success_before_the_last_run_does_not_end_the_session(state: str) -> None:
    end = succeeded(task(state), {}, NOW)
    assert end.end is None
    assert end.outcome.status is TaskStatus.SUCCEEDED


def test_the_next_task_shows_as_scheduled_while_it_waits_out_its_delay() -> None:
    assert succeeded(task("fetch"), {}, NOW).mark == scheduled(1, "summarize", 30)
    assert succeeded(task("notify (fallback for fetch)"), {}, NOW).mark == scheduled(1, "summarize", 30)
    assert succeeded(task("summarize"), {}, NOW).mark is None  # publish has no delay


def test_a_success_records_the_attempt_and_its_duration() -> None:
    leased = format_timestamp(NOW - timedelta(seconds=4))
    outcome = succeeded(task("summarize", attempts=3)._replace(leased_at=leased), {"n": 1}, NOW).outcome
    assert (outcome.index, outcome.sequence, outcome.attempt, outcome.ended_at) == (1, 7, 3, STAMP)
    assert outcome.duration_ms == 12_000
    assert history(outcome.attempt_record_json) == {
        "attempt": 3,
        "status": "succeeded",
        "started_at": STARTED,
        "ended_at": STAMP,
        "error": None,
        "queued_at": STARTED,
        "leased_at": leased,
        "delay_seconds": 30,  # summarize's run waited out its delay before this attempt
        "retry_at": None,
    }


def test_the_history_keeps_no_lease_older_than_the_attempt_and_no_delay_on_a_retry() -> None:
    earlier = format_timestamp(NOW - timedelta(seconds=60))  # the previous attempt's lease
    record = history(failed(task("fetch", run_attempt=2)._replace(leased_at=earlier), problem(AGENT_FAILED_ERROR),
                            AGENT_FAILED_ERROR, NOW).outcome.attempt_record_json)  # fmt: skip
    assert (record["leased_at"], record["delay_seconds"]) == (None, 0)
    assert record["retry_at"] == format_timestamp(NOW + timedelta(seconds=15))


# Failures with a retry left.


@pytest.mark.parametrize(
    ("run_attempt", "wait"),
    [(1, 5), (2, 15)],  # backoff 5 s, rate 3
)
def test_a_failure_with_a_retry_left_is_retrying_until_the_backoff_runs_out(run_attempt: int, wait: int) -> None:
    end = failed(task("fetch", run_attempt=run_attempt), problem(AGENT_FAILED_ERROR), AGENT_FAILED_ERROR, NOW)
    assert end.outcome.status is TaskStatus.RETRYING
    assert end.outcome.scheduled_for == format_timestamp(NOW + timedelta(seconds=wait))
    assert (end.mark, end.end) == (None, None)  # the fallback does not run yet


@pytest.mark.parametrize(
    ("error", "attempt_status"),
    [
        (AGENT_FAILED_ERROR, "failed"),
        (DELIVERY_FAILED_ERROR, "failed"),
        ("States.Timeout", "timed_out"),
        (LEASE_EXPIRED_ERROR, "timed_out"),
        (AGENT_OFFLINE_ERROR, "timed_out"),
    ],
)
def test_every_retried_error_is_retried_and_its_attempt_keeps_how_it_ended(error: str, attempt_status: str) -> None:
    end = failed(task("publish", run_attempt=3, attempts=5), problem(error), error, NOW)
    assert end.outcome.status is TaskStatus.RETRYING
    assert end.outcome.scheduled_for == format_timestamp(NOW + timedelta(seconds=4))  # backoff 1 s, rate 2, third
    assert history(end.outcome.attempt_record_json) == {
        "attempt": 5,
        "status": attempt_status,
        "started_at": STARTED,
        "ended_at": STAMP,
        "error": {"type": error, "message": f"{error} happened", "task_id": None},
        "queued_at": STARTED,
        "leased_at": None,
        "delay_seconds": 0,
        "retry_at": end.outcome.scheduled_for,  # the backoff the trace shows
    }
    assert json.loads(end.outcome.error_json or "") == {"type": error, "message": f"{error} happened", "task_id": None}


# Failures that end the run.


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AGENT_FAILED_ERROR, TaskStatus.FAILED),
        (DELIVERY_FAILED_ERROR, TaskStatus.FAILED),
        ("States.Timeout", TaskStatus.TIMED_OUT),
        (LEASE_EXPIRED_ERROR, TaskStatus.TIMED_OUT),
        (AGENT_OFFLINE_ERROR, TaskStatus.TIMED_OUT),
    ],
)
def test_a_failure_with_no_retry_left_ends_the_task_and_marks_the_delayed_fallback(
    error: str, status: TaskStatus
) -> None:
    end = failed(task("fetch", run_attempt=3), problem(error), error, NOW)  # max_retries 2: the third was the last
    assert end.outcome.status is status
    assert end.outcome.scheduled_for is None
    assert end.mark == scheduled(3, "notify", 60)
    assert end.end is None  # the runner's Record Failure ends a failed session, not the attempt's end
    assert history(end.outcome.attempt_record_json)["status"] == status.value


def test_a_failure_without_a_fallback_marks_nothing() -> None:
    for state in ("summarize", "notify (fallback for fetch)"):
        end = failed(task(state), problem(AGENT_FAILED_ERROR), AGENT_FAILED_ERROR, NOW)
        assert end.outcome.status is TaskStatus.FAILED
        assert (end.outcome.scheduled_for, end.mark, end.end) == (None, None, None)


def test_a_quarantine_is_never_retried() -> None:
    end = failed(task("fetch", run_attempt=1), problem(AGENT_QUARANTINED_ERROR), AGENT_QUARANTINED_ERROR, NOW)
    assert end.outcome.status is TaskStatus.FAILED
    assert end.outcome.scheduled_for is None
    assert end.mark == scheduled(3, "notify", 60)  # straight to the fallback


@pytest.mark.parametrize("error", [AGENT_FAILED_ERROR, "States.Timeout", LEASE_EXPIRED_ERROR])
def test_a_final_failure_is_never_retried(error: str) -> None:
    end = failed(task("fetch", run_attempt=1), problem(error), error, NOW, final=True)
    assert end.outcome.status is not TaskStatus.RETRYING
    assert end.outcome.status in {TaskStatus.FAILED, TaskStatus.TIMED_OUT}
    assert end.outcome.scheduled_for is None
    assert end.mark == scheduled(3, "notify", 60)


def test_a_failure_the_agent_says_is_not_worth_retrying_fails_with_retries_left_and_keeps_why() -> None:
    result = {"status": "failed", "error": {"type": "InvalidUrl", "message": "no such host", "retryable": False}}
    reported = agent_failure(json.dumps(result))
    end = failed(task("fetch", run_attempt=1), reported, AGENT_FAILED_FINAL_ERROR, NOW)  # two retries left
    assert end.outcome.status is TaskStatus.FAILED
    assert end.outcome.scheduled_for is None
    assert end.mark == scheduled(3, "notify", 60)  # straight to the fallback
    kept = {"type": "InvalidUrl", "message": "no such host", "task_id": None, "retryable": False}
    assert json.loads(end.outcome.error_json or "") == kept
    record = history(end.outcome.attempt_record_json)
    assert (record["status"], record["error"], record["retry_at"]) == ("failed", kept, None)


def test_a_retryable_failure_keeps_its_error_as_it_always_read() -> None:
    reported = agent_failure(json.dumps({"status": "failed", "error": {"type": "UpstreamTimeout", "message": "slow"}}))
    assert reported.model_dump(mode="json") == {"type": "UpstreamTimeout", "message": "slow", "task_id": None}


# Marks and routes.


def test_a_task_that_follows_itself_shows_no_mark() -> None:
    """b stands in for a, then runs again as itself: one write may not mark the task it ends."""
    workflow = WorkflowTemplate.model_validate(
        {
            "name": "loop",
            "tasks": [
                {"id": "a", "action": "x", "fallback": "b"},
                {"id": "b", "action": "y", "delay_seconds": 20},
            ],
        }
    )
    check_template(workflow)
    runs = {run.route.state: run.route for run in task_runs(workflow)}
    stand_in = runs["b (fallback for a)"]
    assert stand_in.then is not None
    assert stand_in.then.index == stand_in.index
    record = TaskRecord(session_id="s-2", index=1, attempts=1, run_attempt=1, route_json=stand_in.model_dump_json())
    assert succeeded(record, {}, NOW).mark is None
    first = TaskRecord(session_id="s-2", index=0, attempts=1, run_attempt=1, route_json=runs["a"].model_dump_json())
    assert failed(first, problem(AGENT_FAILED_ERROR), AGENT_FAILED_ERROR, NOW).mark == scheduled(1, "b", 20)


def test_a_task_dispatched_before_routes_were_kept_ends_without_retry_mark_or_completion() -> None:
    # Dispatched by the runner that came before generated runners: its item has no route.
    legacy = TaskRecord(session_id="s-3", index=0, attempts=1, run_attempt=1, attempt_started_at="2030-05-17T08:29:00Z")
    done = succeeded(legacy, {}, NOW)
    assert (done.outcome.status, done.mark, done.end) == (TaskStatus.SUCCEEDED, None, None)
    lost = failed(legacy, Problem(type="OpsCore.LeaseExpired", message="m"), "OpsCore.LeaseExpired", NOW)
    assert (lost.outcome.status, lost.outcome.scheduled_for, lost.mark) == (TaskStatus.TIMED_OUT, None, None)


def test_the_first_task_shows_as_scheduled_while_it_waits_out_its_delay() -> None:
    delayed = WorkflowTemplate.model_validate(
        {
            "name": "later",
            "tasks": [
                {"id": "page", "action": "x", "fallback_only": True},
                {"id": "start", "action": "x", "delay_seconds": 90, "fallback": "page"},
            ],
        }
    )
    assert first_mark(delayed, NOW) == scheduled(1, "start", 90)
    assert first_mark(WORKFLOW, NOW) is None


def test_routes_round_trip_through_the_task_item() -> None:
    for route in ROUTES.values():
        assert TaskRoute.model_validate_json(route.model_dump_json()) == route


def test_a_runner_timeout_recorded_late_is_retried_after_the_wait_counted_from_its_deadline() -> None:
    route = TaskRoute(
        state="fetch",
        index=0,
        id="fetch",
        action="web.fetch",
        timeout_seconds=60,
        retry={"max_retries": 2, "backoff_seconds": 10},
    )
    deadline = NOW - timedelta(seconds=45)  # the sweep records it 45 s after the runner timed it out
    record = TaskRecord(
        session_id="s-9",
        index=0,
        attempts=1,
        run_attempt=1,
        route_json=route.model_dump_json(),
        attempt_started_at=format_timestamp(deadline - timedelta(seconds=60)),
        attempt_deadline=format_timestamp(deadline),
    )
    problem = Problem(type="States.Timeout", message="no result within 60 s of being queued")
    ended = failed(record, problem, "States.Timeout", NOW)
    assert ended.outcome.status == TaskStatus.RETRYING
    assert ended.outcome.scheduled_for == format_timestamp(deadline + timedelta(seconds=10))
