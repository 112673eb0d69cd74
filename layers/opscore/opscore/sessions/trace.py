"""A session as a trace: spans shaped like OpenTelemetry's, built from the session and task records alone.

- the trace id is the session id (32 hex digits already); every span id is 16 hex digits derived from the session id
  and the span's place (`span_id`), so the spans the route returns and the span log lines agree;
- the session's span (from its creation to its end) is the root; each task attempt is a child: from when it was
  queued to when it ended, split into its queue wait (queued until leased) and run time (leased until ended);
- a wait is a child of the session too: the delay a run waits out before its first attempt, and the backoff between a
  retried attempt and the next;
- a fallback is a span of its own (from its first attempt's queueing to its last one's end) whose children are its
  attempts, with the failure that caused it among its attributes.
Times are RFC 3339 in UTC, as stored; an open span has no end time and the status UNSET.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from pydantic import Field

from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.contracts import ResponseModel
from opscore.core.observability import logger
from opscore.sessions.models import AttemptRecord, Problem, SessionStatus, TaskStatus
from opscore.sessions.plan import TaskRoute
from opscore.sessions.records import SessionRecord, TaskRecord, TemplateTask
from opscore.sessions.writes import SessionEnd, TaskOutcome
from opscore.workflows.attempt_history import ATTEMPT_ERROR_TYPE_CHARS, kept_message

SpanStatus = Literal["OK", "ERROR", "UNSET"]
SpanKind = Literal["session", "attempt", "wait", "fallback"]
AttributeValue = str | int | bool
# A task status that ends an attempt with an error.
FAILED = frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT})
OPEN = frozenset({TaskStatus.QUEUED, TaskStatus.LEASED})


class Span(ResponseModel):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    start_time: str
    end_time: str | None = Field(description="None while the span is open.")
    duration_ms: int | None
    status: SpanStatus
    attributes: dict[str, AttributeValue]


class TraceTotals(ResponseModel):
    attempts: int
    retries: int = Field(description="Attempts that failed and were tried again.")
    timeouts: int
    fallbacks: int
    queue_wait_ms: int = Field(description="Over every attempt: queued until leased (or until ended, if never).")
    run_ms: int = Field(description="Over every attempt: leased until ended.")
    wait_ms: int = Field(description="Over every wait: delays and retry backoffs.")


class SessionTrace(ResponseModel):
    trace_id: str
    session_id: str
    agent_id: str
    workflow_id: str
    version: int
    status: SessionStatus
    start_time: str
    end_time: str | None
    duration_ms: int | None
    totals: TraceTotals
    spans: list[Span]


def span_id(session_id: str, place: str) -> str:
    """16 hex digits, the same wherever the span is built (the route, the log line)."""
    return hashlib.sha256(f"{session_id}/{place}".encode()).hexdigest()[:16]


def session_span_id(session_id: str) -> str:
    return span_id(session_id, "session")


def session_created_at(session_id: str) -> str:
    """A session id starts with its creation time in microseconds: the start of its span, without a read."""
    try:
        micros = int(session_id[:13], 16)
    except ValueError:
        return ""  # not a session id Ops-Core made: no bound
    return format_timestamp(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros))


def _milliseconds(start: str, end: str | None) -> int | None:
    began, ended = parse_timestamp(start), parse_timestamp(end)
    if began is None or ended is None:
        return None
    return max(0, round((ended - began).total_seconds() * 1000))


class _Bounds(NamedTuple):
    """The session's span: every other span is kept within it."""

    start: str
    end: str | None

    def clamp(self, stamp: str) -> str:
        stamp = max(stamp, self.start)
        return min(stamp, self.end) if self.end is not None else stamp

    def clamp_end(self, stamp: str | None) -> str | None:
        return self.clamp(stamp) if stamp is not None else None


