"""What the client sends: the key, encoded paths, queries, bodies, Idempotency-Keys kept across retries, state
reports stamped once; and pages followed lazily."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from opscore_sdk import NotFound
from opscore_sdk.models import AdHocTask, StateAccepted, TaskError
from tests.sdk.conftest import API_KEY, Recorder, error_body

SESSION_ID = "a" * 32
TS = "2026-01-01T00:00:00.000000Z"
STARTED = {"session_id": SESSION_ID, "status": "waiting", "workflow_id": "digest", "version": 1, "quarantine": None}
TASK_STARTED = {**STARTED, "workflow_id": "ad-hoc", "version": 0, "task_id": f"{SESSION_ID}-000"}
ACCEPTED = {"agent_id": "a1", "state": "idle", "previous_state": None, "timestamp": TS, "version": 1}
RESULT_ACCEPTED = {"task_id": f"{SESSION_ID}-000", "session_id": SESSION_ID, "status": "succeeded", "attempt": 2}


def _body(request: httpx.Request) -> object:
    return json.loads(request.content)


def test_calls_carry_the_api_key_and_percent_encode_path_parameters() -> None:
    answers = Recorder((404, error_body("not_found")))

    with answers.client(max_attempts=1) as client, pytest.raises(NotFound):
        client.get_agent("org:a1/x")

    request = answers.requests[0]
    assert request.headers["X-API-Key"] == API_KEY
    assert request.url.raw_path == b"/v1/opscore/agent/org%3Aa1%2Fx"


def test_queries_send_only_what_was_given() -> None:
    answers = Recorder((200, {"items": []}))

    with answers.client() as client:
        client.list_sessions("a1", status="completed", limit=5)
        client.list_sessions("a1")

    assert dict(answers.requests[0].url.params) == {"status": "completed", "limit": "5"}
    assert dict(answers.requests[1].url.params) == {}


def test_a_trigger_sends_one_idempotency_key_on_every_retry_and_a_new_one_per_call() -> None:
    # Given Ops-Core fails the first try of each trigger
    answers = Recorder(
        (503, error_body("internal_error")), (202, STARTED), (503, error_body("internal_error")), (202, STARTED)
    )

    # When two triggers are made
    with answers.client() as client:
        first = client.trigger("a1", "digest", input={"topic": "agents"})
        client.trigger("a1", "digest", input={"topic": "agents"})

    # Then each call's retry carried its first try's key, and the two calls had different keys
    keys = [request.headers["Idempotency-Key"] for request in answers.requests]
    assert keys[0] == keys[1]
    assert keys[2] == keys[3]
    assert keys[0] != keys[2]
    assert uuid.UUID(keys[0]).version == 4
    assert first.session_id == SESSION_ID
    assert _body(answers.requests[0]) == {"workflow_id": "digest", "input": {"topic": "agents"}}


def test_a_given_idempotency_key_is_sent_as_it_is() -> None:
    answers = Recorder((202, TASK_STARTED))

    with answers.client() as client:
        started = client.run_task("a1", AdHocTask(action="web.fetch", input={"url": "x"}), idempotency_key="mine-1")

    assert answers.requests[0].headers["Idempotency-Key"] == "mine-1"
    assert _body(answers.requests[0]) == {"action": "web.fetch", "input": {"url": "x"}}, "only the fields set"
    assert started.task_id == f"{SESSION_ID}-000"


def test_a_state_report_is_stamped_once_so_its_retry_is_the_same_report() -> None:
    answers = Recorder(httpx.ReadTimeout("lost"), (200, ACCEPTED))

    with answers.client() as client:
        accepted = client.report_state("a1", "idle", details={"slots": 2})

    first, retry = (_body(request) for request in answers.requests)
    assert first == retry
    assert isinstance(first, dict)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", first["timestamp"])
    assert first["details"] == {"slots": 2}
    assert isinstance(accepted, StateAccepted)


def test_results_carry_their_attempt() -> None:
    answers = Recorder((200, RESULT_ACCEPTED))

    with answers.client() as client:
        client.succeed("a1", f"{SESSION_ID}-000", attempt=2, output={"ok": True})
        client.fail("a1", f"{SESSION_ID}-000", attempt=3, error=TaskError(type="upstream.timeout", message="slow"))

    assert _body(answers.requests[0]) == {"status": "succeeded", "attempt": 2, "output": {"ok": True}}
    assert _body(answers.requests[1]) == {
        "status": "failed",
        "attempt": 3,
        "error": {"type": "upstream.timeout", "message": "slow"},
    }


def test_a_yaml_template_is_sent_as_yaml() -> None:
    answers = Recorder((201, {"workflow_id": "quick", "version": 1}))

    with answers.client() as client:
        client.create_workflow("name: quick\ntasks: [{id: ping, action: health.ping}]\n")

    assert answers.requests[0].headers["Content-Type"] == "application/yaml"


def _summary(n: int) -> dict[str, object]:
    return {"workflow_id": f"w{n}", "latest_version": 1, "description": None, "updated_at": TS}


def test_iterators_follow_next_token_and_fetch_a_page_only_when_it_is_reached() -> None:
    # Given three pages of workflows
    answers = Recorder(
        (200, {"items": [_summary(1), _summary(2)], "next_token": "t1"}),
        (200, {"items": [_summary(3)], "next_token": "t2"}),
        (200, {"items": [_summary(4)]}),
    )

    with answers.client() as client:
        # When the first two items are taken
        items = client.iter_workflows(limit=2)
        taken = [next(items).workflow_id, next(items).workflow_id]

        # Then only the first page was read
        assert taken == ["w1", "w2"]
        assert len(answers.requests) == 1

        # And the rest follow, each page asked for with the previous page's token
        assert [item.workflow_id for item in items] == ["w3", "w4"]
    assert [dict(request.url.params) for request in answers.requests] == [
        {"limit": "2"},
        {"limit": "2", "next_token": "t1"},
        {"limit": "2", "next_token": "t2"},
    ]
