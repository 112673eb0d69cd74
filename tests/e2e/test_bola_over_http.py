"""Broken object-level authorization (OWASP API1) probed over HTTP: an agent's key never reaches another agent.

The victim's id has a ':' and a '-' (`org:probe-agent-...`); the attacker's is the same but for the case of its
first letter (ids are case-sensitive: `Org:...` is another agent). The attacker's key tries every route under
`/agent/{agentId}` with the victim's id spelled every way a path can spell it, and the victim's sessions and tasks
through its own path; every answer is a 400, 403 or 404 in the error envelope, and afterwards everything of the
victim's reads as it did before. The victim's own key, on every valid spelling of its own id, is answered as the
admin key is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import Api
from tests.e2e.test_authorization_matrix import REGISTRATION, until

REFUSED = {400, 403, 404}


def encoded(text: str, lower: bool = False) -> str:
    spelled = "".join(f"%{ord(char):02X}" for char in text)
    return spelled.lower() if lower else spelled


def valid_spellings(agent_id: str) -> dict[str, str]:
    """Spellings of the same id that a path may use: RFC 3986 makes them equivalent (percent-encoding in either hex
    case, unreserved characters encoded or not)."""
    return {
        "as is": agent_id,
        "colon %3A": agent_id.replace(":", "%3A"),
        "colon %3a": agent_id.replace(":", "%3a"),
        "dash %2D": agent_id.replace("-", "%2D"),
        "first letter %6F": encoded(agent_id[0]) + agent_id[1:],
        "every character": encoded(agent_id),
        "every character, lower hex": encoded(agent_id, lower=True),
        "encodeURIComponent": quote(agent_id, safe=""),
    }


def tricks(victim: str, attacker: str) -> dict[str, str]:
    """Ids in the path that are not the victim's own, or not ids at all."""
    return {
        "upper case": victim.upper(),
        "double-encoded colon %253A": victim.replace(":", "%253A"),
        "over-long": victim + "x" * 200,
        "129 characters": (victim + "x" * 129)[:129],
        "dot segments, encoded": f"{quote(attacker, safe='')}%2F..%2F{quote(victim, safe='')}",
        "dot segments": f"{attacker}/../{victim}",
        "encoded slash": f"{victim}%2F",
        "trailing slash": f"{victim}/",
        "matrix parameter": f"{victim};x=1",
        "attacker's, then a matrix parameter": f"{attacker};/../{victim}",
        "NUL": f"{victim}%00",
        "newline": f"{victim}%0A",
        "full-width letters": quote("\uff4f\uff52\uff47") + victim[3:],
        "dots only": "%2E%2E",
    }


@dataclass
class Victim:
    agent_id: str
    key: str
    session_id: str  # its session, its only task leased by the victim
    task_id: str
    queued_session_id: str  # an ad-hoc task's session, its task still queued

    def routes(self, spelled: str) -> list[tuple[str, str, Any]]:
        """Every route under /agent/{agentId} with the victim's real ids and a body the route takes."""
        base = f"/agent/{spelled}"
        return [
            ("PUT", base, {"name": "hijacked"}),
            ("GET", base, None),
            ("POST", f"{base}/state", {"state": "paused", "timestamp": datetime.now(UTC).isoformat()}),
            ("DELETE", f"{base}/quarantine", None),
            ("GET", f"{base}/stats", None),
            ("GET", f"{base}/state/history", None),
            ("POST", f"{base}/workflow", {"workflow_id": "nothing-here"}),
            ("GET", f"{base}/sessions", None),
            ("GET", f"{base}/sessions/{self.session_id}", None),
            ("GET", f"{base}/sessions/{self.session_id}/trace", None),
            ("POST", f"{base}/sessions/{self.queued_session_id}/cancel", None),
            ("POST", f"{base}/tasks", {"action": "hijack"}),
            ("GET", f"{base}/tasks", None),
            ("POST", f"{base}/tasks/next", None),
            (
                "POST",
                f"{base}/tasks/{self.task_id}/result",
                {"status": "failed", "error": {"type": "X", "message": "x"}},
            ),
            ("POST", f"{base}/tasks/{self.task_id}/heartbeat", None),
        ]


def new_key(api: Api, agent_id: str) -> str:
    created = api.admin("POST", "/keys", body={"agent_id": agent_id})
    assert created.status == 201, created.body
    return str(created.body["api_key"])


def snapshot(api: Api, victim: Victim) -> dict[str, Any]:
    """Everything of the victim's, as the admin reads it."""
    base = f"/agent/{victim.agent_id}"
    reads = {
        "agent": api.admin("GET", base),
        "history": api.admin("GET", f"{base}/state/history"),
        "sessions": api.admin("GET", f"{base}/sessions"),
        "session": api.admin("GET", f"{base}/sessions/{victim.session_id}"),
        "queued session": api.admin("GET", f"{base}/sessions/{victim.queued_session_id}"),
        "queued": api.admin("GET", f"{base}/tasks", query={"status": "queued"}),
        "leased": api.admin("GET", f"{base}/tasks", query={"status": "leased"}),
    }
    assert all(reply.status == 200 for reply in reads.values()), {name: r.status for name, r in reads.items()}
    return {name: reply.body for name, reply in reads.items()}


