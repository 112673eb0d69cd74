"""Who may call what, as data: every route of docs/openapi.yaml by every kind of caller, with the status it gets.

Each row is one route; each column one caller, always sending a valid request for the route (real ids of the path's
agent, a body the route takes), so the status is exact:
- `no_key`: no X-API-Key header; `malformed`: a key no Ops-Core key can be (longer than any key is allowed to be);
  `unknown`: well-formed, never issued; `revoked`: the path's agent's own key, revoked; `expired`: the path's agent's
  own key, past its `expires_at`;
- `admin`: an admin key; `own`: the key of the agent the path names (for a route without an agent in its path, an
  agent key); `other`: another agent's key, on the same path.
`tests/e2e/test_authorization_matrix.py` checks the table names every route of the document (a route added without
a row fails) and runs every cell over HTTP against the local runtime.
"""

from __future__ import annotations

from typing import NamedTuple

COLUMNS = ("no_key", "malformed", "unknown", "revoked", "expired", "admin", "own", "other")


class Row(NamedTuple):
    no_key: int
    malformed: int
    unknown: int
    revoked: int
    expired: int
    admin: int
    own: int
    other: int


# The statuses of an admin-only route and of an agent's own route, which most rows are.
def admin_only(allowed: int) -> Row:
    return Row(401, 401, 401, 401, 401, allowed, 403, 403)


def agent_route(allowed: int) -> Row:
    return Row(401, 401, 401, 401, 401, allowed, allowed, 403)


MATRIX: dict[tuple[str, str], Row] = {
    # (method, path as docs/openapi.yaml spells it): Row(no_key, malformed, unknown, revoked, expired, admin, own,
    # other)
    ("GET", "/health"): Row(200, 200, 200, 200, 200, 200, 200, 200),  # no authorizer: a key is not even read
    ("POST", "/keys"): admin_only(201),
    ("DELETE", "/keys/{keyId}"): admin_only(204),
    ("GET", "/keys"): admin_only(200),
    ("POST", "/keys/{keyId}/rotate"): admin_only(201),
    ("POST", "/workflows"): admin_only(201),
    ("GET", "/workflows"): admin_only(200),
    ("GET", "/workflows/{workflowId}"): admin_only(200),
    ("GET", "/agents"): admin_only(200),
    ("GET", "/sessions/{sessionId}/trace"): admin_only(200),
    ("PUT", "/agent/{agentId}"): agent_route(200),
    ("GET", "/agent/{agentId}"): agent_route(200),
    ("POST", "/agent/{agentId}/state"): agent_route(200),
    ("GET", "/agent/{agentId}/stats"): agent_route(200),
    ("GET", "/agent/{agentId}/state/history"): agent_route(200),
    ("GET", "/agent/{agentId}/sessions"): agent_route(200),
    ("GET", "/agent/{agentId}/sessions/{sessionId}"): agent_route(200),
    ("GET", "/agent/{agentId}/sessions/{sessionId}/trace"): agent_route(200),
    ("GET", "/agent/{agentId}/tasks"): agent_route(200),
    ("POST", "/agent/{agentId}/tasks/next"): agent_route(200),  # a task is queued for every cell
    ("POST", "/agent/{agentId}/tasks/{taskId}/result"): agent_route(200),
    ("POST", "/agent/{agentId}/tasks/{taskId}/heartbeat"): agent_route(200),
    # Under the agent's own path, but for admins: the agent's own key is refused by the route (403).
    ("DELETE", "/agent/{agentId}/quarantine"): admin_only(200),
    ("POST", "/agent/{agentId}/workflow"): admin_only(202),
    ("POST", "/agent/{agentId}/tasks"): admin_only(202),
    ("POST", "/agent/{agentId}/sessions/{sessionId}/cancel"): admin_only(200),
}
