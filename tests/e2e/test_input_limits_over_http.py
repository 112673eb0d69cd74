"""Hostile and oversized input over HTTP, against `opscore local`: each class is a 4xx naming what is wrong (never a
500), and a read afterwards shows nothing changed. The limits are docs/security.md's "Limits on input" table."""

from __future__ import annotations

import json
import uuid
from typing import Any

import jsonschema
import pytest

from tests.e2e.conftest import Api, Contract, Reply
from tests.e2e.test_sessions_over_http import Operator

NOT_UTF8 = b'{"name": "caf\xe9"}'  # Latin-1, as a misconfigured client sends it


def new_name() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def refused(reply: Reply, status: int = 400, error_type: str | None = None, field: str | None = None) -> None:
    assert reply.status == status, reply.body
    details = reply.body["error"].get("details", [])
    if error_type is not None:
        assert error_type in [problem["type"] for problem in details], reply.body
    if field is not None:
        assert field in [problem["field"] for problem in details], reply.body


@pytest.fixture
def ops(api: Api) -> Operator:
    return Operator(api)


def agent_view(ops: Operator) -> dict[str, Any]:
    reply = ops.api.request("GET", f"/agent/{ops.agent_id}", key=ops.agent_key)
    assert reply.status == 200
    view = dict(reply.body)
    view.pop("last_seen_at")  # a read counts as contact on no route, but a refused write may not count either way
    return view


def state_history(ops: Operator) -> list[dict[str, Any]]:
    reply = ops.api.request("GET", f"/agent/{ops.agent_id}/state/history", key=ops.agent_key)
    assert reply.status == 200
    return list(reply.body["items"])


# --------------------------------------------------------------------------- bodies that are not UTF-8


def test_a_body_that_is_not_utf8_is_400_on_every_body_route_and_changes_nothing(api: Api, ops: Operator) -> None:
    before, history = agent_view(ops), state_history(ops)
    agent = f"/agent/{ops.agent_id}"
    for method, path, key in [
        ("PUT", agent, ops.agent_key),
        ("POST", f"{agent}/state", ops.agent_key),
        ("POST", "/keys", api.admin_key),
        ("POST", "/workflows", api.admin_key),
        ("POST", f"{agent}/workflow", api.admin_key),
        ("POST", f"{agent}/tasks", api.admin_key),
        ("POST", f"{agent}/tasks/{'0' * 32}-000/result", ops.agent_key),
    ]:
        refused(api.request(method, path, key=key, raw=NOT_UTF8), 400, "utf8_invalid")
    refused(api.admin("POST", "/workflows", raw=b"name: caf\xe9\n", headers={"Content-Type": "application/yaml"}))
    assert (agent_view(ops), state_history(ops)) == (before, history)
    sessions = api.request("GET", f"{agent}/sessions", key=ops.agent_key)
    assert sessions.body["items"] == [], "no session was started"


# --------------------------------------------------------------------------- YAML numbers, keys, nesting


def test_a_yaml_integer_past_pythons_digit_limit_is_400_and_stores_nothing(api: Api) -> None:
    name = new_name()
    text = f"name: {name}\ntasks:\n  - id: a\n    action: x\n    input: {{n: {'9' * 5000}}}\n"
    reply = api.admin("POST", "/workflows", raw=text.encode(), headers={"Content-Type": "application/yaml"})
    refused(reply, 400, "yaml_type")
    assert api.admin("GET", f"/workflows/{name}").status == 404


def test_a_key_twice_in_an_object_is_400_naming_it_in_json_and_yaml(api: Api, ops: Operator) -> None:
    other = f"e2e-{uuid.uuid4().hex[:10]}"
    reply = api.admin("POST", "/keys", raw=f'{{"agent_id": "{ops.agent_id}", "agent_id": "{other}"}}'.encode())
    refused(reply, 400, "duplicate_key", "agent_id")
    assert "agent_id" in reply.body["error"]["message"]

    before = agent_view(ops)
    body = b'{"name": "one", "metadata": {"team": "a", "team": "b"}}'
    refused(api.request("PUT", f"/agent/{ops.agent_id}", key=ops.agent_key, raw=body), 400, "duplicate_key", "team")
    assert agent_view(ops) == before

    name = new_name()
    text = f"name: {name}\ntasks:\n  - id: a\n    action: x\n    action: y\n"
    yaml_reply = api.admin("POST", "/workflows", raw=text.encode(), headers={"Content-Type": "application/yaml"})
    refused(yaml_reply, 400, "duplicate_key", "action")
    assert api.admin("GET", f"/workflows/{name}").status == 404


