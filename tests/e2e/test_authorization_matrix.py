"""The authorization matrix (tests/e2e/authorization_matrix.py), every cell run over HTTP against the local runtime.

Each route's row has its own agent, so what one row's allowed calls change (a lease, a lifted quarantine, a revoked
key) cannot change another row's answers; within a row, an allowed call that uses a resource up (a result, a
cancel, a revoke) is given a fresh one, and the refused calls all aim at the row's standing resources.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.authorization_matrix import COLUMNS, MATRIX
from tests.e2e.conftest import Api, Contract

DEADLINE_SECONDS = 30.0
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
TEMPLATE_TASK = {"id": "work", "action": "matrix.work", "timeout_seconds": 3600}
# Longer than any key may be (256): refused before it is even hashed.
MALFORMED_KEY = "opsk_" + "x" * 300
# Room for every lease a row makes (an agent holding max_concurrency leases is handed nothing more).
REGISTRATION = {"name": "matrix agent", "max_concurrency": 100}

Route = tuple[str, str]


def until[T](probe: Callable[[], T | None], what: str) -> T:
    """Poll `probe` (never a fixed sleep) until it gives a value, for at most DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (value := probe()) is None:
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.05)
    return value


@dataclass
class Call:
    path: str
    body: Any = None


@dataclass
class Scene:
    """One row's agent, with its key, and the resources the row's calls aim at (made the first time one asks)."""

    api: Api
    agent_id: str
    key: str
    key_id: str
    revoked_key: str
    workflow_id: str
    standing: dict[str, str] = field(default_factory=dict)
    fresh: bool = False  # the cell being run is allowed: what its call uses up is made for it

    @property
    def path(self) -> str:
        return f"/agent/{self.agent_id}"

    def once(self, name: str, make: Callable[[], str]) -> str:
        if name not in self.standing:
            self.standing[name] = make()
        return self.standing[name]

    def new_key_id(self) -> str:
        created = self.api.admin("POST", "/keys", body={"agent_id": self.agent_id})
        assert created.status == 201, created.body
        return str(created.body["key_id"])

    def start_session(self) -> str:
        started = self.api.admin("POST", f"{self.path}/workflow", body={"workflow_id": self.workflow_id})
        assert started.status == 202, started.body
        return str(started.body["session_id"])

    def session(self) -> str:
        return self.once("session", self.start_session)

    def queued_ids(self) -> list[str]:
        page = self.api.admin("GET", f"{self.path}/tasks", query={"status": "queued"})
        assert page.status == 200, page.body
        return [item["task_id"] for item in page.body["items"]]

    def queue_task(self) -> str:
        started = self.api.admin("POST", f"{self.path}/tasks", body={"action": "matrix.work", "timeout_seconds": 3600})
        assert started.status == 202, started.body
        task_id = str(started.body["task_id"])
        return until(lambda: task_id if task_id in self.queued_ids() else None, f"queued {task_id}")

    def ensure_queued(self) -> None:
        if not self.queued_ids():
            self.queue_task()

    def lease(self) -> str:
        task_id = self.queue_task()
        leased = self.api.request("POST", f"{self.path}/tasks/next", key=self.key)
        assert (leased.status, leased.body["task_id"]) == (200, task_id), leased.body
        return task_id

    def leased(self) -> str:
        return self.once("leased", self.lease)

    def quarantine(self) -> str:
        """Open the agent's breaker: one failure of its own fault (quarantine_after 1)."""
        settings = {**REGISTRATION, "quarantine_after": 1, "quarantine_cooldown_seconds": 3600}
        assert self.api.request("PUT", self.path, key=self.key, body=settings).status == 200
        error = {"type": "OutOfMemory", "message": "gone", "fault": "agent"}
        task_id = self.lease()
        failed = self.api.request(
            "POST", f"{self.path}/tasks/{task_id}/result", key=self.key, body={"status": "failed", "error": error}
        )
        assert failed.status == 200, failed.body
        until(lambda: True if self.api.admin("GET", self.path).body["quarantined"] else None, "quarantined")
        return task_id


