"""Each API operation as a description of one HTTP request and how to read its answer, shared by the sync and the
async client (which differ only in how they send it).

`safe` says whether the request may be sent again after a 5xx or a lost answer without doing twice what it does:
reads, PUT and DELETE, and the POSTs Ops-Core answers as repeats (a state report with the same timestamp, the same
result for the same attempt, a heartbeat, a cancel, an equal template, and triggers and ad-hoc tasks, which always
carry an Idempotency-Key). Leasing a task and issuing a key are not safe: a repeat would lease a second task or
issue a second key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from opscore_sdk import models

AgentState = Literal["initializing", "idle", "busy", "paused", "error", "offline"]
Body = BaseModel | Mapping[str, Any]
When = datetime | str


@dataclass(frozen=True)
class Call[T]:
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    safe: bool
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _segment(value: str) -> str:
    """A path parameter, percent-encoded (an agent id may hold `:`)."""
    return quote(str(value), safe="")


def _query(**values: Any) -> dict[str, str]:
    return {name: _text(value) for name, value in values.items() if value is not None}


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _json(body: Body) -> Any:
    """A model as the API takes it (fields left unset are not sent); a mapping as it is, for the server to check."""
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return dict(body)


def _model[M: BaseModel](model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _nothing(_response: httpx.Response) -> None:
    return None


def _leased(response: httpx.Response) -> models.LeasedTask | None:
    # 204: nothing to lease now.
    return None if response.status_code == 204 else models.LeasedTask.model_validate_json(response.content)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def now_timestamp() -> str:
    """The current time as a state report's timestamp: RFC 3339, UTC, to the microsecond."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- health and keys


def health() -> Call[models.Health]:
    return Call("GET", "/health", _model(models.Health), safe=True)


def create_key(*, role: str | None, agent_id: str | None, expires_at: When | None = None) -> Call[models.CreatedKey]:
    expiry = _text(expires_at) if expires_at is not None else None
    fields = (("role", role), ("agent_id", agent_id), ("expires_at", expiry))
    body = {name: value for name, value in fields if value is not None}
    return Call("POST", "/keys", _model(models.CreatedKey), safe=False, json=body)


def list_keys(*, agent_id: str | None, limit: int | None, next_token: str | None) -> Call[models.KeyPage]:
    query = _query(agent_id=agent_id, limit=limit, next_token=next_token)
    return Call("GET", "/keys", _model(models.KeyPage), safe=True, query=query)


def rotate_key(key_id: str, *, expires_at: When | None, old_key_expires_at: When | None) -> Call[models.CreatedKey]:
    # Not safe: a repeat would issue a second new key.
    fields = (("expires_at", expires_at), ("old_key_expires_at", old_key_expires_at))
    body = {name: _text(value) for name, value in fields if value is not None}
    return Call("POST", f"/keys/{_segment(key_id)}/rotate", _model(models.CreatedKey), safe=False, json=body)


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/keys/{_segment(key_id)}", _nothing, safe=True)


# --- workflows


def create_workflow(template: Body | str) -> Call[models.WorkflowCreated]:
    # A str is the template as YAML; an equal template is answered with its stored version, so repeats are safe.
    if isinstance(template, str):
        return Call(
            "POST",
            "/workflows",
            _model(models.WorkflowCreated),
            safe=True,
            content=template.encode(),
            headers={"Content-Type": "application/yaml"},
        )
    return Call("POST", "/workflows", _model(models.WorkflowCreated), safe=True, json=_json(template))


def list_workflows(*, limit: int | None, next_token: str | None) -> Call[models.WorkflowPage]:
    return Call(
        "GET", "/workflows", _model(models.WorkflowPage), safe=True, query=_query(limit=limit, next_token=next_token)
    )


def get_workflow(workflow_id: str, *, version: int | None) -> Call[models.WorkflowVersion]:
    path = f"/workflows/{_segment(workflow_id)}"
    return Call("GET", path, _model(models.WorkflowVersion), safe=True, query=_query(version=version))


# --- agents


def register(agent_id: str, registration: Body) -> Call[models.Agent]:
    return Call("PUT", f"/agent/{_segment(agent_id)}", _model(models.Agent), safe=True, json=_json(registration))


def get_agent(agent_id: str) -> Call[models.Agent]:
    return Call("GET", f"/agent/{_segment(agent_id)}", _model(models.Agent), safe=True)


def report_state(
    agent_id: str,
    state: AgentState,
    *,
    timestamp: When | None,
    details: Mapping[str, Any] | None,
    error: Body | None,
) -> Call[models.StateAccepted]:
    # The timestamp is fixed here, once per call: a retry sends the same report, which Ops-Core answers as a repeat.
    body: dict[str, Any] = {"state": state, "timestamp": _text(timestamp) if timestamp else now_timestamp()}
    if details is not None:
        body["details"] = dict(details)
    if error is not None:
        body["error"] = _json(error)
    path = f"/agent/{_segment(agent_id)}/state"
    return Call("POST", path, _model(models.StateAccepted), safe=True, json=body)


def lift_quarantine(agent_id: str) -> Call[models.Agent]:
    # Not safe: a repeat of a lift that went through is 409 not_quarantined.
    return Call("DELETE", f"/agent/{_segment(agent_id)}/quarantine", _model(models.Agent), safe=False)


