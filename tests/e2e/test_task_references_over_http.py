"""Data between tasks over HTTP: references resolved into the lease, refused when they cannot resolve, and a missing
value failing its attempt into the fallback, which reads the failed task's error. Every answer is held to
docs/openapi.yaml by the Api client."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Api
from tests.e2e.test_sessions_over_http import Operator, task


def test_a_task_leases_its_input_resolved_from_the_session_and_the_task_before(api: Api) -> None:
    agent = Operator(api)
    tasks = [
        {"id": "fetch", "action": "web.fetch", "input": {"url": {"$from": "input.url"}}},
        {
            "id": "summarise",
            "action": "summarize",
            "input": {"text": {"$from": "tasks.fetch.output.body"}, "words": 50},
        },
    ]
    session = agent.start(tasks, input={"url": "https://example.com"})

    fetch = agent.queued(session, "fetch")
    leased = agent.next_task()
    assert (leased.status, leased.body["task_id"]) == (200, fetch)
    assert leased.body["input"] == {"url": "https://example.com"}
    agent.succeed(fetch, {"body": "<p>the page</p>"})

    summarise = agent.queued(session, "summarise")
    leased = agent.next_task()
    assert (leased.status, leased.body["task_id"]) == (200, summarise)
    assert leased.body["input"] == {"text": "<p>the page</p>", "words": 50}
    agent.succeed(summarise)
    assert agent.ended(session)["status"] == "completed"


def test_a_value_missing_at_run_time_fails_the_attempt_into_the_fallback_which_reads_why(api: Api) -> None:
    agent = Operator(api)
    tasks: list[dict[str, Any]] = [
        {"id": "fetch", "action": "web.fetch"},
        {"id": "summarise", "action": "summarize", "input": {"text": {"$from": "tasks.fetch.output.body"}}},
        {
            "id": "tell",
            "action": "human.notify",
            "fallback_only": True,
            "input": {"why": {"$from": "failed.error.type"}, "what": {"$from": "failed.task"}},
        },
    ]
    tasks[1]["fallback"] = "tell"
    session = agent.start(tasks)
    agent.succeed(agent.lease(session, "fetch"), {"status": 404})

    tell = agent.queued(session, "tell")
    leased = agent.next_task()
    assert (leased.status, leased.body["task_id"]) == (200, tell)
    assert leased.body["input"] == {"why": "OpsCore.InputMissing", "what": "summarise"}
    agent.succeed(tell)
    view = agent.ended(session)
    assert view["status"] == "completed"
    assert task(view, "summarise")["error"]["type"] == "OpsCore.InputMissing"


def test_a_reference_to_a_task_that_does_not_run_before_is_a_400_naming_the_field(api: Api) -> None:
    template = {
        "name": "e2e-refs-refused",
        "tasks": [
            {"id": "summarise", "action": "summarize", "input": {"text": {"$from": "tasks.fetch.output.body"}}},
            {"id": "fetch", "action": "web.fetch"},
        ],
    }
    reply = api.admin("POST", "/workflows", body=template)

    assert (reply.status, reply.error_code) == (400, "validation_error")
    assert [(p["field"], p["type"]) for p in reply.body["error"]["details"]] == [
        ("tasks.0.input.text.$from", "not_before")
    ]
    assert api.admin("GET", "/workflows/e2e-refs-refused").status == 404