def _span(  # noqa: PLR0917 - the parts of one span
    session_id: str,
    place: str,
    parent: str | None,
    name: str,
    kind: SpanKind,
    start: str,
    end: str | None,
    status: SpanStatus,
    attributes: dict[str, AttributeValue],
) -> Span:
    return Span(
        trace_id=session_id,
        span_id=span_id(session_id, place),
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_time=start,
        end_time=end,
        duration_ms=_milliseconds(start, end),
        status=status,
        attributes=attributes,
    )


# ---------------------------------------------------------------------- one attempt


def attempt_record(
    task: TaskRecord, status: TaskStatus, problem: Problem | None, ended_at: str | None, retry_at: str | None = None
) -> AttemptRecord:
    """The task's current attempt as its history keeps it: queued, leased (when it was), ended (None: still open).

    The delay is the one its run waited out before it, on the run's first attempt only (a retry waits its backoff).
    Its error keeps the first characters of its type and message, so that a record has a largest size and a task item
    its number of records (opscore.workflows.attempt_history); the task's `error` keeps the last one whole.
    """
    queued_at = task.attempt_started_at or ended_at or ""
    # A lease stamp older than the attempt was the previous attempt's (an item written before queues cleared it).
    leased_at = task.leased_at if task.leased_at is not None and task.leased_at >= queued_at else None
    delay = 0
    if task.run_attempt <= 1 and task.route_json is not None:
        delay = TaskRoute.model_validate_json(task.route_json).delay_seconds
    return AttemptRecord(
        attempt=task.attempts or 1,
        status=status,
        started_at=queued_at,
        ended_at=ended_at,
        error=_kept(problem),
        queued_at=queued_at,
        leased_at=leased_at,
        delay_seconds=delay,
        retry_at=retry_at,
    )


def _kept(problem: Problem | None) -> Problem | None:
    if problem is None:
        return None
    return problem.model_copy(
        update={"type": problem.type[:ATTEMPT_ERROR_TYPE_CHARS], "message": kept_message(problem.message)}
    )


def task_attributes(task: TaskRecord) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "agent_id": task.agent_id,
        "session_id": task.session_id,
        "task_id": task.task_id,
        "template_task_id": task.template_id,
        "action": task.action,
    }
    if task.fallback_for:
        attributes["fallback_for"] = ",".join(sorted(task.fallback_for))
    return attributes


def _error_attributes(record: AttemptRecord) -> dict[str, AttributeValue]:
    return problem_attributes(record.error)


def problem_attributes(problem: Problem | None) -> dict[str, AttributeValue]:
    """An error as span attributes: its type and message, and `error.retryable` when the agent said it was not."""
    if problem is None:
        return {}
    attributes: dict[str, AttributeValue] = {"error.type": problem.type, "error.message": problem.message}
    if problem.retryable is not None:
        attributes["error.retryable"] = problem.retryable
    return attributes


def _status_of(record: AttemptRecord) -> SpanStatus:
    if record.ended_at is None or record.status not in FAILED | {TaskStatus.SUCCEEDED}:
        return "UNSET"
    return "ERROR" if record.status in FAILED else "OK"


def _timings(queued: str, leased: str | None, ended: str | None) -> dict[str, AttributeValue]:
    """An attempt's queue wait (queued until leased, or until ended when never leased) and run time."""
    timings: dict[str, AttributeValue] = {"queued_at": queued}
    if leased is None:
        if ended is not None:
            timings["queue_wait_ms"] = _milliseconds(queued, ended) or 0
        return timings
    queue_wait = _milliseconds(queued, leased) or 0
    timings |= {"leased_at": leased, "queue_wait_ms": queue_wait}
    whole = _milliseconds(queued, ended)
    if whole is not None:  # the run is the rest, so the two add up to the duration however each would round
        timings["run_ms"] = max(0, whole - queue_wait)
    return timings


