"""The session runner's decisions, as pure functions: what a failure shows, whether the next step is a retry, and
the outcome an attempt is recorded with."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from opscore.sessions.errors import AGENT_FAILED_ERROR, LEASE_EXPIRED_ERROR
from opscore.sessions.models import Problem, TaskStatus
from opscore.sessions.plan import Step
from opscore.sessions.records import TaskRecord
from opscore.sessions.runner import Failure, attempt_outcome, failure_problem, is_retry

SESSION = "0" * 32
FAILED_RESULT = '{"error":{"message":"boom","type":"ValueError"},"status":"failed"}'


def task(**fields: object) -> TaskRecord:
    return TaskRecord(session_id=SESSION, index=0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "record", "problem"),
    [
        # the agent's own error, kept for this attempt
        (
            Failure(error=AGENT_FAILED_ERROR),
            task(result_json=FAILED_RESULT, result_seq=3),
            Problem(type="ValueError", message="boom"),
        ),
        # kept for another attempt: not this one's
        (
            Failure(error=AGENT_FAILED_ERROR, cause="x"),
            task(result_json=FAILED_RESULT, result_seq=2),
            Problem(type=AGENT_FAILED_ERROR, message="x"),
        ),
        # Ops-Core's own failure: the cause Step Functions carried, else the kept one, else a standard sentence
        (
            Failure(error=LEASE_EXPIRED_ERROR, cause="carried"),
            task(end_cause="kept", end_cause_seq=3),
            Problem(type=LEASE_EXPIRED_ERROR, message="carried"),
        ),
        (
            Failure(error=LEASE_EXPIRED_ERROR),
            task(end_cause="kept", end_cause_seq=3),
            Problem(type=LEASE_EXPIRED_ERROR, message="kept"),
        ),
        (
            Failure(error=LEASE_EXPIRED_ERROR),
            task(),
            Problem(type=LEASE_EXPIRED_ERROR, message="no heartbeat or result before the lease ran out"),
        ),
        # the runner's own timeout names the attempt's timeout
        (
            Failure(error="States.Timeout"),
            task(),
            Problem(type="States.Timeout", message="no result within 30 s of being queued"),
        ),
        (Failure(error="States.TaskFailed", cause="why"), task(), Problem(type="States.TaskFailed", message="why")),
    ],
)
def test_what_a_failed_attempt_shows(failure: Failure, record: TaskRecord, problem: Problem) -> None:
    assert failure_problem(failure, record, sequence=3, timeout_seconds=30) == problem


def dispatch(index: int, attempt: int, wait: int = 0) -> Step:
    return Step(kind="dispatch", sequence=attempt + 1, task_index=index, attempt=attempt, wait_seconds=wait)


@pytest.mark.parametrize(
    ("following", "failed", "retry"),
    [
        (dispatch(0, 2), True, True),  # the same task's next attempt
        (dispatch(0, 2), False, False),  # nothing failed: no retry
        (dispatch(1, 1), True, False),  # the fallback (another task)
        (dispatch(0, 1), True, False),  # the same task's new run on the main line, after it ran as a fallback
        (Step(kind="failed"), True, False),
    ],
)
def test_a_retry_is_the_same_runs_next_attempt(following: Step, failed: bool, retry: bool) -> None:
    assert is_retry(dispatch(0, 1), following, failed=failed) is retry


def test_a_retried_attempt_is_recorded_as_retrying_with_when_it_is_queued_again() -> None:
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    record = task(
        attempts=1, started_at="2026-01-01T00:00:00.000000Z", attempt_started_at="2026-01-01T00:00:04.000000Z"
    )
    outcome = attempt_outcome(
        record,
        dispatch(0, 1),
        dispatch(0, 2, wait=5),
        status=TaskStatus.FAILED,
        problem=Problem(type="ValueError", message="boom"),
        output=None,
        now=now,
    )
    assert (outcome.status, outcome.scheduled_for, outcome.duration_ms) == (
        TaskStatus.RETRYING,
        "2026-01-01T00:00:15.000000Z",
        10_000,
    )
    assert '"status":"failed"' in outcome.attempt_record_json, "the attempt itself failed"
    assert outcome.error_json is not None
    assert outcome.output_json is None


def test_a_succeeded_attempt_keeps_its_output_and_no_schedule() -> None:
    outcome = attempt_outcome(
        task(attempts=1),
        dispatch(0, 1),
        Step(kind="completed"),
        status=TaskStatus.SUCCEEDED,
        problem=None,
        output={"n": 1},
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert (outcome.status, outcome.scheduled_for, outcome.output_json, outcome.error_json) == (
        TaskStatus.SUCCEEDED,
        None,
        '{"n":1}',
        None,
    )
