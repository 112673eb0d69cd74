"""A session as a trace (opscore.sessions.trace), built from its records alone, and the span log lines.

What is checked: a worked session (a retried attempt, a timeout, a delayed fallback with its cause) gives the spans an
operator expects, with queue wait and run time, backoff and delay, totals; over any attempts hypothesis draws, every
span nests within the session, a task's attempts never overlap and an attempt's queue wait and run time add up to its
duration; an attempt's recorded end logs its span (and the session's, when it ended with it) as `event: span`.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opscore.core.clock import format_timestamp
from opscore.core.observability import logger
from opscore.sessions.attempts import failed, recorded, succeeded
from opscore.sessions.errors import AGENT_FAILED_ERROR, TIMEOUT_ERROR
from opscore.sessions.models import AttemptRecord, Problem, SessionStatus, TaskStatus
from opscore.sessions.plan import task_runs
from opscore.sessions.records import SessionRecord, TaskRecord, TemplateTask
from opscore.sessions.trace import log_spans, session_created_at, session_trace, span_id, waits_ended
from opscore.workflows.templates import WorkflowTemplate, check_template

T0 = datetime(2030, 5, 17, 8, 30, 0, tzinfo=UTC)
SESSION = f"{int(T0.timestamp() * 1_000_000):013x}" + "0" * 19


def at(seconds: float) -> str:
    return format_timestamp(T0 + timedelta(seconds=seconds))


def record(
    attempt: int,
    status: TaskStatus,
    queued: float,
    leased: float | None,
    ended: float | None,
    error: str | None = None,
    retry_at: float | None = None,
    delay: int = 0,
) -> str:
    return AttemptRecord(
        attempt=attempt,
        status=status,
        started_at=at(queued),
        ended_at=at(ended) if ended is not None else None,
        error=Problem(type=error, message=f"{error} happened") if error else None,
        queued_at=at(queued),
        leased_at=at(leased) if leased is not None else None,
        delay_seconds=delay,
        retry_at=at(retry_at) if retry_at is not None else None,
    ).model_dump_json()


def worked_session() -> tuple[SessionRecord, list[TaskRecord]]:
    """fetch fails (retried after 5 s), then times out; notify, its fallback, waits 60 s and succeeds."""
    session = SessionRecord(
        session_id=SESSION,
        agent_id="agent-1",
        workflow_id="triage",
        version=2,
        status=SessionStatus.COMPLETED,
        created_at=at(0),
        started_at=at(0.1),
        ended_at=at(100),
        tasks=(TemplateTask("fetch", "web.fetch"), TemplateTask("notify", "human.notify", fallback_only=True)),
    )
    fetch = TaskRecord(
        session_id=SESSION,
        index=0,
        template_id="fetch",
        agent_id="agent-1",
        action="web.fetch",
        status=TaskStatus.TIMED_OUT,
        attempts=2,
        attempt_records={
            1: record(1, TaskStatus.FAILED, 1, 2, 4, AGENT_FAILED_ERROR, retry_at=9),
            2: record(2, TaskStatus.TIMED_OUT, 9, 9.5, 30, TIMEOUT_ERROR),
        },
    )
    notify = TaskRecord(
        session_id=SESSION,
        index=1,
        template_id="notify",
        agent_id="agent-1",
        action="human.notify",
        status=TaskStatus.SUCCEEDED,
        attempts=1,
        fallback_for=("fetch",),
        attempt_records={1: record(1, TaskStatus.SUCCEEDED, 90, 91, 100, delay=60)},
    )
    return session, [fetch, notify]


def by_name(spans: list[Any]) -> dict[str, Any]:
    return {span.name: span for span in spans}


def test_a_worked_session_is_its_spans() -> None:
    trace = session_trace(*worked_session())
    spans = by_name(trace.spans)
    root = trace.spans[0]
    assert (trace.trace_id, root.kind, root.parent_span_id, root.status) == (SESSION, "session", None, "OK")
    assert (root.start_time, root.end_time, root.duration_ms) == (at(0), at(100), 100_000)
    assert list(spans) == [
        "session triage",
        "fetch attempt 1",
        "backoff before fetch attempt 2",
        "fetch attempt 2",
        "delay before notify",
        "fallback notify for fetch",
        "notify attempt 1",
    ]
    first = spans["fetch attempt 1"]
    assert first.parent_span_id == root.span_id
    assert (first.status, first.duration_ms) == ("ERROR", 3000)
    assert first.attributes | {} == first.attributes  # a plain dict of scalars
    assert {key: first.attributes[key] for key in ("queue_wait_ms", "run_ms", "error.type", "attempt")} == {
        "queue_wait_ms": 1000,
        "run_ms": 2000,
        "error.type": AGENT_FAILED_ERROR,
        "attempt": 1,
    }
    backoff = spans["backoff before fetch attempt 2"]
    assert (backoff.kind, backoff.start_time, backoff.end_time, backoff.attributes["wait"]) == (
        "wait",
        at(4),
        at(9),
        "backoff",
    )
    assert spans["fetch attempt 2"].attributes["timed_out"] is True
    delay = spans["delay before notify"]
    assert (delay.start_time, delay.end_time, delay.attributes["delay_seconds"]) == (at(30), at(90), 60)
    fallback = spans["fallback notify for fetch"]
    assert (fallback.kind, fallback.status, fallback.attributes["cause.type"]) == ("fallback", "OK", TIMEOUT_ERROR)
    assert spans["notify attempt 1"].parent_span_id == fallback.span_id
    assert trace.totals.model_dump() == {
        "attempts": 3,
        "retries": 1,
        "timeouts": 1,
        "fallbacks": 1,
        "queue_wait_ms": 1000 + 500 + 1000,
        "run_ms": 2000 + 20_500 + 9000,
        "wait_ms": 5000 + 60_000,
    }


def test_a_failure_not_worth_retrying_says_so_on_its_attempt_and_on_the_session() -> None:
    # given a session that ended in error when its first task's only attempt failed, not worth retrying
    error = Problem(type="InvalidUrl", message="no such host", retryable=False)
    session = SessionRecord(
        session_id=SESSION,
        agent_id="agent-1",
        workflow_id="triage",
        version=1,
        status=SessionStatus.ERROR,
        created_at=at(0),
        started_at=at(0.1),
        ended_at=at(5),
        error=error.model_copy(update={"task_id": f"{SESSION}-000"}),
        tasks=(TemplateTask("fetch", "web.fetch"),),
    )
    attempt = AttemptRecord(
        attempt=1, status=TaskStatus.FAILED, started_at=at(1), ended_at=at(4), error=error, queued_at=at(1)
    )
    fetch = TaskRecord(
        session_id=SESSION,
        index=0,
        template_id="fetch",
        agent_id="agent-1",
        action="web.fetch",
        status=TaskStatus.FAILED,
        attempts=1,
        attempt_records={1: attempt.model_dump_json()},
    )

    # when its trace is read
    trace = session_trace(session, [fetch])

    # then both the attempt and the session say the error was not retryable, and nothing was retried
    spans = by_name(trace.spans)
    assert list(spans) == ["session triage", "fetch attempt 1"]
    for span in spans.values():
        assert (span.status, span.attributes["error.type"], span.attributes["error.retryable"]) == (
            "ERROR",
            "InvalidUrl",
            False,
        )
    assert trace.totals.retries == 0


def test_an_error_worth_retrying_has_no_retryable_attribute() -> None:
    assert all("error.retryable" not in span.attributes for span in session_trace(*worked_session()).spans)


def test_an_open_attempt_has_no_end_and_a_span_id_that_does_not_change() -> None:
    session, tasks = worked_session()
    session = session._replace(status=SessionStatus.PROCESSING, ended_at=None)
    leased = tasks[1]._replace(
        status=TaskStatus.LEASED, attempt_records={}, attempt_started_at=at(90), leased_at=at(91), attempts=1
    )
    trace = session_trace(session, [tasks[0], leased])
    attempt = by_name(trace.spans)["notify attempt 1"]
    assert (attempt.end_time, attempt.status, attempt.duration_ms) == (None, "UNSET", None)
    assert attempt.attributes["queue_wait_ms"] == 1000
    assert "run_ms" not in attempt.attributes
    assert attempt.span_id == span_id(SESSION, "task/1/attempt/1")
    assert trace.end_time is None
    assert trace.spans[0].status == "UNSET"


def test_the_session_span_starts_when_the_session_id_says() -> None:
    assert session_created_at(SESSION) == at(0)


# ---------------------------------------------------------------------- properties over any attempts

attempt_times = st.tuples(
    st.integers(min_value=0, max_value=5_000_000),  # the gap before it is queued (µs: parts round apart)
    st.one_of(st.none(), st.integers(min_value=0, max_value=5_000_000)),  # queued until leased (None: never)
    st.integers(min_value=0, max_value=5_000_000),  # leased (or queued) until ended
    st.sampled_from([TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT]),
    st.booleans(),  # retried: a backoff follows
)


@given(st.lists(st.lists(attempt_times, min_size=1, max_size=4), min_size=1, max_size=4), st.booleans())
def test_spans_nest_attempts_do_not_overlap_and_queue_wait_plus_run_is_the_duration(
    drawn: list[list[tuple[int, int | None, int, TaskStatus, bool]]], ended: bool
) -> None:
    clock = 0  # µs since the session's creation
    tasks = []
    for index, attempts in enumerate(drawn):
        records = {}
        for number, (gap, lease, run, status, retried) in enumerate(attempts, start=1):
            queued = clock + gap
            leased = queued + lease if lease is not None else None
            end = (leased if leased is not None else queued) + run
            records[number] = record(
                number, status, queued / 1e6, leased / 1e6 if leased is not None else None, end / 1e6,
                retry_at=(end + 1_000_000) / 1e6 if retried else None,
            )  # fmt: skip
            clock = end
        tasks.append(
            TaskRecord(session_id=SESSION, index=index, template_id=f"t{index}", attempts=len(attempts),
                       status=TaskStatus.SUCCEEDED, attempt_records=records)
        )  # fmt: skip
    session = SessionRecord(
        session_id=SESSION,
        agent_id="agent-1",
        status=SessionStatus.COMPLETED if ended else SessionStatus.PROCESSING,
        created_at=at(0),
        ended_at=at(clock / 1e6) if ended else None,
        tasks=tuple(TemplateTask(f"t{index}", "act") for index in range(len(drawn))),
    )
    trace = session_trace(session, tasks)
    root, spans = trace.spans[0], trace.spans[1:]
    ids = {span.span_id for span in trace.spans}
    for span in spans:
        assert span.parent_span_id in ids
        assert span.start_time >= root.start_time
        assert span.end_time is not None
        assert root.end_time is None or span.end_time <= root.end_time
        assert span.start_time <= span.end_time
    for index in range(len(drawn)):
        attempts = [
            span for span in spans if span.kind == "attempt" and span.attributes["task_id"].endswith(f"{index:03d}")
        ]
        for before, after in itertools.pairwise(attempts):
            assert before.end_time is not None
            assert before.end_time <= after.start_time
        for span in attempts:
            assert span.attributes["queue_wait_ms"] + span.attributes.get("run_ms", 0) == span.duration_ms
    assert trace.totals.attempts == sum(len(attempts) for attempts in drawn)


# ---------------------------------------------------------------------- span log lines


@pytest.fixture
def logged() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The `event: span` lines logged so far."""
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield lambda: [line for line in map(json.loads, stream.getvalue().splitlines()) if line.get("event") == "span"]
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


