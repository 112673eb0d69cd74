"""A small Ops-Core in memory, behind httpx's MockTransport, for the worker's tests: the routes a polling agent uses,
with the rules the worker depends on (stale state timestamps refused, 204 on an empty queue, quarantine's 409 with
Retry-After, heartbeats of a lost lease answered 409 task_not_open), switches to make heartbeats fail, and gates
that hold a route's requests until a test opens them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from opscore_sdk import NO_RETRIES, OpsCore, RetryPolicy
from tests.sdk.conftest import API_KEY, BASE_URL, error_body

SESSION = "a" * 32


def leased(
    number: int, action: str = "web.fetch", *, heartbeat_seconds: int | None = 30, attempt: int = 1
) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(seconds=heartbeat_seconds or 300)
    return {
        "task_id": f"{SESSION}-{number:03d}",
        "session_id": SESSION,
        "action": action,
        "input": {"n": number},
        "session_input": {},
        "priority": 5,
        "attempt": attempt,
        "lease_expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "heartbeat_seconds": heartbeat_seconds,
        "timeout_seconds": 300,
        "attempt_deadline": (datetime.now(UTC) + timedelta(seconds=300)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


class FakeOpsCore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[dict[str, Any]] = []
        self.registrations: list[dict[str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.heartbeats: list[str] = []
        self.lost: set[str] = set()  # task ids whose lease Ops-Core ended
        self.quarantine_retry_after: int | None = None
        self.heartbeats_unanswered = False
        self.takes_retryable = True
        self.refuses_key = False
        self.leases = 0
        # A route (its last path segment: "heartbeat", "state") held closed: its requests wait until the gate opens;
        # `held[route]` is set once one waits.
        self.gates: dict[str, threading.Event] = {}
        self.held: dict[str, threading.Event] = {}
        # Routes whose requests fail with an exception no client turns into an OpsCoreError (a bug, say).
        self.broken: set[str] = set()

    def client(self, retries: RetryPolicy = NO_RETRIES) -> OpsCore:
        return OpsCore(BASE_URL, API_KEY, retries=retries, transport=httpx.MockTransport(self))

    def hold(self, route: str) -> threading.Event:
        """Hold `route`'s requests; answer the gate to open."""
        self.held[route] = threading.Event()
        self.gates[route] = threading.Event()
        return self.gates[route]

    @property
    def state_names(self) -> list[str]:
        with self.lock:
            return [state["state"] for state in self.states]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/opscore")
        body = json.loads(request.content) if request.content else None
        route = path.rsplit("/", 1)[-1]
        if route in self.gates:
            self.held[route].set()
            self.gates[route].wait()
        if route in self.broken:
            raise RuntimeError(f"the {route} route is broken")
        with self.lock:
            return self._route(request.method, path.split("/")[1:], body)

    def _route(self, method: str, parts: list[str], body: Any) -> httpx.Response:
        routes: dict[tuple[str, int, str], Callable[[list[str], Any], httpx.Response]] = {
            ("PUT", 2, ""): self._register,
            ("POST", 3, "state"): self._state,
            ("POST", 4, "next"): self._next,
            ("POST", 5, "heartbeat"): self._heartbeat,
            ("POST", 5, "result"): self._result,
        }
        route = routes.get((method, len(parts), parts[-1] if len(parts) > 2 else ""))
        return route(parts, body) if route else _answer(404, error_body("not_found"))

    def _register(self, parts: list[str], body: Any) -> httpx.Response:
        self.registrations.append(body)
        stamp = "2026-01-01T00:00:00.000000Z"
        agent = {
            "agent_id": parts[1],
            "capabilities": body.get("capabilities", []),
            "current_state": None,
            "delivery": "poll",
            "endpoint": None,
            "failure_streak": 0,
            "last_seen_at": None,
            "max_concurrency": body.get("max_concurrency", 1),
            "metadata": {},
            "name": body["name"],
            "offline_after_seconds": 300,
            "quarantine": None,
            "quarantine_after": 3,
            "quarantine_cooldown_seconds": 300,
            "quarantine_window_seconds": 600,
            "quarantined": False,
            "queue": {"in_flight": 0, "queued": 0, "queued_by_priority": {}},
            "registered_at": stamp,
            "updated_at": stamp,
            "version": None,
        }
        return _answer(200, agent)

    def _state(self, parts: list[str], body: Any) -> httpx.Response:
        if self.states and body["timestamp"] <= self.states[-1]["timestamp"]:
            return _answer(409, error_body("stale_state"))
        self.states.append(body)
        stored = {"agent_id": parts[1], "state": body["state"], "previous_state": None, "version": len(self.states)}
        return _answer(200, {**stored, "timestamp": body["timestamp"][:26] + "Z"})

    def _next(self, parts: list[str], body: Any) -> httpx.Response:
        if self.refuses_key:
            return _answer(401, error_body("unauthorized"))
        if self.quarantine_retry_after is not None:
            retry = {"Retry-After": str(self.quarantine_retry_after)}
            return _answer(409, error_body("agent_quarantined"), retry)
        if not self.queue:
            return httpx.Response(204)
        self.leases += 1
        return _answer(200, self.queue.pop(0))

    def _heartbeat(self, parts: list[str], body: Any) -> httpx.Response:
        task_id = parts[3]
        if self.heartbeats_unanswered:
            raise httpx.ConnectError("connection refused")
        self.heartbeats.append(task_id)
        if task_id in self.lost or task_id in self.results:
            return _answer(409, error_body("task_not_open"))
        expires = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return _answer(200, {"task_id": task_id, "attempt": 1, "lease_expires_at": expires})

    def _result(self, parts: list[str], body: Any) -> httpx.Response:
        task_id = parts[3]
        if "retryable" in (body.get("error") or {}) and not self.takes_retryable:
            detail = {"field": "error.retryable", "in": "body", "message": "Extra inputs", "type": "extra_forbidden"}
            return _answer(400, error_body("validation_error", details=[detail]))
        if task_id in self.lost:
            return _answer(409, error_body("task_not_open"))
        self.results[task_id] = body
        accepted = {"task_id": task_id, "session_id": SESSION, "attempt": body["attempt"], "status": body["status"]}
        return _answer(200, accepted)


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers or {})
