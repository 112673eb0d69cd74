"""Data between tasks: references in a task's input, checked when the template is stored and resolved when the task
is queued, with the session runner executed on moto."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from opscore import wiring
from tests.conftest import EventFactory
from tests.integration.boundary import Answer, intercept
from tests.integration.conftest import Invoke
from tests.integration.session_driver import SessionDriver, eventually, task


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> SessionDriver:
    driver = SessionDriver(call, api_event)
    driver.register()
    return driver


def research(**summarise: Any) -> dict[str, Any]:
    """fetch reads the session's input; summarise reads fetch's output (and its own input, unless given)."""
    return {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "input": {"url": {"$from": "input.url"}, "depth": 1}},
            {
                "id": "summarise",
                "action": "text.summarise",
                "input": {
                    "text": {"$from": "tasks.fetch.output.body"},
                    "first_link": {"$from": "tasks.fetch.output.links.0"},
                    "title": {"$from": ["tasks.fetch.output.title", "input.title"], "default": "untitled"},
                    "words": 50,
                    "sources": [{"$from": "input.url"}],
                },
                **summarise,
            },
        ],
    }


def lease(ops: SessionDriver, session_id: str, template_id: str, attempts: int = 1) -> dict[str, Any]:
    ops.wait_queued(session_id, template_id, attempts)
    status, leased = ops.next_task()
    assert status == 200, leased
    return dict(leased)


def test_a_task_is_leased_with_its_references_resolved_from_the_session_input_and_earlier_outputs(
    ops: SessionDriver,
) -> None:
    session_id = ops.start(research(), input={"url": "https://example.com/a", "title": "From the trigger"})

    fetch = lease(ops, session_id, "fetch")
    assert fetch["input"] == {"url": "https://example.com/a", "depth": 1}
    ops.succeed(fetch["task_id"], {"body": "<p>disk full</p>", "links": ["https://example.com/b", "x"]})

    summarise = lease(ops, session_id, "summarise")
    assert summarise["input"] == {
        "text": "<p>disk full</p>",
        "first_link": "https://example.com/b",
        "title": "From the trigger",  # the first path had no value: the second's
        "words": 50,
        "sources": ["https://example.com/a"],
    }
    ops.succeed(summarise["task_id"], {"summary": "disk full"})
    view = ops.wait_ended(session_id)
    assert view["status"] == "completed"
    assert task(view, "summarise")["input"]["text"] == "<p>disk full</p>", "the session shows the input as leased"


def test_a_default_stands_in_when_no_path_has_a_value(ops: SessionDriver) -> None:
    session_id = ops.start(research(), input={"url": "https://example.com/a"})

    fetch = lease(ops, session_id, "fetch")
    ops.succeed(fetch["task_id"], {"body": "", "links": ["only"], "title": None})
    summarise = lease(ops, session_id, "summarise")
    assert summarise["input"]["title"] is None, "a value that is there, even null, is taken"
    ops.succeed(summarise["task_id"])

    second = ops.start(research(), input={"url": "https://example.com/a"})
    ops.succeed(lease(ops, second, "fetch")["task_id"], {"body": "", "links": ["only"]})
    assert lease(ops, second, "summarise")["input"]["title"] == "untitled"


def test_a_reference_that_finds_nothing_fails_its_attempt_then_its_retries_and_fallback_apply(
    ops: SessionDriver,
) -> None:
    template = {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch"},
            {
                "id": "summarise",
                "action": "text.summarise",
                "input": {"text": {"$from": "tasks.fetch.output.body"}},
                "retry": {"max_retries": 1, "backoff_seconds": 0},
                "fallback": "explain",
            },
            {
                "id": "explain",
                "action": "human.notify",
                "fallback_only": True,
                "input": {
                    "failed_task": {"$from": "failed.task"},
                    "why": {"$from": "failed.error.type"},
                    "detail": {"$from": "failed.error.message"},
                },
            },
        ],
    }
    session_id = ops.start(template)
    fetch = lease(ops, session_id, "fetch")
    ops.succeed(fetch["task_id"], {"status": 404})  # no body: summarise's reference finds nothing

    explain = pull_until(ops, "explain")  # pulling all along: no attempt of summarise is ever handed out
    assert explain["input"]["failed_task"] == "summarise"
    assert explain["input"]["why"] == "OpsCore.InputMissing"
    assert "tasks.fetch.output" in explain["input"]["detail"]
    assert "'body'" in explain["input"]["detail"]
    ops.succeed(explain["task_id"])

    view = ops.wait_ended(session_id)
    summarise = task(view, "summarise")
    assert view["status"] == "completed", "the fallback stood in for the task that could not run"
    assert (summarise["status"], summarise["attempts"]) == ("failed", 2), "its retry applied"
    assert [entry["error"]["type"] for entry in summarise["history"]] == ["OpsCore.InputMissing"] * 2
    assert summarise["input"] == {"text": {"$from": "tasks.fetch.output.body"}}, "it shows what it asked for"


def pull_until(ops: SessionDriver, template_id: str) -> dict[str, Any]:
    """Pull as the agent does until the task `template_id` is leased; any other task leased meanwhile fails."""
    leased: dict[str, Any] = {}

    def got_it() -> bool:
        status, answer = ops.next_task()
        if status == 204:
            return False
        assert status == 200, answer
        leased.update(answer)
        return True

    eventually(got_it, f"{template_id} leased")
    assert leased["task_id"].endswith(f"-{TEMPLATE_PLACES[template_id]:03d}"), f"leased {leased} before {template_id}"
    return leased


# Where the tasks named above sit in their templates (a task id ends with its place).
TEMPLATE_PLACES = {"fetch": 0, "summarise": 1, "explain": 2}


def test_a_refusal_cut_short_is_finished_by_lambdas_retry_and_no_agent_ever_gets_the_task(
    ops: SessionDriver,
) -> None:
    """The dispatch records the attempt, then ends it: a failure in between (here, DynamoDB throttling the end) fails
    the invocation, and Lambda's retry finds the attempt still refused and ends it. Meanwhile nobody can lease it."""
    ended = []

    def throttle_the_first_end(request: dict[str, Any]) -> Answer | None:
        text = json.dumps(request)
        if "OpsCore.InputMissing" in text and "#dispatch_seq = :seq" in text and not ended:
            ended.append(request)
            return Answer(400, {"Error": {"Code": "ThrottlingException", "Message": "slow down"}})
        return None

    intercept(wiring.dynamodb(), "TransactWriteItems", throttle_the_first_end)
    template = {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch"},
            {"id": "summarise", "action": "text.summarise", "input": {"text": {"$from": "tasks.fetch.output.body"}}},
        ],
    }
    session_id = ops.start(template)
    ops.succeed(lease(ops, session_id, "fetch")["task_id"], {})

    def ended_with_nothing_leased() -> bool:
        assert ops.next_task()[0] == 204, "the refused attempt was handed out"
        return ops.session(session_id)[1]["status"] == "error"

    eventually(ended_with_nothing_leased, "the session's end")
    view = ops.wait_ended(session_id)
    summarise = task(view, "summarise")
    assert ended, "the end was cut short once"
    assert (summarise["status"], summarise["attempts"]) == ("failed", 1), "one attempt, ended once"
    assert view["error"]["type"] == "OpsCore.InputMissing"


