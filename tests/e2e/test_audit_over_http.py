"""The audit log over HTTP: admin actions and refused callers of the local runtime, read back from its log file.

Each request's audit line is found by the request id the client was answered with (`x-amzn-RequestId`, the lines'
`correlation_id`); the whole file is then searched for every key used: none may appear.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Api, LocalProcess, Reply
from tests.e2e.test_authorization_matrix import DEADLINE_SECONDS

LOOPBACK = "127.0.0.1"


class AuditLog:
    def __init__(self, local: LocalProcess) -> None:
        self.path = local.log_path

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def of(self, reply: Reply) -> list[dict[str, Any]]:
        """The audit lines of one request; polled, as the log is written while the answer travels."""
        request_id = reply.headers["x-amzn-RequestId"]
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            lines = self.lines()
            # The runtime's `http_request` line is written once the answer is sent: every line before it is in.
            served = any(line.get("event") == "http_request" and line.get("request_id") == request_id for line in lines)
            if served or time.monotonic() > deadline:
                return [line for line in lines if line.get("event") == "audit" and line["correlation_id"] == request_id]
            time.sleep(0.05)

    def one(self, reply: Reply, **expected: Any) -> dict[str, Any]:
        lines = self.of(reply)
        assert len(lines) == 1, f"one audit line for {reply.status} {reply.body}: {lines}"
        (line,) = lines
        assert {name: line.get(name) for name in expected} == expected, line
        assert line["source_ip"] == LOOPBACK, line
        return line


@pytest.fixture(scope="module")
def audit(local_ops_core: LocalProcess | None) -> AuditLog:
    if local_ops_core is None:
        pytest.skip("reads the local runtime's log file")
    return AuditLog(local_ops_core)


def test_every_admin_action_leaves_an_audit_line_naming_who_what_and_which(api: Api, audit: AuditLog) -> None:
    admin_key_id = audit.one(api.admin("POST", "/keys", body={"role": "admin"}), action="POST /keys")["key_id"]
    agent_id = f"audit-{uuid.uuid4().hex[:10]}"
    created = api.admin("POST", "/keys", body={"agent_id": agent_id})
    audit.one(
        created,
        action="POST /keys",
        outcome="allowed",
        status=201,
        key_id=admin_key_id,
        role="admin",
        target_key_id=created.body["key_id"],
        agent_id=agent_id,
        function_name="KeysFunction",
    )
    agent_key = created.body["api_key"]
    assert audit.of(api.request("PUT", f"/agent/{agent_id}", key=agent_key, body={"name": "audited"})) == []

    workflow_id = f"audit-{uuid.uuid4().hex[:10]}"
    template = {"name": workflow_id, "tasks": [{"id": "work", "action": "audit.work", "timeout_seconds": 3600}]}
    audit.one(
        api.admin("POST", "/workflows", body=template), action="POST /workflows", status=201, workflow_id=workflow_id
    )
    started = api.admin("POST", f"/agent/{agent_id}/workflow", body={"workflow_id": workflow_id})
    session_id = started.body["session_id"]
    audit.one(
        started,
        action="POST /agent/{agentId}/workflow",
        status=202,
        agent_id=agent_id,
        session_id=session_id,
        workflow_id=workflow_id,
    )
    ad_hoc = api.admin("POST", f"/agent/{agent_id}/tasks", body={"action": "audit.once"})
    audit.one(ad_hoc, action="POST /agent/{agentId}/tasks", status=202, task_id=ad_hoc.body["task_id"])
    cancelled = api.admin("POST", f"/agent/{agent_id}/sessions/{session_id}/cancel")
    audit.one(cancelled, action="POST /agent/{agentId}/sessions/{sessionId}/cancel", status=200, session_id=session_id)
    not_quarantined = api.admin("DELETE", f"/agent/{agent_id}/quarantine")
    audit.one(not_quarantined, action="DELETE /agent/{agentId}/quarantine", outcome="allowed", status=409)
    bad = api.admin("POST", "/keys", body={"agent_id": "-not an id"})
    audit.one(bad, action="POST /keys", outcome="allowed", status=400)
    revoked = api.admin("DELETE", f"/keys/{created.body['key_id']}")
    audit.one(revoked, action="DELETE /keys/{keyId}", status=204, target_key_id=created.body["key_id"])
    # reads, even an admin's, are not admin actions
    assert audit.of(api.admin("GET", f"/agent/{agent_id}")) == []
    assert agent_key not in audit.path.read_text()


def test_every_refused_caller_leaves_an_audit_line_and_no_key_is_ever_logged(api: Api, audit: AuditLog) -> None:
    agent_id = f"audit-{uuid.uuid4().hex[:10]}"
    created = api.admin("POST", "/keys", body={"agent_id": agent_id}).body
    key = created["api_key"]
    assert api.request("PUT", f"/agent/{agent_id}", key=key, body={"name": "audited"}).status == 201
    other = f"audit-{uuid.uuid4().hex[:10]}"
    denied = {"outcome": "denied"}

    # API Gateway's own refusals, which the local runtime logs as the access log would hold them
    audit.one(
        api.request("GET", f"/agent/{agent_id}"),
        **denied,
        status=401,
        action="GET /agent/{agentId}",
        function_name="opscore-local",
    )
    audit.one(
        api.request("GET", f"/agent/{other}/sessions", key=key),
        **denied,
        status=403,
        action="GET /agent/{agentId}/sessions",
        key_id=created["key_id"],
        role="agent",
        caller_agent_id=agent_id,
        path=f"/v1/opscore/agent/{other}/sessions",
    )
    # the authorizer's: a key never issued, and one revoked (named by its id, never by itself)
    unknown = "opsk_" + secrets.token_urlsafe(32)
    audit.one(
        api.request("POST", f"/agent/{agent_id}/state", key=unknown, body={}),
        **denied,
        status=401,
        action="POST /agent/{agentId}/state",
        function_name="AuthorizerFunction",
    )
    spare = api.admin("POST", "/keys", body={"agent_id": agent_id}).body
    assert api.admin("DELETE", f"/keys/{spare['key_id']}").status == 204
    audit.one(api.request("GET", "/agents", key=spare["api_key"]), **denied, status=401, key_id=spare["key_id"])
    # the routes' own: an admin route under the agent's own path, and another agent spelled with a '%'
    audit.one(
        api.request("POST", f"/agent/{agent_id}/workflow", key=key, body={"workflow_id": "x"}),
        **denied,
        status=403,
        action="POST /agent/{agentId}/workflow",
        key_id=created["key_id"],
        function_name="SessionControlFunction",
    )
    audit.one(
        api.request("GET", f"/agent/{other.replace('-', '%2D')}", key=key),
        **denied,
        status=403,
        action="GET /agent/{agentId}",
        agent_id=other,
        caller_agent_id=agent_id,
        function_name="AgentReadFunction",
    )
    logged = audit.path.read_text()
    for secret in (key, unknown, spare["api_key"], api.admin_key):
        assert secret not in logged, "a key was logged"
