"""The v1 API over HTTP, used as an operator and an agent would use it, against `opscore local`."""

from __future__ import annotations

import json
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Api, LocalProcess, Reply


def new_agent_id() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}"


def at(seconds: float) -> str:
    """A timestamp `seconds` after a fixed past moment, in RFC 3339."""
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat()


def stored(seconds: float) -> str:
    """The same moment as at(seconds), as Ops-Core stores and returns it."""
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def agent(api: Api) -> tuple[str, str]:
    """A registered agent and its own key, as an operator would set one up."""
    agent_id = new_agent_id()
    created = api.admin("POST", "/keys", body={"agent_id": agent_id})
    assert created.status == 201
    registered = api.request("PUT", f"/agent/{agent_id}", key=created.body["api_key"], body={"name": "e2e agent"})
    assert registered.status == 201
    return agent_id, created.body["api_key"]


def all_history(api: Api, agent_id: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "100"}
    while True:
        page = api.request("GET", f"/agent/{agent_id}/state/history", key=key, query=query)
        assert page.status == 200
        items.extend(page.body["items"])
        if "next_token" not in page.body:
            return items
        query["next_token"] = page.body["next_token"]


def test_health_needs_no_key(api: Api) -> None:
    reply = api.request("GET", "/health")
    assert reply.status == 200
    assert reply.body["status"] == "ok"


def test_unknown_routes_and_methods_are_404_in_the_error_envelope(api: Api) -> None:
    for method, path in (("GET", "/nowhere"), ("DELETE", "/health"), ("PATCH", "/agent/a1")):
        reply = api.admin(method, path)
        assert (reply.status, reply.error_code) == (404, "not_found"), (method, path)
        assert reply.body["request_id"]


def test_missing_unknown_and_malformed_keys_are_401(api: Api) -> None:
    for key in (None, "opsk_never-issued", ""):
        reply = api.request("GET", "/agent/someone", key=key)
        assert (reply.status, reply.error_code) == (401, "unauthorized"), key


def test_an_agent_lifecycle_as_an_operator_and_the_agent_see_it(api: Api) -> None:
    agent_id = new_agent_id()
    # the operator issues the agent its key
    created = api.admin("POST", "/keys", body={"agent_id": agent_id})
    assert created.status == 201
    key = created.body["api_key"]

    # the agent registers itself (AgentKit does this at start-up), then re-syncs after an upgrade
    body = {"name": "Summariser", "version": "2.0.0", "capabilities": ["summarize"], "max_concurrency": 3}
    first = api.request("PUT", f"/agent/{agent_id}", key=key, body=body)
    assert first.status == 201
    again = api.request("PUT", f"/agent/{agent_id}", key=key, body={**body, "version": "2.1.0"})
    assert (again.status, again.body["version"]) == (200, "2.1.0")

    # it reports its lifecycle
    for second, state in enumerate(["initializing", "idle", "busy"]):
        reply = api.request("POST", f"/agent/{agent_id}/state", key=key, body={"state": state, "timestamp": at(second)})
        assert (reply.status, reply.body["version"], reply.body["state"]) == (200, second + 1, state)
    failure = {
        "state": "error",
        "timestamp": at(3),
        "details": {"task": "t-9"},
        "error": {"type": "RateLimited", "message": "provider said 429"},
    }
    assert api.request("POST", f"/agent/{agent_id}/state", key=key, body=failure).status == 200

    # the operator reads the agent and its history
    seen = api.admin("GET", f"/agent/{agent_id}")
    assert seen.status == 200
    assert seen.body["current_state"] == {
        "state": "error",
        "timestamp": stored(3),
        "details": {"task": "t-9"},
        "error": {"type": "RateLimited", "message": "provider said 429"},
        "version": 4,
    }
    history = all_history(api, agent_id, api.admin_key)
    assert [(entry["previous_state"], entry["state"]) for entry in history] == [
        ("busy", "error"),
        ("idle", "busy"),
        ("initializing", "idle"),
        (None, "initializing"),
    ]