def attempt_span(task: TaskRecord, record: AttemptRecord, parent: str, bounds: _Bounds | None = None) -> Span:
    """One attempt: queued to ended, with its queue wait and run time (the two add up to its duration)."""
    bounds = bounds or _Bounds(record.queued_at or record.started_at, None)
    queued = bounds.clamp(record.queued_at or record.started_at)
    ended = bounds.clamp_end(record.ended_at)
    leased = bounds.clamp(max(record.leased_at, queued)) if record.leased_at is not None else None
    if leased is not None and ended is not None:
        leased = min(leased, ended)
    attributes = task_attributes(task) | {"attempt": record.attempt, "outcome": record.status.value}
    attributes |= _error_attributes(record) | _timings(queued, leased, ended)
    if record.status is TaskStatus.TIMED_OUT:
        attributes["timed_out"] = True
    if record.retry_at is not None:
        attributes["retry_at"] = record.retry_at
    name = f"{task.template_id or task.task_id} attempt {record.attempt}"
    place = f"task/{task.index}/attempt/{record.attempt}"
    return _span(task.session_id, place, parent, name, "attempt", queued, ended, _status_of(record), attributes)


def _current(task: TaskRecord, session_end: str | None) -> AttemptRecord | None:
    """The task's attempt that has no history entry yet: open, or closed by a cancel (which keeps no record)."""
    if task.attempts < 1 or task.attempts in task.attempt_records or task.attempt_started_at is None:
        return None
    status = task.status or TaskStatus.QUEUED
    ended_at = None if status in OPEN else (task.ended_at or session_end)
    return attempt_record(task, status, task.error, ended_at)


# ---------------------------------------------------------------------- a task's spans


class _TaskSpans(NamedTuple):
    attempts: list[Span]
    waits: list[Span]
    fallback: Span | None


def _before(stamp: str, seconds: int) -> str:
    moment = parse_timestamp(stamp)
    return format_timestamp(moment - timedelta(seconds=seconds)) if moment is not None else stamp


def _waits(task: TaskRecord, records: list[AttemptRecord], bounds: _Bounds) -> list[Span]:
    """The delay before each run's first attempt, and the backoff after each retried attempt."""
    waits: list[Span] = []
    root = session_span_id(task.session_id)
    name = task.template_id or task.task_id
    for position, record in enumerate(records):
        queued = record.queued_at or record.started_at
        if record.delay_seconds > 0:
            start = _before(queued, record.delay_seconds)
            attributes = task_attributes(task) | {"wait": "delay", "delay_seconds": record.delay_seconds}
            place = f"task/{task.index}/delay/{record.attempt}"
            waits.append(
                _span(task.session_id, place, root, f"delay before {name}", "wait", bounds.clamp(start),
                      bounds.clamp(queued), "OK", attributes)
            )  # fmt: skip
        if record.retry_at is not None and record.ended_at is not None:
            following = records[position + 1] if position + 1 < len(records) else None
            end = (following.queued_at or following.started_at) if following is not None else record.retry_at
            attributes = task_attributes(task) | {"wait": "backoff", "after_attempt": record.attempt}
            start = bounds.clamp(record.ended_at)
            place = f"task/{task.index}/backoff/{record.attempt}"
            waits.append(
                _span(task.session_id, place, root, f"backoff before {name} attempt {record.attempt + 1}", "wait",
                      start, max(start, bounds.clamp(end)), "OK", attributes)
            )  # fmt: skip
    return waits


def fallback_span_id(task: TaskRecord) -> str:
    return span_id(task.session_id, f"task/{task.index}/fallback")


