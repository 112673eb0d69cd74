"""Workflow templates, generated (valid ones, and the same mutated) and posted through the workflows function on moto:
each is either stored and read back as sent, or refused with a 400 naming the wrong field and nothing stored; never
a 500."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from opscore.workflows.templates import WorkflowTemplate
from tests.conftest import EventFactory
from tests.integration.conftest import Invoke

# Each example posts a workflow of its own name, in the one moto account the test holds (hence the function-scoped
# fixtures: nothing of one example can meet another's).
PROPERTY = settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
_names = itertools.count()

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
task_ids = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,8}\Z")


@st.composite
def valid_templates(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(task_ids, min_size=1, max_size=4, unique=True))
    fallback_only = ids[-1] if len(ids) > 1 and draw(st.booleans()) else None
    tasks = []
    for task_id in ids:
        task: dict[str, Any] = {"id": task_id, "action": draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,15}\Z"))}
        if draw(st.booleans()):
            task["input"] = draw(st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=3))
        if draw(st.booleans()):
            task["priority"] = draw(st.integers(0, 9))
        timeout = draw(st.integers(2, 86_400))
        task["timeout_seconds"] = timeout
        if draw(st.booleans()):
            task["heartbeat_seconds"] = draw(st.integers(1, timeout - 1))
        if draw(st.booleans()):
            task["retry"] = {
                "max_retries": draw(st.integers(0, 10)),
                "backoff_seconds": draw(st.integers(0, 3600)),
                "backoff_rate": draw(st.floats(1.0, 10.0)),
            }
        if fallback_only is not None and task_id != fallback_only and draw(st.booleans()):
            task["fallback"] = fallback_only
        if task_id == fallback_only:
            task["fallback_only"] = True
        tasks.append(task)
    template: dict[str, Any] = {"name": f"generated-{next(_names)}", "tasks": tasks}
    if draw(st.booleans()):
        # Free text without control characters: the description refuses them (docs/security.md, Limits on input).
        template["description"] = draw(st.text(st.characters(exclude_categories=("Cc",)), max_size=40))
    return template


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside the template (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        found.append((*path, key))
        found.extend(_places(child, (*path, key)))
    return found


@st.composite
def mutated_templates(draw: st.DrawFn) -> dict[str, Any]:
    """A valid template with one change anywhere inside it: a value replaced by any JSON value, a key removed, or a
    key no model knows added."""
    template = draw(valid_templates())
    name = template["name"]
    place = draw(st.sampled_from([p for p in _places(template) if p != ("name",)]))
    *parents, last = place
    holder: Any = template
    for key in parents:
        holder = holder[key]
    change = draw(st.sampled_from(["replace", "remove", "add"]))
    if change == "replace":
        holder[last] = draw(json_values)
    elif change == "remove":
        del holder[last]
    elif isinstance(holder, dict):
        holder[draw(st.text(min_size=1, max_size=8).filter(lambda key: key not in holder))] = draw(json_values)
    template["name"] = name  # kept, so that "nothing stored" can be read back
    return template


@pytest.fixture
def workflows(call: Invoke, api_event: EventFactory) -> Any:
    def post(body: dict[str, Any]) -> tuple[int, Any]:
        return call("WorkflowsFunction", api_event("workflows/create.json", body=body))

    def get(name: str) -> tuple[int, Any]:
        event = api_event("workflows/get.json")
        event["queryStringParameters"] = None
        for holder in (event, event["requestContext"]):
            holder["path"] = holder["path"].replace("/workflows/triage", f"/workflows/{name}")
        event["pathParameters"] = {"workflowId": name}
        return call("WorkflowsFunction", event)

    return post, get


def stored_as_sent_or_refused_by_field(workflows: Any, template: dict[str, Any]) -> None:
    post, get = workflows
    status, body = post(template)
    event(f"answered {status}")
    if status == 201:
        read_status, stored = get(template["name"])
        assert read_status == 200
        sent = WorkflowTemplate.model_validate(template)
        assert WorkflowTemplate.model_validate(stored["template"]).canonical() == sent.canonical()
        return
    assert status == 400, (status, body, template)
    error = body["error"]
    assert error["code"] == "validation_error", body
    assert error["details"], body
    assert all(problem["field"] and problem["in"] == "body" for problem in error["details"]), body
    assert get(template["name"])[0] == 404, "a refused template stores nothing"


@PROPERTY
@given(template=valid_templates())
def test_a_valid_template_is_stored_and_read_back_as_sent(workflows: Any, template: dict[str, Any]) -> None:
    post, _ = workflows
    assert post(template)[0] == 201, json.dumps(template)
    assert post(template) == (200, {"workflow_id": template["name"], "version": 1}), "the same again is version 1"
    stored_as_sent_or_refused_by_field(workflows, {**template, "name": f"generated-{next(_names)}"})


@PROPERTY
@given(template=mutated_templates())
def test_a_mutated_template_is_stored_as_sent_or_refused_naming_a_field(
    workflows: Any, template: dict[str, Any]
) -> None:
    stored_as_sent_or_refused_by_field(workflows, template)