WORKFLOW = WorkflowTemplate.model_validate(
    {"name": "triage", "tasks": [{"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 1}}]}
)
check_template(WORKFLOW)
ROUTE = task_runs(WORKFLOW)[0].route


def open_task(**changes: Any) -> TaskRecord:
    task = TaskRecord(
        session_id=SESSION,
        index=0,
        template_id="fetch",
        agent_id="agent-1",
        action="web.fetch",
        status=TaskStatus.LEASED,
        attempts=1,
        dispatch_seq=1,
        run_attempt=1,
        route_json=ROUTE.model_dump_json(),
        started_at=at(1),
        attempt_started_at=at(1),
        leased_at=at(2),
    )
    return task._replace(**changes)


def test_an_attempts_end_logs_its_span_and_the_sessions(logged: Callable[[], list[dict[str, Any]]]) -> None:
    ended = succeeded(open_task(), {"ok": True}, T0 + timedelta(seconds=5))
    recorded(open_task(), ended)
    spans = logged()
    assert [line["name"] for line in spans] == ["fetch attempt 1", "session"]
    attempt, session = spans
    assert attempt["trace_id"] == SESSION
    assert len(attempt["span_id"]) == 16
    assert attempt["span_id"] == span_id(SESSION, "task/0/attempt/1")
    assert attempt["parent_span_id"] == session["span_id"] == span_id(SESSION, "session")
    assert (attempt["start_time"], attempt["end_time"], attempt["status"]) == (at(1), at(5), "OK")
    assert (attempt["agent_id"], attempt["session_id"], attempt["task_id"], attempt["attempt"]) == (
        "agent-1", SESSION, f"{SESSION}-000", 1,
    )  # fmt: skip
    assert attempt["attributes"]["run_ms"] == 3000
    assert attempt["attributes"]["action"] == "web.fetch"
    assert (session["start_time"], session["status"]) == (at(0), "OK")
    assert "parent_span_id" not in session  # the root's (Powertools leaves out what is None)
    assert all(line["level"] == "INFO" and line["service"] for line in spans)


def test_a_retried_attempt_logs_its_span_the_next_ones_queueing_the_backoff(
    logged: Callable[[], list[dict[str, Any]]],
) -> None:
    now = T0 + timedelta(seconds=5)
    first = failed(open_task(), Problem(type=AGENT_FAILED_ERROR, message="no"), AGENT_FAILED_ERROR, now)
    recorded(open_task(), first)
    # the runner queues attempt 2 at 7 s (the backoff ends), and the agent leases it at 7.5 s
    second_task = open_task(
        attempts=2, dispatch_seq=2, run_attempt=2, attempt_started_at=at(7), leased_at=None,
        attempt_records={1: first.outcome.attempt_record_json},
    )  # fmt: skip
    log_spans(waits_ended(second_task))
    leased = second_task._replace(leased_at=at(7.5))
    recorded(leased, succeeded(leased, None, T0 + timedelta(seconds=9)))
    names = [line["name"] for line in logged()]
    assert names == ["fetch attempt 1", "backoff before fetch attempt 2", "fetch attempt 2", "session"]
    first_span, backoff = logged()[:2]
    assert (first_span["status"], first_span["attributes"]["error.type"]) == ("ERROR", AGENT_FAILED_ERROR)
    assert (backoff["start_time"], backoff["end_time"], backoff["parent_span_id"]) == (
        at(5), at(7), span_id(SESSION, "session"),
    )  # fmt: skip


def test_a_runs_first_attempt_ends_its_delay_when_queued() -> None:
    delayed = WorkflowTemplate.model_validate(
        {"name": "later", "tasks": [{"id": "fetch", "action": "web.fetch", "delay_seconds": 30}]}
    )
    route_json = task_runs(delayed)[0].route.model_dump_json()
    queued = open_task(route_json=route_json, attempt_started_at=at(31), leased_at=None)
    (delay,) = waits_ended(queued)
    assert (delay.name, delay.start_time, delay.end_time, delay.attributes["delay_seconds"]) == (
        "delay before fetch", at(1), at(31), 30,
    )  # fmt: skip
    assert waits_ended(queued._replace(run_attempt=2)) == [], "a retry waits its backoff, not the delay"
