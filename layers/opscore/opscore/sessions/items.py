"""The session and task items: their keys, and how a decoded item (or an index's projection of one) becomes a record.

Shared by the session store and the agents' queues (opscore.dispatch.queue), which keep their entries on the task
items themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opscore.agents.tallies import tally_updates
from opscore.aws.items import Attributes, Item, s
from opscore.aws.updates import Update
from opscore.core.contracts import parse_json
from opscore.sessions.models import Problem, SessionStatus, TaskStatus
from opscore.sessions.records import DEFAULT_LEASE_SECONDS, SessionRecord, TaskRecord, TemplateTask
from opscore.sessions.writes import SessionEnd, TaskMark, TaskOutcome

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from opscore.sessions.attempts import AttemptEnd

SESSION_SK = "SESSION"
TASK_PREFIX = "TASK#"
# Everything that puts a task in its agent's queue or marks it leased; removing them all takes it off both.
QUEUE_ATTRIBUTES = ("lease_expires_at", "agent_tasks", "agent_tasks_sk", "deadline_kind", "deadline_at")


def session_key(session_id: str) -> Item:
    return {"PK": s(f"SESSION#{session_id}"), "SK": s(SESSION_SK)}


def task_key(session_id: str, index: int) -> Item:
    return {"PK": s(f"SESSION#{session_id}"), "SK": s(f"{TASK_PREFIX}{index:03d}")}


def _problem(value: Any) -> Problem | None:
    decoded = parse_json(value)
    return Problem.model_validate(decoded) if decoded else None


def session_record(attributes: Attributes) -> SessionRecord:
    return SessionRecord(
        session_id=attributes.get("session_id", ""),
        agent_id=attributes.get("agent_id", ""),
        workflow_id=attributes.get("workflow_id", ""),
        version=attributes.get("version", 0),
        status=SessionStatus(attributes.get("status", "waiting")),
        priority=attributes.get("priority"),
        created_at=attributes.get("created_at", ""),
        started_at=attributes.get("started_at"),
        ended_at=attributes.get("ended_at"),
        error=_problem(attributes.get("error")),
        input=parse_json(attributes.get("input")) or {},
        tasks=tuple(
            TemplateTask(id=str(task["id"]), action=str(task["action"]), fallback_only=bool(task.get("fallback_only")))
            for task in parse_json(attributes.get("tasks")) or []
        ),
        execution_arn=attributes.get("execution_arn", ""),
    )


def task_record(attributes: Attributes) -> TaskRecord:
    """A task item, or an index's projection of one (then the fields it lacks keep their defaults)."""
    history = attributes.get("history") or {}
    status = attributes.get("status")
    return TaskRecord(
        session_id=attributes.get("session_id") or attributes["PK"].removeprefix("SESSION#"),
        index=attributes["index"] if "index" in attributes else int(attributes["SK"].removeprefix(TASK_PREFIX)),
        template_id=attributes.get("id", ""),
        agent_id=attributes.get("agent_id", ""),
        status=TaskStatus(status) if status else None,
        attempts=attributes.get("attempts", 0),
        dispatch_seq=attributes.get("dispatch_seq", 0),
        action=attributes.get("action", ""),
        input=parse_json(attributes.get("input")),
        session_input=parse_json(attributes.get("session_input")) or {},
        priority=attributes.get("priority"),
        lease_seconds=attributes.get("lease_seconds") or DEFAULT_LEASE_SECONDS,
        lease_expires_at=attributes.get("lease_expires_at"),
        enqueued_at=attributes.get("enqueued_at"),
        leased_at=attributes.get("leased_at"),
        started_at=attributes.get("started_at"),
        attempt_started_at=attributes.get("attempt_started_at"),
        ended_at=attributes.get("ended_at"),
        duration_ms=attributes.get("duration_ms"),
        scheduled_for=attributes.get("scheduled_for"),
        output=parse_json(attributes.get("output")),
        error=_problem(attributes.get("error")),
        attempt_records={int(attempt): record for attempt, record in history.items()},
        fallback_for=tuple(attributes.get("fallback_for", ())),
        fallback_cause=_problem(attributes.get("fallback_cause")),
        queued_as_fallback=bool(attributes.get("queued_as_fallback")),
        task_token=attributes.get("task_token"),
        result_json=attributes.get("result"),
        result_seq=attributes.get("result_seq"),
        result_attempt=attributes.get("result_attempt"),
        agent_offline_after=attributes.get("agent_offline_after"),
        run=attributes.get("run"),
        run_attempt=attributes.get("run_attempt", 0),
        route_json=attributes.get("route"),
        attempt_deadline=attributes.get("attempt_deadline"),
        probe_seq=attributes.get("probe_seq"),
        queue_position=attributes.get("agent_tasks_sk", ""),
    )