def test_nesting_past_the_limit_is_400_naming_it_before_the_model_reads_it(api: Api, ops: Operator) -> None:
    before = agent_view(ops)
    deep: Any = "x"
    for _ in range(40):
        deep = {"d": deep}
    reply = ops.api.request("PUT", f"/agent/{ops.agent_id}", key=ops.agent_key, body={"name": "x", "metadata": deep})
    refused(reply, 400, "too_deep")
    assert "32" in reply.body["error"]["message"]
    yaml_deep = "name: x\ntasks: " + "[" * 40 + "]" * 40 + "\n"
    yaml_reply = api.admin("POST", "/workflows", raw=yaml_deep.encode(), headers={"Content-Type": "application/yaml"})
    refused(yaml_reply, 400, "yaml_depth")
    assert agent_view(ops) == before


# --------------------------------------------------------------------------- free text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bot\u0000"}, "name"),
        ({"name": "bot\u001b[31m"}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "bot", "version": "1.0\u0000"}, "version"),
        ({"name": "bot\u0085"}, "name"),
    ],
)
def test_control_characters_in_a_registration_are_400_and_change_nothing(
    ops: Operator, body: dict[str, Any], field: str
) -> None:
    before = agent_view(ops)
    refused(ops.api.request("PUT", f"/agent/{ops.agent_id}", key=ops.agent_key, body=body), 400, None, field)
    assert agent_view(ops) == before


def test_error_text_keeps_tab_and_newline_but_refuses_other_control_characters(ops: Operator) -> None:
    history = state_history(ops)
    report: dict[str, Any] = {"state": "error", "timestamp": "2026-01-01T00:00:00Z"}
    for error, field in [
        ({"type": "Tool\u0000Error"}, "error.type"),
        ({"type": "ToolError", "message": "bad\u0007bell"}, "error.message"),
    ]:
        reply = ops.api.request(
            "POST", f"/agent/{ops.agent_id}/state", key=ops.agent_key, body={**report, "error": error}
        )
        refused(reply, 400, None, field)
    assert state_history(ops) == history

    traceback = {"type": "ToolError", "message": "Traceback:\n\tline 1\r\n"}
    accepted = ops.api.request(
        "POST", f"/agent/{ops.agent_id}/state", key=ops.agent_key, body={**report, "error": traceback}
    )
    assert accepted.status == 200, accepted.body
    assert state_history(ops)[0]["error"] == traceback


def test_a_workflow_description_with_a_nul_is_400_and_stores_nothing(api: Api) -> None:
    name = new_name()
    template = {"name": name, "description": "fetch\u0000", "tasks": [{"id": "a", "action": "x"}]}
    refused(api.admin("POST", "/workflows", body=template), 400, None, "description")
    assert api.admin("GET", f"/workflows/{name}").status == 404


# --------------------------------------------------------------------------- routes that take no body


