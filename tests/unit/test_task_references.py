"""References in a task's input, as the library reads them: their paths, where each task can read from, and their
resolution against what a session holds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opscore.workflows.references import Sources, Unresolved, has_references, parse_path, resolve, runs_of
from opscore.workflows.templates import WorkflowTemplate

SOURCES = Sources(
    session_input={"url": "https://example.com", "tags": ["a", "b"], "empty": None},
    outputs={"fetch": {"body": "<p>", "links": [{"href": "/x"}], "0": "zero"}},
    failed={"task": "fetch", "error": {"type": "ToolError", "message": "it broke"}},
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5).filter(lambda key: key != "$from"), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values)
def test_a_value_without_references_resolves_to_itself(value: Any) -> None:
    assert not has_references(value)
    assert resolve(value, SOURCES) == value


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("input", SOURCES.session_input),
        ("input.url", "https://example.com"),
        ("input.tags.1", "b"),
        ("input.empty", None),
        ("tasks.fetch.output", SOURCES.outputs["fetch"]),
        ("tasks.fetch.output.links.0.href", "/x"),
        ("tasks.fetch.output.0", "zero"),  # a number is a key of an object that has it
        ("failed.task", "fetch"),
        ("failed.error.message", "it broke"),
    ],
)
def test_a_path_picks_its_value_whatever_its_type(path: str, value: Any) -> None:
    assert resolve({"x": {"$from": path}}, SOURCES) == {"x": value}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("input.nope", "input.x: input has no 'nope'"),
        ("input.tags.2", "input.x: input.tags has no '2'"),
        ("input.url.deeper", "input.x: input.url has no 'deeper'"),
        ("tasks.summarise.output", "input.x: task summarise has no output (it has not succeeded)"),
        ("input.tags.01", "input.x: input.tags has no '01'"),  # an item's number is written as a number is
    ],
)
def test_a_path_without_a_value_says_where_it_stopped(path: str, reason: str) -> None:
    with pytest.raises(Unresolved) as raised:
        resolve({"x": {"$from": path}}, SOURCES)
    assert str(raised.value) == reason


def test_the_first_path_with_a_value_wins_and_the_default_comes_last() -> None:
    either = {"$from": ["tasks.other.output.a", "input.url"]}
    assert resolve([either], SOURCES) == ["https://example.com"]
    assert resolve({"$from": ["input.a", "input.b"], "default": {"kept": True}}, SOURCES) == {"kept": True}
    with pytest.raises(Unresolved, match=r"no path has a value \(input.a: input has no 'a'; input.b: "):
        resolve({"$from": ["input.a", "input.b"]}, SOURCES)


def test_failed_reads_nothing_outside_a_fallback() -> None:
    with pytest.raises(Unresolved, match="stands in for no failed task"):
        resolve({"$from": "failed.task"}, SOURCES._replace(failed=None))


@pytest.mark.parametrize(
    "text", ["", "output", "tasks.fetch", "tasks.fetch.input", "failed", "failed.task.x", "input..a", "input.a b", 7]
)
def test_malformed_paths_are_named(text: Any) -> None:
    path, problem = parse_path(text)
    assert path is None
    assert problem


def test_each_task_can_read_what_can_run_before_it_on_some_path() -> None:
    template = WorkflowTemplate.model_validate(
        {
            "name": "w",
            "tasks": [
                {"id": "a", "action": "x", "fallback": "fa"},
                {"id": "fa", "action": "x", "fallback_only": True, "fallback": "ffa"},
                {"id": "ffa", "action": "x", "fallback_only": True},
                {"id": "b", "action": "x", "fallback": "fb"},
                {"id": "fb", "action": "x", "fallback_only": True},
                {"id": "never", "action": "x", "fallback_only": True},
            ],
        }
    )
    runs = runs_of(template.tasks)

    assert runs["a"].before == set()
    assert (runs["fa"].before, runs["fa"].as_fallback) == (set(), True), "a failed, and left no output"
    assert runs["ffa"].before == set(), "nor did the fallback that led to it"
    assert runs["b"] == ({"a", "fa", "ffa"}, False)
    assert runs["fb"].before == {"a", "fa", "ffa"}
    assert "never" not in runs, "a fallback nobody names never runs"
