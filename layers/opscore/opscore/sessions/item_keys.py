"""Keys of the session and task items, shared by the session store and the agents' queues."""

from __future__ import annotations

from opscore.aws.dynamodb import Item, s

SESSION_SK = "SESSION"
TASK_PREFIX = "TASK#"


def session_key(session_id: str) -> Item:
    return {"PK": s(f"SESSION#{session_id}"), "SK": s(SESSION_SK)}


def task_key(session_id: str, index: int) -> Item:
    return {"PK": s(f"SESSION#{session_id}"), "SK": s(f"{TASK_PREFIX}{index:03d}")}
