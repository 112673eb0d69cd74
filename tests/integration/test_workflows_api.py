"""createWorkflow, list and get through the workflows function (events from events/, DynamoDB on moto)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opscore import wiring
from opscore.workflows.templates import WorkflowTemplate
from tests.conftest import EventFactory, agent_context
from tests.integration.boundary import Answer, intercept
from tests.integration.conftest import Invoke

TRIAGE = json.loads(
    json.loads((__import__("pathlib").Path(__file__).parents[2] / "events/workflows/create.json").read_text())["body"]
)


@pytest.fixture
def post(call: Invoke, api_event: EventFactory) -> Any:
    def do(body: Any = None, raw: str | None = None, content_type: str = "application/json") -> tuple[int, Any]:
        event = api_event("workflows/create.json", body=body if body is not None else TRIAGE, raw_body=raw)
        event["headers"]["Content-Type"] = content_type
        return call("WorkflowsFunction", event)

    return do


@pytest.fixture
def get(call: Invoke, api_event: EventFactory) -> Any:
    def do(workflow_id: str = "triage", **query: str) -> tuple[int, Any]:
        event = api_event("workflows/get.json")
        event["queryStringParameters"] = query or None  # the sample asks for version 1; here only what the test says
        for holder in (event, event["requestContext"]):
            holder["path"] = holder["path"].replace("/workflows/triage", f"/workflows/{workflow_id}")
        event["pathParameters"] = {"workflowId": workflow_id}
        return call("WorkflowsFunction", event)

    return do


def test_posting_creates_versions_and_an_identical_template_returns_its_version(post: Any, get: Any) -> None:
    assert post() == (201, {"workflow_id": "triage", "version": 1})
    assert post() == (200, {"workflow_id": "triage", "version": 1})
    changed = {**TRIAGE, "tasks": [{**TRIAGE["tasks"][0], "priority": 9}, *TRIAGE["tasks"][1:]]}
    assert post(changed) == (201, {"workflow_id": "triage", "version": 2})
    assert post() == (200, {"workflow_id": "triage", "version": 1}), (
        "a template equal to an older version is that version"
    )

    status, latest = get()
    assert (status, latest["version"], latest["template"]["tasks"][0]["priority"]) == (200, 2, 9)
    status, first = get(version="1")
    assert (status, first["version"]) == (200, 1)
    assert (
        WorkflowTemplate.model_validate(first["template"]).content_hash()
        == WorkflowTemplate.model_validate(TRIAGE).content_hash()
    )


def test_yaml_and_json_of_the_same_template_are_one_version(call: Invoke, api_event: EventFactory, post: Any) -> None:
    status, body = call("WorkflowsFunction", api_event("workflows/create_yaml.json"))
    assert (status, body) == (201, {"workflow_id": "triage", "version": 1})
    assert post() == (200, {"workflow_id": "triage", "version": 1})


def test_invalid_templates_are_400_with_every_path_and_store_nothing(post: Any, get: Any) -> None:
    broken = {
        "name": "broken",
        "tasks": [
            {"id": "a", "action": "x", "fallback": "b"},
            {"id": "b", "action": "x", "fallback": "a"},
            {"id": "a", "action": "x", "fallback": "nope"},
        ],
    }
    status, body = post(broken)
    assert (status, body["error"]["code"]) == (400, "validation_error")
    assert [problem["field"] for problem in body["error"]["details"]] == [
        "tasks.2.id",
        "tasks.0.fallback",
        "tasks.1.fallback",
        "tasks.2.fallback",
    ]
    assert get("broken")[0] == 404

    status, body = post(
        {"name": "x", "tasks": [{"id": "a", "action": "x", "retry": {"max_retries": 99}, "colour": "red"}]}
    )
    assert status == 400
    assert {problem["field"] for problem in body["error"]["details"]} == {"tasks.0.retry.max_retries", "tasks.0.colour"}


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "type_"),
    [
        ("name: x\ntasks: [", "application/yaml", 400, "yaml_invalid"),
        ("name: x\nt: &a {id: a, action: x}\ntasks: [*a]", "application/yaml", 400, "yaml_alias"),
        ("name: x\ntasks:\n  - {id: a, action: x, input: {when: 2026-01-01}}", "text/yaml", 400, "yaml_type"),
        ('name: x\ntasks:\n  - {id: a, action: x, input: {when: "2026-01-01"}}', "text/yaml", 201, None),
        ("name: x\ntasks:\n  - {id: a, action: x, input: {n: .nan}}", "application/yaml", 400, "yaml_type"),
        ("name: x\ntasks:\n  - {id: a, action: x, input: {s: !!set {a, b}}}", "application/yaml", 400, "yaml_type"),
        ("name: x\ntasks: " + "[" * 100 + "]" * 100, "application/yaml", 400, "yaml_depth"),
        ("name: x\ntasks: " + "[" * 20000 + "]" * 20000, "application/yaml", 400, "yaml_depth"),
        ("name: x", "text/plain", 415, None),
    ],
)
def test_yaml_bodies(post: Any, raw: str, content_type: str, status: int, type_: str | None) -> None:
    answer_status, body = post(raw=raw, content_type=content_type)
    assert answer_status == status, body
    if type_ is not None:
        assert body["error"]["details"][0]["type"] == type_


def test_a_yaml_error_says_where_it_is(post: Any) -> None:
    raw = "name: triage\ntasks:\n  - id: fetch\n    action: web.fetch\n   - id: summarise\n"
    status, body = post(raw=raw, content_type="application/yaml")
    (problem,) = body["error"]["details"]
    assert (status, problem["type"]) == (400, "yaml_invalid")
    assert problem["message"].startswith("not valid YAML at line 5, column 4: "), problem["message"]


def test_yaml_sent_as_json_is_told_to_say_so(post: Any) -> None:
    status, body = post(raw="name: triage\ntasks:\n  - {id: fetch, action: web.fetch}\n")
    (problem,) = body["error"]["details"]
    assert (status, problem["type"]) == (400, "json_invalid")
    assert "send it with Content-Type: application/yaml" in problem["message"]
    status, body = post(raw="{not json, nor yaml: [")
    assert "application/yaml" not in body["error"]["details"][0]["message"], "only a body that reads as YAML"


def test_nan_and_infinity_are_not_json(post: Any) -> None:
    status, body = post(raw='{"name": "x", "tasks": [{"id": "a", "action": "x", "input": {"n": NaN}}]}')
    assert (status, body["error"]["details"][0]["field"]) == (400, "tasks.0.input")


def test_unknown_workflows_versions_and_bad_ids(post: Any, get: Any) -> None:
    post()
    assert get("nope")[0] == 404
    assert get(version="7")[0] == 404
    status, body = get("Not_Valid")
    assert (status, body["error"]["details"][0]["field"]) == (400, "workflowId")
    assert get(version="0")[0] == 400


def test_list_is_paged_by_name(post: Any, call: Invoke, api_event: EventFactory) -> None:
    for name in ("charlie", "alpha", "bravo"):
        assert post({**TRIAGE, "name": name, "description": f"the {name} flow"})[0] == 201

    def page(**query: str) -> Any:
        return call("WorkflowsFunction", api_event("workflows/list.json", query=query))[1]

    first = page(limit="2")
    assert [item["workflow_id"] for item in first["items"]] == ["alpha", "bravo"]
    second = page(limit="2", next_token=first["next_token"])
    assert [(item["workflow_id"], item["latest_version"], item["description"]) for item in second["items"]] == [
        ("charlie", 1, "the charlie flow")
    ]
    assert "next_token" not in second


@pytest.mark.parametrize("same_template", [True, False])
def test_a_post_that_loses_the_race_for_a_version_looks_again(post: Any, get: Any, same_template: bool) -> None:
    """Between a post's reads and its transaction, another post stores a version of the same workflow."""
    rival = TRIAGE if same_template else {**TRIAGE, "description": "rival"}
    transactions = 0

    def rival_posts_first(request: dict[str, Any]) -> Answer | None:
        nonlocal transactions
        transactions += 1
        if transactions == 1:  # the rival's version lands after my reads, just before my transaction
            assert post(rival) == (201, {"workflow_id": "triage", "version": 1})
        return None

    intercept(wiring.dynamodb(), "TransactWriteItems", rival_posts_first)
    if same_template:
        assert post() == (200, {"workflow_id": "triage", "version": 1}), "the rival stored this very template"
        assert transactions == 1, "no second version of the same template"
    else:
        assert post() == (201, {"workflow_id": "triage", "version": 2})
        assert transactions == 2, "it looked again and stored the next version"
    status, latest = get()
    assert (status, latest["version"]) == (200, 1 if same_template else 2)
    assert get(version="1")[1]["template"].get("description") == rival.get("description"), "the rival's is version 1"


def test_workflows_are_for_admins(call: Invoke, api_event: EventFactory) -> None:
    event = api_event("workflows/list.json", caller=agent_context("agent-1"))
    assert call("WorkflowsFunction", event)[0] == 403