def test_routes_without_a_body_refuse_one_and_do_nothing(api: Api, ops: Operator) -> None:
    session_id = ops.start([{"id": "a", "action": "x"}])
    task_id = ops.queued(session_id, "a")
    big = b"x" * (70 * 1024)
    agent = f"/agent/{ops.agent_id}"
    plain = {"Content-Type": "text/plain"}
    for method, path, key in [
        ("POST", f"{agent}/tasks/next", ops.agent_key),
        ("POST", f"{agent}/tasks/{task_id}/heartbeat", ops.agent_key),
        ("POST", f"{agent}/sessions/{session_id}/cancel", api.admin_key),
        ("GET", f"{agent}/sessions/{session_id}", ops.agent_key),
        ("DELETE", f"{agent}/quarantine", api.admin_key),
        ("GET", "/health", None),
    ]:
        refused(api.request(method, path, key=key, raw=big, headers=plain), 400, "body_not_allowed")
    refused(api.request("POST", f"{agent}/tasks/next", key=ops.agent_key, raw=b"{}"), 400, "body_not_allowed")

    view = ops.view(session_id)
    assert (view["status"], view["tasks"][0]["status"]) == ("processing", "queued"), "not leased, not cancelled"
    assert ops.next_task().body["task_id"] == task_id, "a bodyless lease still works"


# --------------------------------------------------------------------------- numbers


def test_integers_may_be_written_with_a_zero_fraction_but_not_with_another(ops: Operator) -> None:
    path = f"/agent/{ops.agent_id}"
    reply = ops.api.request("PUT", path, key=ops.agent_key, body={"name": "x", "max_concurrency": 3.0})
    assert reply.status == 200, reply.body
    assert agent_view(ops)["max_concurrency"] == 3
    refused(ops.api.request("PUT", path, key=ops.agent_key, body={"name": "x", "max_concurrency": 3.5}), 400)
    refused(ops.api.request("PUT", path, key=ops.agent_key, body={"name": "x", "max_concurrency": "3"}), 400)
    assert agent_view(ops)["max_concurrency"] == 3


def test_a_workflow_version_up_to_the_documented_maximum_is_read_not_refused(api: Api) -> None:
    name = new_name()
    assert api.admin("POST", "/workflows", body={"name": name, "tasks": [{"id": "a", "action": "x"}]}).status == 201
    assert api.admin("GET", f"/workflows/{name}", query={"version": "1000000000"}).status == 404
    assert api.admin("GET", f"/workflows/{name}", query={"version": "9999999999"}).status == 404
    refused(api.admin("GET", f"/workflows/{name}", query={"version": "10000000000"}), 400, None, "version")


def test_a_heartbeat_not_below_the_timeout_is_400(api: Api) -> None:
    name = new_name()
    task = {"id": "a", "action": "x", "timeout_seconds": 86_400, "heartbeat_seconds": 86_400}
    refused(
        api.admin("POST", "/workflows", body={"name": name, "tasks": [task]}), 400, None, "tasks.0.heartbeat_seconds"
    )
    assert api.admin("GET", f"/workflows/{name}").status == 404


# --------------------------------------------------------------------------- tokens and secrets


@pytest.mark.parametrize("token", ["not a token!", "x" * 1025, "eyJQSyI6IkFHRU5UI3gifQ"])
def test_a_next_token_this_listing_did_not_make_is_400_naming_it(ops: Operator, token: str) -> None:
    reply = ops.api.request(
        "GET", f"/agent/{ops.agent_id}/state/history", key=ops.agent_key, query={"next_token": token}
    )
    refused(reply, 400, None, "next_token")


# --------------------------------------------------------------------------- null where the document has no null
# A field may be left out (its default), but its documented type has no null: `null` is a 400 naming it, as
# docs/openapi.yaml says, and nothing changes.


@pytest.mark.parametrize("field", ["webhook_secret", "endpoint", "version"])
def test_a_null_registration_field_is_400_rather_than_its_default(ops: Operator, field: str) -> None:
    before = agent_view(ops)
    body = {"name": "x", field: None}
    refused(ops.api.request("PUT", f"/agent/{ops.agent_id}", key=ops.agent_key, body=body), 400, None, field)
    assert agent_view(ops) == before


def all_keys(api: Api) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = []
    query: dict[str, str] = {"limit": "100"}
    while True:
        page = api.admin("GET", "/keys", query=query)
        assert page.status == 200, page.body
        keys += page.body["items"]
        if "next_token" not in page.body:
            return keys
        query = {"limit": "100", "next_token": page.body["next_token"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"role": "admin", "agent_id": None}, "agent_id"), ({"role": None, "agent_id": "e2e-null-role"}, "role")],
)
def test_a_null_in_a_key_request_is_400_naming_it_and_makes_no_key(api: Api, body: dict[str, Any], field: str) -> None:
    before = all_keys(api)
    refused(api.admin("POST", "/keys", body=body), 400, None, field)
    assert all_keys(api) == before