# ---------------------------------------------------------------------- writes shared by the stores


def outcome_update(session_id: str, outcome: TaskOutcome, now: str) -> Update:
    """How an attempt ended, on its task: status, timings, output or error, its history entry; off the queue.

    Guarded by the attempt (`dispatch_seq`); callers add what else must hold. The task token stays: a repeated
    result may need to tell the runner again, and a closed token only says it had heard.
    """
    update = (
        Update(task_key(session_id, outcome.index))
        .set("status", outcome.status)
        .set("ended_at", outcome.ended_at)
        .set("duration_ms", outcome.duration_ms)
        .set_entry("history", str(outcome.attempt), outcome.attempt_record_json)
        .set("updated_at", now)
        .remove(*QUEUE_ATTRIBUTES)
    )
    for name, value in (
        ("output", outcome.output_json),
        ("error", outcome.error_json),
        ("scheduled_for", outcome.scheduled_for),
    ):
        if value is None:
            update.remove(name)
        else:
            update.set(name, value)
    return update


def ended_writes(
    table: str, session_id: str, agent_id: str, ended: AttemptEnd, now: str
) -> list[TransactWriteItemTypeDef]:
    """What every recorded end of an attempt writes beside its task's update, in the same transaction: the agent's
    tallies (so that each end is counted once, with it) and the mark of the task that runs next after a wait."""
    items = tally_updates(table, agent_id, ended.outcome)
    if ended.mark is not None:
        items.append({"Update": mark_request(table, session_id, ended.mark, now)})  # type: ignore[typeddict-item]
    return items


def mark_request(table: str, session_id: str, mark: TaskMark, now: str) -> dict[str, Any]:
    """A task the runner dispatches after a delay shows as scheduled meanwhile."""
    return {
        "TableName": table,
        "Key": task_key(session_id, mark.index),
        "UpdateExpression": (
            "SET #status = :status, scheduled_for = :when, updated_at = :now, #id = :id, "
            "#index = :index, entity = :entity, history = if_not_exists(history, :no_history), "
            "attempts = if_not_exists(attempts, :zero)"
        ),
        "ExpressionAttributeNames": {"#status": "status", "#id": "id", "#index": "index"},
        "ExpressionAttributeValues": {
            ":status": s(mark.status),
            ":when": s(mark.scheduled_for),
            ":now": s(now),
            ":id": s(mark.template_id),
            ":index": {"N": str(mark.index)},
            ":entity": s("task"),
            ":no_history": {"M": {}},
            ":zero": {"N": "0"},
        },
    }


def session_end_request(table: str, session_id: str, end: SessionEnd, condition: str, **values: str) -> dict[str, Any]:
    """The update that ends a session (its status, end time and error), made only while `condition` holds."""
    update = Update(session_key(session_id)).set("status", end.status).set("ended_at", end.ended_at)
    update.set("updated_at", end.ended_at)
    if end.error_json is not None:
        update.set("error", end.error_json)
    return update.condition(condition, **values).request(table)
