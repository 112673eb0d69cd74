"""Workflow templates: the model's own checks and the ones across tasks, each reported with its path."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from opscore.core.errors import ValidationFailed
from opscore.workflows.templates import WorkflowTemplate, check_template

TRIAGE: dict[str, Any] = {
    "name": "triage",
    "tasks": [
        {
            "id": "fetch",
            "action": "web.fetch",
            "input": {"url": "https://example.com"},
            "fallback": "notify",
            "retry": {"max_retries": 2, "backoff_seconds": 1, "backoff_rate": 2.0},
            "heartbeat_seconds": 60,
        },
        {"id": "summarize", "action": "llm.summarize"},
        {"id": "notify", "action": "human.notify", "fallback_only": True},
    ],
}


def template(**changes: Any) -> WorkflowTemplate:
    return WorkflowTemplate.model_validate({**TRIAGE, **changes})


def problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        check_template(WorkflowTemplate.model_validate(body))
    return [(problem.field, problem.type) for problem in raised.value.details]


def test_a_valid_template_passes_with_defaults_filled_in() -> None:
    parsed = template()
    check_template(parsed)
    summarize = parsed.tasks[1]
    assert (summarize.priority, summarize.delay_seconds, summarize.timeout_seconds) == (None, 0, 300)
    assert summarize.retry.max_retries == 0


def test_equal_templates_hash_equal_whatever_their_spelling() -> None:
    spelled_out = {
        **TRIAGE,
        "tasks": [{**TRIAGE["tasks"][0]}, {**TRIAGE["tasks"][1], "retry": {"max_retries": 0}}, TRIAGE["tasks"][2]],
    }
    assert template().content_hash() == WorkflowTemplate.model_validate(spelled_out).content_hash()
    changed = {**TRIAGE, "tasks": [{**TRIAGE["tasks"][0], "priority": 7}, *TRIAGE["tasks"][1:]]}
    assert template().content_hash() != WorkflowTemplate.model_validate(changed).content_hash()


def test_duplicate_ids_unknown_fallbacks_and_cycles_are_named_by_path() -> None:
    body = {
        "name": "broken",
        "tasks": [
            {"id": "a", "action": "x", "fallback": "b"},
            {"id": "b", "action": "x", "fallback": "a"},
            {"id": "c", "action": "x", "fallback": "missing"},
            {"id": "a", "action": "x"},
            {"id": "d", "action": "x", "fallback": "d"},
        ],
    }
    assert problems(body) == [
        ("tasks.3.id", "duplicate"),
        ("tasks.0.fallback", "cycle"),
        ("tasks.1.fallback", "cycle"),
        ("tasks.2.fallback", "unknown_task"),
        ("tasks.4.fallback", "cycle"),
    ]


def test_a_fallback_chain_without_a_cycle_is_fine() -> None:
    body = {
        "name": "chain",
        "tasks": [
            {"id": "a", "action": "x", "fallback": "b"},
            {"id": "b", "action": "x", "fallback": "c"},
            {"id": "c", "action": "x"},
        ],
    }
    check_template(WorkflowTemplate.model_validate(body))


def test_a_template_of_fallbacks_only_has_nothing_to_run() -> None:
    assert problems({"name": "idle", "tasks": [{"id": "a", "action": "x", "fallback_only": True}]}) == [
        ("tasks", "nothing_to_run")
    ]


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"name": "Triage"}, ("name",)),
        ({"tasks": []}, ("tasks",)),
        ({"tasks": [{"id": "x", "action": "a"}] * 101}, ("tasks",)),
        ({"tasks": [{"id": "Bad Id", "action": "a"}]}, ("tasks", 0, "id")),
        ({"tasks": [{"id": "a", "action": "a", "priority": 10}]}, ("tasks", 0, "priority")),
        ({"tasks": [{"id": "a", "action": "a", "timeout_seconds": 0}]}, ("tasks", 0, "timeout_seconds")),
        ({"tasks": [{"id": "a", "action": "a", "delay_seconds": -1}]}, ("tasks", 0, "delay_seconds")),
        ({"tasks": [{"id": "a", "action": "a", "retry": {"max_retries": 11}}]}, ("tasks", 0, "retry", "max_retries")),
        (
            {"tasks": [{"id": "a", "action": "a", "retry": {"backoff_rate": 0.5}}]},
            ("tasks", 0, "retry", "backoff_rate"),
        ),
        (
            {"tasks": [{"id": "a", "action": "a", "timeout_seconds": 60, "heartbeat_seconds": 60}]},
            ("tasks", 0, "heartbeat_seconds"),
        ),
        ({"tasks": [{"id": "a", "action": "a", "retries": 3}]}, ("tasks", 0, "retries")),
        ({"owner": "me"}, ("owner",)),
    ],
)
def test_the_model_refuses_bad_ranges_and_unknown_fields(change: dict[str, Any], location: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        template(**change)
    assert location in [error["loc"] for error in raised.value.errors()]