def fallback_span(task: TaskRecord, records: list[AttemptRecord], cause: Problem | None, bounds: _Bounds) -> Span:
    """The fallback as a whole: its attempts, and the failure it stood in for (kept on the task as it was queued;
    else, for a task queued before it was, `cause`: the last failure of the task it stands in for)."""
    first, last = records[0], records[-1]
    attributes = task_attributes(task) | {"attempts": len(records)}
    cause = task.fallback_cause or cause
    if cause is not None:
        attributes |= {"cause.type": cause.type, "cause.message": cause.message}
    name = f"fallback {task.template_id} for {','.join(sorted(task.fallback_for))}"
    start = bounds.clamp(first.queued_at or first.started_at)
    return _span(
        task.session_id,
        f"task/{task.index}/fallback",
        session_span_id(task.session_id),
        name,
        "fallback",
        start,
        bounds.clamp_end(last.ended_at),
        _status_of(last),
        attributes,
    )


def _task_spans(task: TaskRecord, causes: dict[str, AttemptRecord], bounds: _Bounds) -> _TaskSpans:
    records = task.history
    current = _current(task, bounds.end)
    if current is not None:
        records.append(current)
    if not records:
        return _TaskSpans([], [], None)
    fallback = None
    parent = session_span_id(task.session_id)
    if task.fallback_for:
        cause = next((causes[failed].error for failed in sorted(task.fallback_for) if failed in causes), None)
        fallback = fallback_span(task, records, cause, bounds)
        parent = fallback.span_id
    attempts = [attempt_span(task, record, parent, bounds) for record in records]
    return _TaskSpans(attempts, _waits(task, records, bounds), fallback)


# ---------------------------------------------------------------------- the session


def session_span(session: SessionRecord, attributes: dict[str, AttributeValue] | None = None) -> Span:
    start = session.created_at or session_created_at(session.session_id)
    status: SpanStatus = "UNSET"
    if session.status is SessionStatus.COMPLETED:
        status = "OK"
    elif session.status is SessionStatus.ERROR:
        status = "ERROR"
    error = problem_attributes(session.error)
    base: dict[str, AttributeValue] = {
        "agent_id": session.agent_id,
        "session_id": session.session_id,
        "workflow_id": session.workflow_id,
        "version": session.version,
        "outcome": session.status.value,
    }
    return _span(
        session.session_id,
        "session",
        None,
        f"session {session.workflow_id}".rstrip(),
        "session",
        start,
        session.ended_at,
        status,
        base | error | (attributes or {}),
    )


def _causes(tasks: list[TaskRecord]) -> dict[str, AttemptRecord]:
    """Each task's last failed attempt, by template id: what a fallback for it stood in for."""
    causes: dict[str, AttemptRecord] = {}
    for task in tasks:
        failed = [record for record in task.history if record.status in FAILED]
        if failed:
            causes[task.template_id] = failed[-1]
    return causes


def _totals(attempts: list[Span], waits: list[Span], fallbacks: int) -> TraceTotals:
    def total(spans: list[Span], key: str) -> int:
        return sum(int(span.attributes.get(key, 0)) for span in spans)

    return TraceTotals(
        attempts=len(attempts),
        retries=sum(1 for span in attempts if "retry_at" in span.attributes),
        timeouts=sum(1 for span in attempts if span.attributes.get("timed_out") is True),
        fallbacks=fallbacks,
        queue_wait_ms=total(attempts, "queue_wait_ms"),
        run_ms=total(attempts, "run_ms"),
        wait_ms=sum(span.duration_ms or 0 for span in waits),
    )


def session_trace(session: SessionRecord, tasks: list[TaskRecord]) -> SessionTrace:
    """The session and its tasks' records as a trace: the session's span first, then the others by start time."""
    root = session_span(session)
    bounds = _Bounds(root.start_time, root.end_time)
    # The template's ids and actions, for tasks whose item an index projection left without them.
    template: dict[int, TemplateTask] = dict(enumerate(session.tasks))
    tasks = [_named(task, template.get(task.index), session.agent_id) for task in tasks]
    causes = _causes(tasks)
    attempts: list[Span] = []
    waits: list[Span] = []
    fallbacks: list[Span] = []
    for task in sorted(tasks, key=lambda task: task.index):
        spans = _task_spans(task, causes, bounds)
        attempts += spans.attempts
        waits += spans.waits
        fallbacks += [spans.fallback] if spans.fallback is not None else []
    children = sorted(attempts + waits + fallbacks, key=lambda span: (span.start_time, span.kind != "fallback"))
    return SessionTrace(
        trace_id=session.session_id,
        session_id=session.session_id,
        agent_id=session.agent_id,
        workflow_id=session.workflow_id,
        version=session.version,
        status=session.status,
        start_time=root.start_time,
        end_time=root.end_time,
        duration_ms=root.duration_ms,
        totals=_totals(attempts, waits, len(fallbacks)),
        spans=[root, *children],
    )


