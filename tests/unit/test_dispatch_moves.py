"""What a dispatch does with the task as it finds it (`next_move`), and when it stops taking the attempt's result
(`attempt_deadline`): the runner's side of repeats, retries and timeouts, without AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opscore.core.clock import format_timestamp
from opscore.sessions.models import TaskStatus
from opscore.sessions.plan import TaskRoute
from opscore.sessions.records import TaskRecord
from opscore.sessions.runner import attempt_deadline, next_move

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


def route(timeout_seconds: int) -> TaskRoute:
    return TaskRoute(state="fetch", index=0, id="fetch", action="web.fetch", timeout_seconds=timeout_seconds)


def test_a_runs_first_attempt_ends_no_later_than_its_state_was_entered_plus_the_timeout() -> None:
    entered = "2030-05-17T08:29:58.500Z"  # the dispatch ran 1.5 s after the state was entered (a cold start)
    deadline = attempt_deadline(NOW, entered, route(60), first=True)
    assert deadline == datetime(2030, 5, 17, 8, 30, 58, 500_000, tzinfo=UTC)


def test_a_retry_ends_a_margin_before_its_timeout_counted_from_now() -> None:
    entered = "2030-05-17T08:00:00.000Z"  # entered long ago: the run's first attempt, not this retry
    assert attempt_deadline(NOW, entered, route(60), first=False) == NOW + timedelta(seconds=59)
    assert attempt_deadline(NOW, entered, route(5), first=False) == NOW + timedelta(seconds=4.5), "a tenth at most"


def test_an_entry_time_that_is_not_a_timestamp_leaves_the_margin_alone() -> None:
    assert attempt_deadline(NOW, "soon", route(60), first=True) == NOW + timedelta(seconds=59)