def test_a_reference_that_finds_nothing_without_a_fallback_ends_the_session_in_error(ops: SessionDriver) -> None:
    session_id = ops.start(research(input={"text": {"$from": "tasks.fetch.output.body"}}), input={"url": "u"})
    fetch = lease(ops, session_id, "fetch")
    ops.succeed(fetch["task_id"], {})

    view = ops.wait_ended(session_id)
    assert view["status"] == "error"
    assert view["error"]["type"] == "OpsCore.InputMissing"
    assert view["error"]["message"] == "input.text: tasks.fetch.output has no 'body'"
    assert view["error"]["task_id"] == task(view, "summarise")["task_id"]


def test_a_task_whose_predecessor_failed_over_finds_no_output_and_can_read_its_fallbacks(
    ops: SessionDriver,
) -> None:
    template = {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "fallback": "cached"},
            {"id": "cached", "action": "cache.read", "fallback_only": True},
            {
                "id": "summarise",
                "action": "text.summarise",
                "input": {"text": {"$from": ["tasks.fetch.output.body", "tasks.cached.output.body"]}},
            },
        ],
    }
    session_id = ops.start(template)
    ops.fail(lease(ops, session_id, "fetch")["task_id"])
    ops.succeed(lease(ops, session_id, "cached")["task_id"], {"body": "from the cache"})

    summarise = lease(ops, session_id, "summarise")
    assert summarise["input"] == {"text": "from the cache"}


def test_an_input_too_large_once_resolved_fails_without_retries(ops: SessionDriver) -> None:
    copies = {f"copy{n}": {"$from": "tasks.fetch.output.body"} for n in range(3)}
    session_id = ops.start(research(input=copies, retry={"max_retries": 2, "backoff_seconds": 0}), input={"url": "u"})
    ops.succeed(lease(ops, session_id, "fetch")["task_id"], {"body": "x" * 30_000})

    view = ops.wait_ended(session_id)
    summarise = task(view, "summarise")
    assert (view["status"], view["error"]["type"]) == ("error", "OpsCore.InputTooLarge")
    assert summarise["attempts"] == 1, "resolving it again would give the same: not retried"
    assert "65536" in view["error"]["message"]