@pytest.fixture(scope="module")
def victim(api: Api) -> Victim:
    agent_id = f"org:probe-agent-{uuid.uuid4().hex[:8]}"
    key = new_key(api, agent_id)
    assert api.request("PUT", f"/agent/{agent_id}", key=key, body=REGISTRATION).status == 201
    idle = {"state": "idle", "timestamp": datetime.now(UTC).isoformat()}
    assert api.request("POST", f"/agent/{agent_id}/state", key=key, body=idle).status == 200
    workflow_id = f"bola-{uuid.uuid4().hex[:8]}"
    template = {"name": workflow_id, "tasks": [{"id": "work", "action": "probe.work", "timeout_seconds": 3600}]}
    assert api.admin("POST", "/workflows", body=template).status == 201
    session_id = api.admin("POST", f"/agent/{agent_id}/workflow", body={"workflow_id": workflow_id}).body["session_id"]
    task_id = f"{session_id}-000"

    def leased() -> bool | None:
        reply = api.request("POST", f"/agent/{agent_id}/tasks/next", key=key)
        assert reply.status in (200, 204), reply.body
        return True if reply.status == 200 and reply.body["task_id"] == task_id else None

    until(leased, "leased the victim's task")
    queued = api.admin("POST", f"/agent/{agent_id}/tasks", body={"action": "probe.wait", "timeout_seconds": 3600})
    assert queued.status == 202, queued.body
    queued_task = queued.body["task_id"]

    def is_queued() -> bool | None:
        page = api.admin("GET", f"/agent/{agent_id}/tasks", query={"status": "queued"}).body
        return True if any(item["task_id"] == queued_task for item in page["items"]) else None

    until(is_queued, "queued the victim's second task")
    return Victim(agent_id, key, session_id, task_id, queued.body["session_id"])


@pytest.fixture(scope="module")
def attacker(api: Api, victim: Victim) -> tuple[str, str]:
    agent_id = victim.agent_id[0].upper() + victim.agent_id[1:]
    key = new_key(api, agent_id)
    assert api.request("PUT", f"/agent/{agent_id}", key=key, body=REGISTRATION).status == 201
    return agent_id, key


def test_an_agent_key_never_reaches_another_agent_however_its_id_is_spelled(
    api: Api, victim: Victim, attacker: tuple[str, str]
) -> None:
    attacker_id, attacker_key = attacker
    before = snapshot(api, victim)
    spellings = {**valid_spellings(victim.agent_id), **tricks(victim.agent_id, attacker_id)}
    answered: dict[int, int] = {}
    for name, spelled in spellings.items():
        for method, path, body in victim.routes(spelled):
            reply = api.request(method, path, key=attacker_key, body=body)
            assert reply.status in REFUSED, f"{name}: {method} {path} answered {reply.status} {reply.body}"
            assert reply.error_code is not None, f"{name}: {method} {path}: not the error envelope"
            answered[reply.status] = answered.get(reply.status, 0) + 1
    # Through the attacker's own path: the victim's session, its trace, its leased task.
    own = f"/agent/{attacker_id}"
    for method, path, body in (
        ("GET", f"{own}/sessions/{victim.session_id}", None),
        ("GET", f"{own}/sessions/{victim.session_id}/trace", None),
        ("POST", f"{own}/tasks/{victim.task_id}/heartbeat", None),
        ("POST", f"{own}/tasks/{victim.task_id}/result", {"status": "succeeded", "output": {"stolen": True}}),
    ):
        reply = api.request(method, path, key=attacker_key, body=body)
        assert (reply.status, reply.error_code) == (404, "not_found"), f"{method} {path}: {reply.body}"
    assert snapshot(api, victim) == before, "nothing of the victim's changed"
    assert set(answered) <= REFUSED


@pytest.mark.parametrize("name", list(valid_spellings("org:probe-agent-x")))
def test_an_agent_key_is_answered_as_the_admin_key_on_any_spelling_of_its_own_id(
    api: Api, victim: Victim, name: str
) -> None:
    spelled = valid_spellings(victim.agent_id)[name]
    for method, suffix in (
        ("GET", ""),
        ("GET", "/state/history"),
        ("GET", f"/sessions/{victim.session_id}"),
        ("GET", "/tasks"),
        ("POST", f"/tasks/{victim.task_id}/heartbeat"),
    ):
        path = f"/agent/{spelled}{suffix}"
        as_admin = api.admin(method, path)
        as_agent = api.request(method, path, key=victim.key)
        assert as_admin.status == 200, f"{method} {path} as admin: {as_admin.body}"
        assert as_agent.status == as_admin.status, f"{method} {path} as its own agent: {as_agent.body}"
    # The admin-only routes under its path stay refused, whatever the spelling.
    for method, suffix in (("POST", "/tasks"), ("DELETE", "/quarantine"), ("POST", "/workflow")):
        reply = api.request(method, f"/agent/{spelled}{suffix}", key=victim.key, body={"action": "x"})
        assert (reply.status, reply.error_code) == (403, "forbidden"), f"{method} {suffix}: {reply.body}"