@pytest.mark.parametrize("field", ["priority", "version"])
def test_a_null_in_a_trigger_is_400_naming_it_and_starts_nothing(api: Api, ops: Operator, field: str) -> None:
    name = new_name()
    assert api.admin("POST", "/workflows", body={"name": name, "tasks": [{"id": "a", "action": "x"}]}).status == 201
    body = {"workflow_id": name, field: None}
    refused(api.admin("POST", f"/agent/{ops.agent_id}/workflow", body=body), 400, None, field)
    sessions = api.request("GET", f"/agent/{ops.agent_id}/sessions", key=ops.agent_key)
    assert sessions.body["items"] == [], "no session was started"


@pytest.mark.parametrize("field", ["output", "attempt"])
def test_a_null_in_a_result_is_400_naming_it_and_the_task_stays_leased(ops: Operator, field: str) -> None:
    session_id = ops.start([{"id": "a", "action": "x"}])
    task_id = ops.lease(session_id, "a")
    body = {"status": "succeeded", field: None}
    path = f"/agent/{ops.agent_id}/tasks/{task_id}/result"
    refused(ops.api.request("POST", path, key=ops.agent_key, body=body), 400, None, field)
    assert [task["status"] for task in ops.view(session_id)["tasks"]] == ["leased"]


def test_null_expiries_are_documented_as_no_expiry_and_taken_as_such(api: Api) -> None:
    # The one place the document does allow null: a key's expiry (absent or null: no expiry).
    created = api.admin("POST", "/keys", body={"role": "admin", "expires_at": None})
    assert (created.status, created.body["expires_at"]) == (201, None), created.body
    body = {"expires_at": None, "old_key_expires_at": None}
    rotated = api.admin("POST", f"/keys/{created.body['key_id']}/rotate", body=body)
    assert (rotated.status, rotated.body["expires_at"]) == (201, None), rotated.body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/keys", {"role": "admin", "agent_id": "e2e-both"}),
        ("/keys", {"role": "agent"}),
        ("/keys", {}),
        ("/keys", {"role": "agent", "agent_id": "e2e-agent-role"}),
        ("/agent/{agent}", {"name": "x", "delivery": "carrier_pigeon"}),
        ("/agent/{agent}", {"name": "x", "delivery": "poll"}),
    ],
)
def test_the_document_refuses_a_body_exactly_when_the_api_does(
    ops: Operator, contract: Contract, path: str, body: dict[str, Any]
) -> None:
    method, schema = ("POST", "KeyRequest") if path == "/keys" else ("PUT", "RegistrationRequest")
    reply = ops.api.admin(method, path.format(agent=ops.agent_id), body=body)
    try:
        contract.validate(body, f"#/components/schemas/{schema}")
        documented_valid = True
    except jsonschema.ValidationError:
        documented_valid = False
    assert (reply.status != 400) == documented_valid, (reply.status, reply.body)


# --------------------------------------------------------------------------- empty query parameters


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/agent/{agent}/stats", "window"),
        ("/agent/{agent}/state/history", "next_token"),
        ("/agent/{agent}/state/history", "since"),
        ("/agent/{agent}/sessions", "status"),
        ("/agent/{agent}/sessions", "workflow_id"),
        ("/agent/{agent}/tasks", "status"),
        ("/agent/{agent}/tasks", "limit"),
    ],
)
def test_an_empty_query_parameter_is_400_naming_it_not_taken_for_its_default(
    ops: Operator, path: str, name: str
) -> None:
    reply = ops.api.request("GET", path.format(agent=ops.agent_id), key=ops.agent_key, query={name: ""})
    refused(reply, 400, None, name)


# --------------------------------------------------------------------------- sizes of inputs and outputs