def _named(task: TaskRecord, template: TemplateTask | None, agent_id: str) -> TaskRecord:
    if template is None:
        return task
    return task._replace(
        template_id=task.template_id or template.id,
        action=task.action or template.action,
        agent_id=task.agent_id or agent_id,
    )


# ---------------------------------------------------------------------- span log lines


def spans_ended(task: TaskRecord, outcome: TaskOutcome, end: SessionEnd | None = None) -> list[Span]:
    """The spans an attempt's end closes: the attempt, the fallback it finished (when it was a fallback's last), and
    the session (when it ended with it). Built from the task as read before the end, which keeps the fallback's
    cause; the session's workflow (which the route shows) is not among the session span's attributes."""
    record = AttemptRecord.model_validate_json(outcome.attempt_record_json)
    records = [*(entry for entry in task.history if entry.attempt < record.attempt), record]
    bounds = _Bounds(records[0].queued_at or records[0].started_at, None)
    fallback = fallback_span(task, records, None, bounds) if task.fallback_for else None
    parent = fallback.span_id if fallback is not None else session_span_id(task.session_id)
    spans = [attempt_span(task, record, parent)]
    if fallback is not None and outcome.status is not TaskStatus.RETRYING:
        spans.append(fallback)
    if end is not None:
        spans.append(session_span(_ended_session(task, end)))
    return spans


def _ended_session(task: TaskRecord, end: SessionEnd) -> SessionRecord:
    error = Problem.model_validate_json(end.error_json) if end.error_json else None
    return SessionRecord(
        session_id=task.session_id, agent_id=task.agent_id, status=end.status, ended_at=end.ended_at, error=error
    )


def waits_ended(task: TaskRecord) -> list[Span]:
    """The waits that ended when `task`'s current attempt was queued: its run's delay, or the backoff before it.

    `task` is the task as its new attempt was queued: the history of the attempts before it, and the new one's
    number, queue time, run attempt and route."""
    current = attempt_record(task, TaskStatus.QUEUED, None, None)
    records = [*(entry for entry in task.history if entry.attempt < current.attempt), current]
    bounds = _Bounds(session_created_at(task.session_id), None)
    places = (f"task/{task.index}/delay/{current.attempt}", f"task/{task.index}/backoff/{current.attempt - 1}")
    ended = {span_id(task.session_id, place) for place in places}
    return [span for span in _waits(task, records, bounds) if span.span_id in ended]


def log_spans(spans: list[Span]) -> None:
    """Each span as one log line, shaped like an OpenTelemetry span (`event: span`), for any OTel backend to take."""
    for span in spans:
        log_span(span)


def log_span(span: Span) -> None:
    attributes = span.attributes
    ids: dict[str, AttributeValue] = {
        key: attributes[key] for key in ("agent_id", "session_id", "task_id", "attempt") if key in attributes
    }
    line = span.model_dump(mode="json", exclude={"name"})
    # `name` is a LogRecord attribute that `extra` may not set: it goes in as a key of this thread's lines, for this
    # line only ('%' doubled: Powertools formats reserved keys with the record).
    logger.thread_safe_append_keys(name=span.name.replace("%", "%%"))
    try:
        logger.info("span ended", extra={"event": "span", **ids, **line})
    finally:
        logger.thread_safe_remove_keys(["name"])
