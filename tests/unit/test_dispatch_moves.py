"""What a dispatch does with the task as it finds it (`next_move`), and from when its attempt's deadline counts
(`scheduled_at`): the runner's side of repeats, retries and timeouts, without AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opscore.core.clock import format_timestamp
from opscore.sessions.models import TaskStatus
from opscore.sessions.records import TaskRecord
from opscore.sessions.runner import DispatchRequest, next_move, scheduled_at

NOW = datetime(2030, 5, 17, 8, 30, tzinfo=UTC)
RUN = "fetch@2030-05-17T08:29:00.000Z"
ROUTE = '{"state": "fetch", "index": 0, "id": "fetch", "action": "web.fetch", "timeout_seconds": 60}'


def task(status: TaskStatus, *, run: str = RUN, deadline: timedelta = timedelta(seconds=30)) -> TaskRecord:
    return TaskRecord(
        session_id="s-1",
        index=0,
        status=status,
        dispatch_seq=1,
        run=run,
        route_json=ROUTE,
        attempt_deadline=format_timestamp(NOW + deadline),
    )


@pytest.mark.parametrize(
    ("found", "move"),
    [
        (None, "queue"),  # the task's first dispatch
        (task(TaskStatus.SCHEDULED), "queue"),  # it waited out its delay
        (task(TaskStatus.RETRYING), "queue"),  # Ops-Core recorded the failure: this is the retry
        (task(TaskStatus.QUEUED), "repeat"),  # Lambda ran the same dispatch again, in time
        (task(TaskStatus.LEASED), "repeat"),
        (task(TaskStatus.LEASED, deadline=-timedelta(seconds=1)), "close_attempt"),  # the runner timed it out
        (task(TaskStatus.QUEUED, deadline=timedelta(0)), "close_attempt"),
        (task(TaskStatus.QUEUED, run="fetch (fallback for x)@2030-05-17T08:00:00.000Z"), "close_run"),
        (task(TaskStatus.SUCCEEDED), "repeat"),  # the result came as the runner timed it out: pass it on
        (task(TaskStatus.SUCCEEDED, run="other@2030-05-17T08:00:00.000Z"), "queue"),  # the task runs again
        (task(TaskStatus.FAILED), "queue"),
        (task(TaskStatus.SKIPPED), "queue"),  # cancelled: the dispatch's own guard answers it
    ],
)
def test_what_a_dispatch_does_with_the_task_it_finds(found: TaskRecord | None, move: str) -> None:
    assert next_move(found, RUN, NOW) == move


def request(retry_count: int, *, timeout_seconds: int = 60, run: str = "2030-05-17T08:29:58.500Z") -> DispatchRequest:
    return DispatchRequest.model_validate(
        {
            "dispatch": {
                "state": "fetch",
                "index": 0,
                "id": "fetch",
                "action": "web.fetch",
                "timeout_seconds": timeout_seconds,
                "retry": {"max_retries": 3, "backoff_seconds": 10, "backoff_rate": 2.0},
            },
            "session_id": "s-1",
            "agent_id": "agent-1",
            "given": {"priority": 5},
            "run": run,
            "retry_count": retry_count,
            "token": "t",
        }
    )


def test_a_states_first_attempt_was_scheduled_as_the_state_was_entered() -> None:
    # the dispatch ran 1.5 s after the state was entered (a cold start): the deadline counts from the entry
    assert scheduled_at(None, request(0), NOW) == datetime(2030, 5, 17, 8, 29, 58, 500_000, tzinfo=UTC)


def test_a_retry_after_a_recorded_failure_was_scheduled_when_the_failure_said() -> None:
    failed = TaskRecord(
        session_id="s-1",
        index=0,
        status=TaskStatus.RETRYING,
        run=RUN.replace("08:29:00.000Z", "08:29:58.500Z"),
        run_attempt=1,
        scheduled_for=format_timestamp(NOW - timedelta(seconds=3)),  # this dispatch ran 3 s late
    )
    assert scheduled_at(failed, request(1), NOW) == NOW - timedelta(seconds=3)


def test_a_retry_after_a_timeout_was_scheduled_after_the_deadline_and_the_retriers_wait() -> None:
    open_attempt = task(TaskStatus.LEASED, run="fetch@2030-05-17T08:29:58.500Z", deadline=-timedelta(seconds=25))
    open_attempt = open_attempt._replace(run_attempt=2)
    # attempt 2 timed out at its deadline (25 s ago); the retrier waited 10 * 2 = 20 s, so it was scheduled 5 s ago
    assert scheduled_at(open_attempt, request(2), NOW) == NOW - timedelta(seconds=5)


def test_a_retry_of_lambdas_own_counts_from_a_margin_before_now() -> None:
    assert scheduled_at(None, request(1), NOW) == NOW - timedelta(seconds=1)
    assert scheduled_at(None, request(1, timeout_seconds=5), NOW) == NOW - timedelta(seconds=0.5), "a tenth at most"
    assert scheduled_at(None, request(0, run="soon"), NOW) == NOW - timedelta(seconds=1), "no entry time to go by"
