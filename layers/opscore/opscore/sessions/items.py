"""The session and task items: their keys, and how a decoded item (or an index's projection of one) becomes a record.

Shared by the session store and the agents' queues (opscore.dispatch.queue), which keep their entries on the task
items themselves.
"""

from __future__ import annotations

from typing import Any

from opscore.aws.items import Attributes, Item, s
from opscore.core.contracts import parse_json
from opscore.sessions.models import Problem, SessionStatus, TaskStatus
from opscore.sessions.records import DEFAULT_LEASE_SECONDS, SessionRecord, TaskRecord, TemplateTask

SESSION_SK = "SESSION"
TASK_PREFIX = "TASK#"


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
        started_at=attributes.get("started_at"),
        attempt_started_at=attributes.get("attempt_started_at"),
        ended_at=attributes.get("ended_at"),
        duration_ms=attributes.get("duration_ms"),
        scheduled_for=attributes.get("scheduled_for"),
        output=parse_json(attributes.get("output")),
        error=_problem(attributes.get("error")),
        attempt_records={int(attempt): record for attempt, record in history.items()},
        fallback_for=tuple(attributes.get("fallback_for", ())),
        queued_as_fallback=bool(attributes.get("queued_as_fallback")),
        task_token=attributes.get("task_token"),
        result_json=attributes.get("result"),
        result_seq=attributes.get("result_seq"),
        result_attempt=attributes.get("result_attempt"),
        end_cause=attributes.get("end_cause"),
        end_cause_seq=attributes.get("end_cause_seq"),
        agent_offline_after=attributes.get("agent_offline_after"),
        queue_position=attributes.get("agent_tasks_sk", ""),
    )