@pytest.mark.parametrize(
    ("summarise_input", "field", "kind"),
    [
        ({"text": {"$from": "tasks.fetcher.output"}}, "tasks.1.input.text.$from", "unknown_task"),
        ({"text": {"$from": "tasks.publish.output.url"}}, "tasks.1.input.text.$from", "not_before"),
        ({"text": {"$from": "tasks.summarise.output"}}, "tasks.1.input.text.$from", "not_before"),
        ({"a": [{"b": {"$from": "tasks.fetch.body"}}]}, "tasks.1.input.a.0.b.$from", "malformed_reference"),
        ({"text": {"$from": "output.body"}}, "tasks.1.input.text.$from", "malformed_reference"),
        ({"text": {"$from": "tasks.fetch.output.a b"}}, "tasks.1.input.text.$from", "malformed_reference"),
        ({"text": {"$from": ["input.x", 3]}}, "tasks.1.input.text.$from.1", "malformed_reference"),
        ({"text": {"$from": []}}, "tasks.1.input.text.$from", "malformed_reference"),
        ({"text": {"$from": "input.x", "fallback": 1}}, "tasks.1.input.text.fallback", "malformed_reference"),
        ({"text": {"$from": "failed.error.message"}}, "tasks.1.input.text.$from", "not_fallback"),
        ({"$from": "input"}, "tasks.1.input.$from", "malformed_reference"),
        ({"t": {"$from": "input.a", "default": {"$from": "x"}}}, "tasks.1.input.t.default", "malformed_reference"),
    ],
)
def test_a_template_whose_references_cannot_resolve_is_refused_naming_the_field(
    ops: SessionDriver, summarise_input: dict[str, Any], field: str, kind: str
) -> None:
    template = {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch"},
            {"id": "summarise", "action": "text.summarise", "input": summarise_input},
            {"id": "publish", "action": "web.post"},
        ],
    }
    status, answer = ops.create_workflow(template)

    assert status == 400, answer
    assert [(problem["field"], problem["type"]) for problem in answer["error"]["details"]] == [(field, kind)]
    event = ops.api_event("workflows/get.json", path={"workflowId": "research"})
    assert ops.call("WorkflowsFunction", event)[0] == 404, "nothing was stored"


def test_a_reference_sent_inline_with_a_trigger_is_named_where_the_body_has_it(ops: SessionDriver) -> None:
    inline = {
        "name": "inline",
        "tasks": [{"id": "only", "action": "a", "input": {"x": {"$from": "tasks.only.output"}}}],
    }
    status, answer = ops.trigger({"template": inline})

    assert status == 400, answer
    assert [problem["field"] for problem in answer["error"]["details"]] == ["template.tasks.0.input.x.$from"]
    status, page = ops.sessions()
    assert (status, page["items"]) == (200, []), "no session was started"


def test_an_ad_hoc_task_may_not_read_other_tasks(ops: SessionDriver) -> None:
    event = ops.api_event(
        "session_control/run_task.json",
        agent_id=ops.agent_id,
        body={"action": "web.fetch", "input": {"x": {"$from": "tasks.other.output"}}},
    )
    status, answer = ops.call("SessionControlFunction", event)

    assert status == 400, answer
    assert [(p["field"], p["type"]) for p in answer["error"]["details"]] == [("input.x.$from", "nothing_to_reference")]


def test_a_fallback_may_not_read_the_output_of_the_tasks_that_failed_before_it(ops: SessionDriver) -> None:
    template = {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "fallback": "retry_elsewhere"},
            {"id": "retry_elsewhere", "action": "web.fetch", "fallback_only": True, "fallback": "ask"},
            {
                "id": "ask",
                "action": "human.ask",
                "fallback_only": True,
                "input": {"a": {"$from": "tasks.fetch.output"}, "b": {"$from": "tasks.retry_elsewhere.output"}},
            },
        ],
    }
    status, answer = ops.create_workflow(template)

    assert status == 400, answer
    assert [(p["field"], p["type"]) for p in answer["error"]["details"]] == [
        ("tasks.2.input.a.$from", "not_before"),
        ("tasks.2.input.b.$from", "not_before"),
    ]


def test_a_fallback_may_read_a_task_that_ran_before_the_task_it_stands_in_for(ops: SessionDriver) -> None:
    template = {
        "name": "research",
        "tasks": [
            {"id": "fetch", "action": "web.fetch"},
            {"id": "summarise", "action": "text.summarise", "fallback": "excerpt"},
            {
                "id": "excerpt",
                "action": "text.excerpt",
                "fallback_only": True,
                "input": {"text": {"$from": "tasks.fetch.output.body"}, "failed": {"$from": "failed.task"}},
            },
        ],
    }
    status, answer = ops.create_workflow(template)
    assert status == 201, answer


def readme_template(name: str) -> dict[str, Any]:
    """The README's YAML example of the workflow `name`, as a reader would post it."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    return next(template for block in blocks if (template := yaml.safe_load(block)).get("name") == name)


def test_the_readme_example_runs_as_the_readme_says(ops: SessionDriver) -> None:
    session_id = ops.start(readme_template("research"), input={"url": "https://example.com/a"})

    fetch = lease(ops, session_id, "fetch")
    assert fetch["input"] == {"url": "https://example.com/a"}
    ops.fail(fetch["task_id"], "UpstreamDown", "example.com did not answer")
    cached = lease(ops, session_id, "cached")
    assert cached["input"] == {"url": "https://example.com/a", "from_cache": True, "why": "example.com did not answer"}
    ops.succeed(cached["task_id"], {"body": "from the cache"})

    summarise = lease(ops, session_id, "summarise")
    assert summarise["input"] == {"text": "from the cache", "first_link": None, "words": 100}