def test_a_yaml_template_whose_stored_input_outgrows_the_limit_is_400_naming_it(api: Api) -> None:
    # 64 KiB of YAML, but `~` is stored as `null`: the task's input as stored would be 2.5 times the body.
    name = new_name()
    nulls = ",".join(["~"] * 30_000)
    text = f"name: {name}\ntasks:\n  - id: a\n    action: x\n    input: {{n: [{nulls}]}}\n"
    assert len(text.encode()) < 64 * 1024
    reply = api.admin("POST", "/workflows", raw=text.encode(), headers={"Content-Type": "application/yaml"})
    refused(reply, 400, None, "tasks.0.input")
    assert "65536" in json.dumps(reply.body)
    assert api.admin("GET", f"/workflows/{name}").status == 404


def test_a_fallback_that_could_keep_more_attempts_than_a_task_item_holds_is_400_naming_it(api: Api) -> None:
    # three tasks fall back to one with ten retries: 33 attempts in the worst case, over the 31 records an item keeps
    name = new_name()
    tasks = [{"id": f"t{n}", "action": "x", "fallback": "ask"} for n in range(3)]
    ask = {"id": "ask", "action": "human.ask", "fallback_only": True, "retry": {"max_retries": 10}}
    reply = api.admin("POST", "/workflows", body={"name": name, "tasks": [*tasks, ask]})
    refused(reply, 400, "too_many_attempts", "tasks.2.fallback")
    assert "31 attempt records" in json.dumps(reply.body)
    assert api.admin("GET", f"/workflows/{name}").status == 404
    reply = api.admin("POST", "/workflows", body={"name": name, "tasks": [*tasks[:2], ask]})
    assert reply.status == 201, reply.body  # 22 attempts fit


def utf8(value: Any) -> bytes:
    """JSON as UTF-8 as it is: with escapes, a 4-byte character takes 12 bytes of the body's 64 KiB."""
    return json.dumps(value, ensure_ascii=False).encode()


def test_the_largest_inputs_and_outputs_run_a_session_to_its_end(api: Api, ops: Operator) -> None:
    # The worst case the limits allow at once, in 4-byte characters: a template's inputs and a session's input each
    # near the 64 KiB body limit, each task's output near its limit. Passed to Step Functions with escapes (as it
    # was), the runner's input alone would be three times as large: over its 256 KiB.
    emoji = "\U0001f600"
    name = new_name()
    tasks = [{"id": f"t{n}", "action": "x", "input": {"text": emoji * (30 * 1024 // 4)}} for n in range(2)]
    assert api.admin("POST", "/workflows", raw=utf8({"name": name, "tasks": tasks})).status == 201
    session_input = {"text": emoji * (62 * 1024 // 4)}
    started = api.admin(
        "POST", f"/agent/{ops.agent_id}/workflow", raw=utf8({"workflow_id": name, "input": session_input})
    )
    assert started.status == 202, started.body
    session_id = started.body["session_id"]
    output = {"text": emoji * (62 * 1024 // 4)}
    for template_id in ("t0", "t1"):
        leased_id = ops.lease(session_id, template_id)
        result = utf8({"status": "succeeded", "output": output})
        path = f"/agent/{ops.agent_id}/tasks/{leased_id}/result"
        assert api.request("POST", path, key=ops.agent_key, raw=result).status == 200
    view = ops.ended(session_id)
    assert view["status"] == "completed", view.get("error")
    assert [task["output"] for task in view["tasks"]] == [output, output]
    assert [task["input"] for task in view["tasks"]] == [task["input"] for task in tasks]
    assert view["input"] == session_input


@pytest.mark.parametrize("raw_id", ["a%00b", "a%1Bb", "a%0A", "..", "%2E%2E", "a%20b", "a" * 129])
def test_an_id_with_control_characters_or_a_traversal_is_400_naming_it(api: Api, raw_id: str) -> None:
    refused(api.admin("GET", f"/agent/{raw_id}"), 400, None, "agentId")
    refused(api.admin("GET", f"/workflows/{raw_id}"), 400, None, "workflowId")
