"""Workflow templates over HTTP, as an operator stores and reads them, against `opscore local`."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import Api

YAML_TEMPLATE = """\
name: {name}
description: Fetch and summarise a page; tell a human when fetching fails
tasks:
  - id: fetch
    action: web.fetch
    input: {{url: "https://example.com"}}
    timeout_seconds: 300
    heartbeat_seconds: 60
    retry: {{max_retries: 2, backoff_seconds: 1, backoff_rate: 2.0}}
    fallback: notify
  - id: summarize
    action: llm.summarize
  - id: notify
    action: human.notify
    fallback_only: true
"""


def new_name() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def post_yaml(api: Api, text: str) -> tuple[int, dict[str, object]]:
    reply = api.admin("POST", "/workflows", raw=text.encode(), headers={"Content-Type": "application/yaml"})
    return reply.status, reply.body


def test_an_operator_stores_versions_in_yaml_and_json_and_reads_them_back(api: Api) -> None:
    name = new_name()
    assert post_yaml(api, YAML_TEMPLATE.format(name=name)) == (201, {"workflow_id": name, "version": 1})
    assert post_yaml(api, YAML_TEMPLATE.format(name=name)) == (200, {"workflow_id": name, "version": 1})

    stored = api.admin("GET", f"/workflows/{name}").body["template"]
    assert api.admin("POST", "/workflows", body=stored).status == 200, "the stored JSON is the same template"
    stored["tasks"][1]["priority"] = 8
    assert api.admin("POST", "/workflows", body=stored).body == {"workflow_id": name, "version": 2}

    latest = api.admin("GET", f"/workflows/{name}")
    assert (latest.body["version"], latest.body["template"]["tasks"][1]["priority"]) == (2, 8)
    first = api.admin("GET", f"/workflows/{name}", query={"version": "1"})
    assert first.body["template"]["tasks"][1]["priority"] is None
    assert first.body["template"]["tasks"][0]["retry"] == {"max_retries": 2, "backoff_seconds": 1, "backoff_rate": 2.0}

    listed = []
    query = {"limit": "100"}
    while True:
        page = api.admin("GET", "/workflows", query=query).body
        listed.extend(page["items"])
        if "next_token" not in page:
            break
        query["next_token"] = page["next_token"]
    mine = next(item for item in listed if item["workflow_id"] == name)
    assert (mine["latest_version"], mine["description"]) == (
        2,
        "Fetch and summarise a page; tell a human when fetching fails",
    )


def test_invalid_templates_name_each_problem_and_store_nothing(api: Api) -> None:
    name = new_name()
    bad = {
        "name": name,
        "tasks": [
            {"id": "a", "action": "x", "fallback": "b"},
            {"id": "b", "action": "x", "fallback": "a"},
            {"id": "c", "action": "x", "fallback": "nowhere"},
        ],
    }
    reply = api.admin("POST", "/workflows", body=bad)
    assert (reply.status, reply.error_code) == (400, "validation_error")
    assert [(item["field"], item["type"]) for item in reply.body["error"]["details"]] == [
        ("tasks.0.fallback", "cycle"),
        ("tasks.1.fallback", "cycle"),
        ("tasks.2.fallback", "unknown_task"),
    ]
    assert api.admin("GET", f"/workflows/{name}").status == 404

    status, body = post_yaml(api, "name: x\ntasks:\n  - {id: a, action: x, priority: 12, retry: {max_retries: 11}}\n")
    assert status == 400
    assert {item["field"] for item in body["error"]["details"]} == {"tasks.0.priority", "tasks.0.retry.max_retries"}  # type: ignore[index]


def test_workflows_are_for_admins_only(api: Api) -> None:
    agent_id = f"e2e-{uuid.uuid4().hex[:12]}"
    key = api.admin("POST", "/keys", body={"agent_id": agent_id}).body["api_key"]
    for method, path in (("GET", "/workflows"), ("POST", "/workflows"), ("GET", "/workflows/anything")):
        reply = api.request(method, path, key=key, body={"name": "x", "tasks": []} if method == "POST" else None)
        assert (reply.status, reply.error_code) == (403, "forbidden"), (method, path)