def now() -> str:
    return datetime.now(UTC).isoformat()


# How to make a valid request of each route for a row's agent. When the cell is allowed (`s.fresh`), a resource its
# call uses up is made for it; refused cells aim at the row's standing resources, which they must not change.
RECIPES: dict[Route, Callable[[Scene], Call]] = {
    ("GET", "/health"): lambda _: Call("/health"),
    ("POST", "/keys"): lambda s: Call("/keys", {"agent_id": s.agent_id}),
    ("DELETE", "/keys/{keyId}"): lambda s: Call(f"/keys/{s.new_key_id() if s.fresh else s.key_id}"),
    ("GET", "/keys"): lambda _: Call("/keys"),
    ("POST", "/keys/{keyId}/rotate"): lambda s: Call(f"/keys/{s.new_key_id() if s.fresh else s.key_id}/rotate"),
    ("POST", "/workflows"): lambda _: Call(
        "/workflows", {"name": f"matrix-{uuid.uuid4().hex[:12]}", "tasks": [TEMPLATE_TASK]}
    ),
    ("GET", "/workflows"): lambda _: Call("/workflows"),
    ("GET", "/workflows/{workflowId}"): lambda s: Call(f"/workflows/{s.workflow_id}"),
    ("GET", "/agents"): lambda _: Call("/agents"),
    ("GET", "/sessions/{sessionId}/trace"): lambda s: Call(f"/sessions/{s.session()}/trace"),
    ("PUT", "/agent/{agentId}"): lambda s: Call(s.path, REGISTRATION),
    ("GET", "/agent/{agentId}"): lambda s: Call(s.path),
    ("POST", "/agent/{agentId}/state"): lambda s: Call(f"{s.path}/state", {"state": "idle", "timestamp": now()}),
    ("GET", "/agent/{agentId}/stats"): lambda s: Call(f"{s.path}/stats"),
    ("GET", "/agent/{agentId}/state/history"): lambda s: Call(f"{s.path}/state/history"),
    ("GET", "/agent/{agentId}/sessions"): lambda s: Call(f"{s.path}/sessions"),
    ("GET", "/agent/{agentId}/sessions/{sessionId}"): lambda s: Call(f"{s.path}/sessions/{s.session()}"),
    ("GET", "/agent/{agentId}/sessions/{sessionId}/trace"): lambda s: Call(f"{s.path}/sessions/{s.session()}/trace"),
    ("GET", "/agent/{agentId}/tasks"): lambda s: Call(f"{s.path}/tasks"),
    ("POST", "/agent/{agentId}/tasks/next"): lambda s: (s.ensure_queued(), Call(f"{s.path}/tasks/next"))[1],
    ("POST", "/agent/{agentId}/tasks/{taskId}/result"): lambda s: Call(
        f"{s.path}/tasks/{s.lease() if s.fresh else s.leased()}/result", {"status": "succeeded", "output": {}}
    ),
    ("POST", "/agent/{agentId}/tasks/{taskId}/heartbeat"): lambda s: Call(f"{s.path}/tasks/{s.leased()}/heartbeat"),
    ("DELETE", "/agent/{agentId}/quarantine"): lambda s: (
        s.once("quarantined", s.quarantine),
        Call(f"{s.path}/quarantine"),
    )[1],
    ("POST", "/agent/{agentId}/workflow"): lambda s: Call(f"{s.path}/workflow", {"workflow_id": s.workflow_id}),
    ("POST", "/agent/{agentId}/tasks"): lambda s: Call(f"{s.path}/tasks", {"action": "matrix.work"}),
    ("POST", "/agent/{agentId}/sessions/{sessionId}/cancel"): lambda s: Call(
        f"{s.path}/sessions/{s.start_session() if s.fresh else s.session()}/cancel"
    ),
}