def list_agents(*, state: AgentState | None, limit: int | None, next_token: str | None) -> Call[models.AgentPage]:
    query = _query(state=state, limit=limit, next_token=next_token)
    return Call("GET", "/agents", _model(models.AgentPage), safe=True, query=query)


def get_agent_stats(agent_id: str, *, window: str | None) -> Call[models.AgentStats]:
    path = f"/agent/{_segment(agent_id)}/stats"
    return Call("GET", path, _model(models.AgentStats), safe=True, query=_query(window=window))


def get_state_history(
    agent_id: str, *, since: When | None, until: When | None, limit: int | None, next_token: str | None
) -> Call[models.HistoryPage]:
    query = _query(since=since, until=until, limit=limit, next_token=next_token)
    path = f"/agent/{_segment(agent_id)}/state/history"
    return Call("GET", path, _model(models.HistoryPage), safe=True, query=query)


# --- sessions


def trigger(
    agent_id: str,
    *,
    workflow_id: str | None,
    version: int | None,
    template: Body | None,
    input: Mapping[str, Any] | None,
    priority: int | None,
    idempotency_key: str | None,
) -> Call[models.SessionStarted]:
    body: dict[str, Any] = {}
    if workflow_id is not None:
        body["workflow_id"] = workflow_id
    if version is not None:
        body["version"] = version
    if template is not None:
        body["template"] = _json(template)
    if input is not None:
        body["input"] = dict(input)
    if priority is not None:
        body["priority"] = priority
    # One key per call, the same on each of its retries: a retried trigger never starts two sessions.
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    path = f"/agent/{_segment(agent_id)}/workflow"
    return Call("POST", path, _model(models.SessionStarted), safe=True, json=body, headers=headers)


def run_task(agent_id: str, task: Body, *, idempotency_key: str | None) -> Call[models.TaskStarted]:
    headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
    path = f"/agent/{_segment(agent_id)}/tasks"
    return Call("POST", path, _model(models.TaskStarted), safe=True, json=_json(task), headers=headers)


def list_sessions(
    agent_id: str,
    *,
    status: str | None,
    workflow_id: str | None,
    since: When | None,
    until: When | None,
    limit: int | None,
    next_token: str | None,
) -> Call[models.SessionPage]:
    query = _query(status=status, workflow_id=workflow_id, since=since, until=until, limit=limit, next_token=next_token)
    path = f"/agent/{_segment(agent_id)}/sessions"
    return Call("GET", path, _model(models.SessionPage), safe=True, query=query)


def get_session(agent_id: str, session_id: str) -> Call[models.SessionView]:
    path = f"/agent/{_segment(agent_id)}/sessions/{_segment(session_id)}"
    return Call("GET", path, _model(models.SessionView), safe=True)


def get_session_trace(agent_id: str, session_id: str) -> Call[models.SessionTrace]:
    path = f"/agent/{_segment(agent_id)}/sessions/{_segment(session_id)}/trace"
    return Call("GET", path, _model(models.SessionTrace), safe=True)


def get_trace(session_id: str) -> Call[models.SessionTrace]:
    return Call("GET", f"/sessions/{_segment(session_id)}/trace", _model(models.SessionTrace), safe=True)


def cancel(agent_id: str, session_id: str) -> Call[models.SessionView]:
    # Cancelling a cancelled session answers 200 again: safe to repeat.
    path = f"/agent/{_segment(agent_id)}/sessions/{_segment(session_id)}/cancel"
    return Call("POST", path, _model(models.SessionView), safe=True)


# --- tasks


def list_tasks(
    agent_id: str, *, status: Literal["queued", "leased"] | None, limit: int | None, next_token: str | None
) -> Call[models.QueuePage]:
    query = _query(status=status, limit=limit, next_token=next_token)
    path = f"/agent/{_segment(agent_id)}/tasks"
    return Call("GET", path, _model(models.QueuePage), safe=True, query=query)


def next_task(agent_id: str) -> Call[models.LeasedTask | None]:
    # Not safe: if the answer is lost, a repeat would lease another task while the first one's lease runs out.
    return Call("POST", f"/agent/{_segment(agent_id)}/tasks/next", _leased, safe=False)


def report_result(agent_id: str, task_id: str, result: Body) -> Call[models.TaskResultAccepted]:
    # The same result for the same attempt is answered as a repeat: safe, the more so with `attempt` in it.
    path = f"/agent/{_segment(agent_id)}/tasks/{_segment(task_id)}/result"
    return Call("POST", path, _model(models.TaskResultAccepted), safe=True, json=_json(result))


def succeeded(attempt: int, output: Mapping[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "succeeded", "attempt": attempt}
    if output is not None:
        body["output"] = dict(output)
    return body


def failed(attempt: int, error: Body) -> dict[str, Any]:
    return {"status": "failed", "attempt": attempt, "error": _json(error)}


def heartbeat(agent_id: str, task_id: str) -> Call[models.TaskHeartbeat]:
    path = f"/agent/{_segment(agent_id)}/tasks/{_segment(task_id)}/heartbeat"
    return Call("POST", path, _model(models.TaskHeartbeat), safe=True)