def test_an_agent_key_cannot_reach_other_agents_or_manage_keys(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    other = new_agent_id()
    assert api.admin("PUT", f"/agent/{other}", body={"name": "other"}).status == 201
    for method, path, body in (
        ("GET", f"/agent/{other}", None),
        ("PUT", f"/agent/{other}", {"name": "hijack"}),
        ("POST", f"/agent/{other}/state", {"state": "paused", "timestamp": at(0)}),
        ("GET", f"/agent/{agent_id}0", None),
        ("POST", "/keys", {"role": "admin"}),
        ("DELETE", "/keys/0123456789abcdef", None),
    ):
        reply = api.request(method, path, key=key, body=body)
        assert (reply.status, reply.error_code) == (403, "forbidden"), (method, path)
    assert api.admin("GET", f"/agent/{other}").body["name"] == "other"


def test_agent_ids_with_a_colon_work_encoded_or_not(api: Api) -> None:
    """encodeURIComponent sends ':' as %3A; API Gateway passes the path as sent."""
    agent_id = f"org:{new_agent_id()}"
    key = api.admin("POST", "/keys", body={"agent_id": agent_id}).body["api_key"]
    encoded = agent_id.replace(":", "%3A")
    registered = api.request("PUT", f"/agent/{encoded}", key=key, body={"name": "colon agent"})
    assert (registered.status, registered.body["agent_id"]) == (201, agent_id)
    assert (
        api.request("POST", f"/agent/{agent_id}/state", key=key, body={"state": "idle", "timestamp": at(0)}).status
        == 200
    )
    assert api.request("GET", f"/agent/{encoded}", key=key).body["current_state"]["state"] == "idle"


def test_a_revoked_key_is_refused_from_its_next_request(api: Api, agent: tuple[str, str]) -> None:
    agent_id, _ = agent
    created = api.admin("POST", "/keys", body={"agent_id": agent_id})
    key, key_id = created.body["api_key"], created.body["key_id"]
    assert api.request("GET", f"/agent/{agent_id}", key=key).status == 200
    assert api.admin("DELETE", f"/keys/{key_id}").status == 204
    reply = api.request("GET", f"/agent/{agent_id}", key=key)
    assert (reply.status, reply.error_code) == (401, "unauthorized")
    assert api.admin("DELETE", "/keys/00000000000000ff").status == 404


def test_bad_input_is_a_clear_4xx_and_changes_nothing(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    path = f"/agent/{agent_id}/state"
    assert api.request("POST", path, key=key, body={"state": "idle", "timestamp": at(0)}).status == 200
    before = api.request("GET", f"/agent/{agent_id}", key=key).body

    cases: list[tuple[dict[str, Any], int, str, list[str]]] = [
        ({"raw": b'{"state": "idle", '}, 400, "validation_error", [""]),
        ({"body": {"state": "asleep", "timestamp": at(1)}}, 400, "validation_error", ["state"]),
        ({"body": {"state": "idle"}}, 400, "validation_error", ["timestamp"]),
        ({"body": {"state": "idle", "timestamp": "yesterday"}}, 400, "validation_error", ["timestamp"]),
        (
            {"body": {"state": ["idle"], "timestamp": at(1), "details": "x"}},
            400,
            "validation_error",
            ["details", "state"],
        ),
        (
            {"body": {"state": "idle", "timestamp": at(1), "error": {"type": ""}}},
            400,
            "validation_error",
            ["error.type"],
        ),
        (
            {"raw": b"state=idle", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported_media_type",
            [],
        ),
        ({"body": {"state": "idle", "timestamp": at(1), "details": {"x": "y" * 66_000}}}, 413, "payload_too_large", []),
    ]
    for request, status, code, fields in cases:
        reply = api.request("POST", path, key=key, **request)
        assert (reply.status, reply.error_code) == (status, code), request
        assert sorted(problem["field"] for problem in reply.body["error"].get("details", [])) == fields, request
    bad_id = api.admin("GET", "/agent/-bad")
    assert (bad_id.status, bad_id.body["error"]["details"][0]["field"]) == (400, "agentId")
    assert api.request("GET", f"/agent/{agent_id}", key=key).body == before


def test_stale_and_repeated_updates(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    path = f"/agent/{agent_id}/state"
    update = {"state": "busy", "timestamp": at(10), "details": {"task": "t-1"}}
    first = api.request("POST", path, key=key, body=update)
    assert first.status == 200
    repeat = api.request("POST", path, key=key, body=update)
    assert (repeat.status, repeat.body) == (200, first.body)

    stale = api.request("POST", path, key=key, body={"state": "idle", "timestamp": at(9)})
    assert (stale.status, stale.error_code) == (409, "stale_state")
    assert stale.body["error"]["details"][0]["field"] == "timestamp"
    assert api.request("GET", f"/agent/{agent_id}", key=key).body["current_state"]["state"] == "busy"
    assert len(all_history(api, agent_id, key)) == 1


def test_concurrent_updates_lose_nothing_and_apply_nothing_twice(api: Api, agent: tuple[str, str]) -> None:
    agent_id, key = agent
    path = f"/agent/{agent_id}/state"
    seconds = list(range(60))
    random.Random(7).shuffle(seconds)  # arrival order differs from timestamp order, so some updates are stale
    updates = [
        {"state": random.Random(s).choice(["idle", "busy"]), "timestamp": at(s), "details": {"n": s}} for s in seconds
    ]
    # each update is also sent twice more, at the same time as everything else
    sends = updates * 3
    random.Random(11).shuffle(sends)

    def send(update: dict[str, Any]) -> tuple[dict[str, Any], Reply]:
        return update, api.request("POST", path, key=key, body=update)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, sends))

    accepted: dict[str, int] = {}
    answers: dict[str, set[int]] = {}
    for update, reply in results:
        assert reply.status in (200, 409), reply.body
        answers.setdefault(update["timestamp"], set()).add(reply.status)
        if reply.status == 200:
            version = accepted.setdefault(reply.body["timestamp"], reply.body["version"])
            assert version == reply.body["version"], "every send of one update answers with one version"
    assert all(len(statuses) == 1 for statuses in answers.values()), "the sends of one update agree"
    assert 0 < len(accepted) < len(updates), "arrival order made some updates stale"
    history = all_history(api, agent_id, key)
    assert sorted(entry["timestamp"] for entry in history) == sorted(accepted), "every 200 is in history exactly once"
    assert sorted(entry["version"] for entry in history) == list(range(1, len(history) + 1))
    assert [entry["timestamp"] for entry in history] == sorted(accepted, reverse=True)
    sent_details = {stored(update["details"]["n"]): update["details"] for update in updates}
    assert all(entry["details"] == sent_details[entry["timestamp"]] for entry in history), "each entry is its update"
    newest = max(accepted)
    assert api.request("GET", f"/agent/{agent_id}", key=key).body["current_state"]["timestamp"] == newest


def test_logs_are_json_lines_with_correlation_and_agent(
    api: Api, agent: tuple[str, str], local_ops_core: LocalProcess | None
) -> None:
    if local_ops_core is None:
        pytest.skip("reads the local runtime's log file")
    agent_id, key = agent
    reply = api.request("POST", f"/agent/{agent_id}/state", key=key, body={"state": "paused", "timestamp": at(0)})
    request_id = reply.headers["x-amzn-RequestId"]
    lines = [json.loads(line) for line in local_ops_core.log_path.read_text().splitlines()]
    change = next(
        line for line in lines if line.get("correlation_id") == request_id and line.get("event") == "state_changed"
    )
    assert change["agent_id"] == agent_id
    assert "old" not in change, "a first state has no old state (Powertools leaves out None values)"
    assert change["new"] == "paused"
    assert change["function_name"] == "StateUpdateFunction"
    assert change["service"] == "opscore"
    assert any(line.get("StateChanges") == [1.0] for line in lines), "metrics are EMF lines in the same log"