@dataclass
class World:
    api: Api
    scenes: dict[Route, Scene]
    other_key: str
    expired: dict[str, str] | None = None

    def key(self, column: str, scene: Scene) -> str | None:
        keys: dict[str, Callable[[], str | None]] = {
            "no_key": lambda: None,
            "malformed": lambda: MALFORMED_KEY,
            "unknown": lambda: "opsk_" + secrets.token_urlsafe(32),
            "revoked": lambda: scene.revoked_key,
            "expired": lambda: self.expired_keys()[scene.agent_id],
            "admin": lambda: self.api.admin_key,
            "own": lambda: scene.key,
            "other": lambda: self.other_key,
        }
        return keys[column]()

    def expired_keys(self) -> dict[str, str]:
        """Each row agent's own key, issued to expire two seconds on (all at once: one wait for every row), then
        polled until the authorizer refuses it."""
        if self.expired is None:
            expires_at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
            keys: dict[str, str] = {}
            for scene in self.scenes.values():
                created = self.api.admin("POST", "/keys", body={"agent_id": scene.agent_id, "expires_at": expires_at})
                assert created.status == 201, created.body
                keys[scene.agent_id] = created.body["api_key"]
            for agent_id, key in keys.items():
                until(
                    lambda: True if self.api.request("GET", f"/agent/{agent_id}", key=key).status == 401 else None,  # noqa: B023 - called at once
                    f"refused the expired key of {agent_id}",
                )
            self.expired = keys
        return self.expired


def new_agent(api: Api) -> tuple[str, str, str]:
    agent_id = f"mx-{uuid.uuid4().hex[:12]}"
    created = api.admin("POST", "/keys", body={"agent_id": agent_id})
    assert created.status == 201, created.body
    key = created.body["api_key"]
    assert api.request("PUT", f"/agent/{agent_id}", key=key, body=REGISTRATION).status == 201
    return agent_id, key, created.body["key_id"]


@pytest.fixture(scope="module")
def world(api: Api) -> World:
    workflow_id = f"matrix-{uuid.uuid4().hex[:12]}"
    assert api.admin("POST", "/workflows", body={"name": workflow_id, "tasks": [TEMPLATE_TASK]}).status == 201
    scenes: dict[Route, Scene] = {}
    for route in MATRIX:
        agent_id, key, key_id = new_agent(api)
        revoked = api.admin("POST", "/keys", body={"agent_id": agent_id}).body
        assert api.admin("DELETE", f"/keys/{revoked['key_id']}").status == 204
        scenes[route] = Scene(api, agent_id, key, key_id, revoked["api_key"], workflow_id)
    _, other_key, _ = new_agent(api)
    return World(api, scenes, other_key)


def documented_routes(contract: Contract) -> set[Route]:
    return {
        (method.upper(), path)
        for path, item in contract.spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_the_matrix_has_a_row_for_every_route_of_the_document(contract: Contract) -> None:
    routes = documented_routes(contract)
    assert set(MATRIX) == routes, "a row per route of docs/openapi.yaml, and no other"
    assert set(RECIPES) == routes, "a valid request for every route"


CELLS = [pytest.param(route, column, id=f"{route[0]} {route[1]} {column}") for route in MATRIX for column in COLUMNS]


@pytest.mark.parametrize(("route", "column"), CELLS)
def test_each_caller_gets_the_status_the_matrix_says(world: World, route: Route, column: str) -> None:
    expected = getattr(MATRIX[route], column)
    scene = world.scenes[route]
    scene.fresh = column in ("admin", "own") and expected not in (401, 403)
    call = RECIPES[route](scene)
    key = world.key(column, scene)
    reply = world.api.request(route[0], call.path, key=key, body=call.body)
    assert reply.status == expected, f"{route[0]} {call.path} as {column}: {reply.status} {reply.body}"
