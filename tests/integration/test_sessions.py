"""Sessions run by the real session runner: moto executes the ASL, its Lambda tasks run the real handlers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import EventFactory, agent_context
from tests.integration.conftest import Invoke
from tests.integration.session_driver import SessionDriver, task


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> SessionDriver:
    driver = SessionDriver(call, api_event)
    driver.register()
    return driver


def two_steps(**fetch: Any) -> dict[str, Any]:
    return {
        "name": "triage",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "input": {"url": "https://tickets.example.com/1"}, **fetch},
            {"id": "summarise", "action": "text.summarise", "priority": 8},
        ],
    }


def test_happy_path_runs_every_task_in_order_and_completes(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(), input={"ticket": "T-1"}, priority=3)

    fetch_id = ops.wait_leased(session_id, "fetch")
    status, view = ops.session(session_id)
    assert (status, view["status"], task(view, "summarise")["status"]) == (200, "processing", "pending")
    assert view["input"] == {"ticket": "T-1"}
    dispatched = task(view, "fetch")
    assert dispatched["input"] == {"url": "https://tickets.example.com/1"}
    assert (dispatched["action"], dispatched["priority"], dispatched["attempts"]) == ("web.fetch", 3, 1)
    ops.succeed(fetch_id, {"page": "<html>"})

    summarise_id = ops.wait_leased(session_id, "summarise")
    assert task(ops.session(session_id)[1], "summarise")["priority"] == 8, "a task's own priority wins"
    ops.succeed(summarise_id, {"summary": "disk full"})

    view = ops.wait_ended(session_id)
    assert view["status"] == "completed"
    assert view["error"] is None
    assert view["ended_at"] >= view["started_at"] >= view["created_at"]
    fetch, summarise = task(view, "fetch"), task(view, "summarise")
    assert (fetch["status"], fetch["output"], fetch["attempts"]) == ("succeeded", {"page": "<html>"}, 1)
    assert (summarise["status"], summarise["output"]) == ("succeeded", {"summary": "disk full"})
    assert fetch["ended_at"] <= summarise["started_at"], "tasks run one after the other"
    assert fetch["duration_ms"] >= 0
    assert [entry["status"] for entry in fetch["history"]] == ["succeeded"]
    assert (fetch["fallback_for"], fetch["task_id"]) == ([], f"{session_id}-000")


def test_a_failed_attempt_is_retried_within_its_limit_then_succeeds(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(retry={"max_retries": 2, "backoff_seconds": 0}))

    ops.fail(ops.wait_leased(session_id, "fetch"), "UpstreamTimeout", "tickets did not answer")
    fetch_id = ops.wait_leased(session_id, "fetch", attempts=2)
    ops.succeed(fetch_id)
    ops.succeed(ops.wait_leased(session_id, "summarise"))

    view = ops.wait_ended(session_id)
    fetch = task(view, "fetch")
    assert (view["status"], fetch["status"], fetch["attempts"]) == ("completed", "succeeded", 2)
    assert [(entry["attempt"], entry["status"]) for entry in fetch["history"]] == [(1, "failed"), (2, "succeeded")]
    assert fetch["history"][0]["error"] == {
        "type": "UpstreamTimeout",
        "message": "tickets did not answer",
        "task_id": None,
    }
    assert fetch["error"] is None, "the task's error is its last attempt's"


def test_retries_exhausted_run_the_fallback_and_the_session_completes(ops: SessionDriver) -> None:
    template = {
        "name": "triage",
        "tasks": [
            {
                "id": "fetch",
                "action": "web.fetch",
                "retry": {"max_retries": 1, "backoff_seconds": 0},
                "fallback": "ask",
            },
            {"id": "ask", "action": "human.ask", "fallback_only": True},
            {"id": "summarise", "action": "text.summarise"},
        ],
    }
    session_id = ops.start(template)

    ops.fail(ops.wait_leased(session_id, "fetch"))
    ops.fail(ops.wait_leased(session_id, "fetch", attempts=2), attempt=2)
    ask_id = ops.wait_leased(session_id, "ask")
    ops.succeed(ask_id, {"answer": "page was down"})
    ops.succeed(ops.wait_leased(session_id, "summarise"))

    view = ops.wait_ended(session_id)
    fetch, ask = task(view, "fetch"), task(view, "ask")
    assert view["status"] == "completed"
    assert (fetch["status"], fetch["attempts"], fetch["error"]["type"]) == ("failed", 2, "ToolError")
    assert (ask["status"], ask["fallback_only"], ask["fallback_for"]) == ("succeeded", True, ["fetch"])
    assert task(view, "summarise")["status"] == "succeeded", "the session goes on after the task the fallback replaced"


def test_retries_exhausted_without_a_fallback_end_the_session_in_error(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(retry={"max_retries": 0}))

    fetch_id = ops.wait_leased(session_id, "fetch")
    ops.fail(fetch_id, "PermissionDenied", "robots.txt forbids it")

    view = ops.wait_ended(session_id)
    assert view["status"] == "error"
    assert view["error"] == {"type": "PermissionDenied", "message": "robots.txt forbids it", "task_id": fetch_id}
    assert task(view, "fetch")["status"] == "failed"
    assert task(view, "summarise")["status"] == "skipped", "what never ran is skipped once the session ended"


def test_a_delay_is_waited_out_before_dispatch(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(delay_seconds=1))

    scheduled = ops.session(session_id)[1]
    fetch = task(scheduled, "fetch")
    assert (scheduled["status"], fetch["status"]) == ("processing", "scheduled"), "the runner waits out the delay"
    assert fetch["scheduled_for"] >= scheduled["started_at"]
    fetch_id = ops.wait_leased(session_id, "fetch")

    view = ops.session(session_id)[1]
    started_at = datetime.fromisoformat(view["started_at"])
    dispatched_at = datetime.fromisoformat(task(view, "fetch")["started_at"])
    assert dispatched_at - started_at >= timedelta(seconds=1), "dispatched only after its delay"
    ops.succeed(fetch_id)
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    assert ops.wait_ended(session_id)["status"] == "completed"


def test_a_timed_out_attempt_is_marked_timed_out_and_retried(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(timeout_seconds=1, retry={"max_retries": 5, "backoff_seconds": 0}))

    ops.wait_leased(session_id, "fetch")  # and never answered
    # Each later attempt also has 1 s: on a loaded machine one may time out before its result is in, so the first
    # attempt that takes its result is the one that succeeds (retries to spare), never a timing the test assumes.
    for attempt in range(2, 7):
        fetch_id = ops.wait_leased(session_id, "fetch", attempts=attempt)
        status, _ = ops.report(fetch_id, {"status": "succeeded", "output": {}, "attempt": attempt})
        if status == 200:
            break
    view = ops.session(session_id)[1]
    first = task(view, "fetch")["history"][0]
    assert (first["attempt"], first["status"], first["error"]["type"]) == (1, "timed_out", "States.Timeout")
    ops.succeed(ops.wait_leased(session_id, "summarise"))

    view = ops.wait_ended(session_id)
    assert (view["status"], task(view, "fetch")["status"]) == ("completed", "succeeded")
    assert task(view, "fetch")["attempts"] == attempt >= 2


def test_a_last_attempt_that_times_out_leaves_the_task_timed_out(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(timeout_seconds=1))

    view = ops.wait_ended(session_id)
    assert (view["status"], view["error"]["type"]) == ("error", "States.Timeout")
    assert task(view, "fetch")["status"] == "timed_out"
    assert task(view, "fetch")["error"]["message"] == "no result within 1 s of being queued"


def test_cancel_stops_the_session_and_refuses_later_results(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(timeout_seconds=2))
    fetch_id = ops.wait_leased(session_id, "fetch")

    status, view = ops.cancel(session_id)
    assert (status, view["status"], task(view, "fetch")["status"]) == (200, "cancelled", "skipped")
    assert task(view, "summarise")["status"] == "skipped"
    assert ops.cancel(session_id)[0] == 200, "cancelling twice is one cancel"

    status, refused = ops.report(fetch_id, {"status": "succeeded", "output": {}})
    assert (status, refused["error"]["code"]) == (409, "task_not_open")
    assert ops.session(session_id)[1]["status"] == "cancelled"


def test_cancel_during_a_delay_stops_the_session_before_its_task_is_dispatched(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(delay_seconds=1))
    ops.wait_for(session_id, lambda view: task(view, "fetch")["status"] == "scheduled", "fetch scheduled")

    status, view = ops.cancel(session_id)
    assert (status, view["status"], task(view, "fetch")["status"]) == (200, "cancelled", "skipped")
    assert ops.wait_for(session_id, lambda _view: True, "a read")["status"] == "cancelled"


def test_cancel_of_an_ended_session_is_409(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(retry={"max_retries": 0}))
    ops.fail(ops.wait_leased(session_id, "fetch"))
    ops.wait_ended(session_id)

    status, body = ops.cancel(session_id)
    assert (status, body["error"]["code"]) == (409, "session_ended")


def test_a_repeated_trigger_with_its_idempotency_key_returns_the_same_session(ops: SessionDriver) -> None:
    assert ops.create_workflow(two_steps())[0] == 201
    body = {"workflow_id": "triage", "input": {"ticket": "T-9"}}

    first = ops.trigger(body, key="ticket-T-9")
    again = ops.trigger(body, key="ticket-T-9")
    assert first[0] == again[0] == 202
    assert first[1] == again[1]
    status, page = ops.sessions()
    assert (status, [item["session_id"] for item in page["items"]]) == (200, [first[1]["session_id"]])

    status, reused = ops.trigger({**body, "input": {"ticket": "T-10"}}, key="ticket-T-9")
    assert (status, reused["error"]["code"]) == (409, "idempotency_key_reused")
    other = ops.trigger(body, key="ticket-T-9-bis")
    assert other[0] == 202
    assert other[1]["session_id"] != first[1]["session_id"]
    no_key = ops.trigger(body)
    assert no_key[1]["session_id"] not in {first[1]["session_id"], other[1]["session_id"]}


def test_a_repeated_result_is_200_and_a_different_one_409(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps())
    fetch_id = ops.wait_leased(session_id, "fetch")
    result = {"status": "succeeded", "output": {"page": "<html>"}}

    first = ops.report(fetch_id, result)
    assert first == (200, {"task_id": fetch_id, "session_id": session_id, "status": "succeeded", "attempt": 1})
    assert ops.report(fetch_id, result) == first, "a repeat answers the same"
    assert ops.report(fetch_id, {**result, "attempt": 1}) == first
    status, body = ops.report(fetch_id, {"status": "succeeded", "output": {"page": "other"}})
    assert (status, body["error"]["code"]) == (409, "result_conflict"), "a different result for the answered attempt"
    status, body = ops.report(fetch_id, {"status": "failed", "error": {"type": "X", "message": "m"}, "attempt": 1})
    assert (status, body["error"]["code"]) == (409, "result_conflict")

    summarise_id = ops.wait_leased(session_id, "summarise")
    assert ops.report(fetch_id, result) == first, "still a repeat after the runner moved on"
    status, body = ops.report(summarise_id, {"status": "succeeded", "attempt": 2})
    assert (status, body["error"]["code"]) == (409, "task_not_open")
    ops.succeed(summarise_id)
    view = ops.wait_ended(session_id)
    assert task(view, "fetch")["output"] == {"page": "<html>"}, "the first result stands"
    assert task(view, "fetch")["attempts"] == 1


def test_results_are_only_taken_from_the_tasks_own_agent(ops: SessionDriver) -> None:
    ops.register("agent-2")
    session_id = ops.start(two_steps())
    fetch_id = ops.wait_leased(session_id, "fetch")
    result = {"status": "succeeded", "output": {}}

    status, body = ops.report(fetch_id, result, agent_id="agent-2")
    assert (status, body["error"]["code"]) == (404, "not_found"), "another agent's task is not found"
    status, body = ops.report(fetch_id, result, caller=agent_context("agent-2"))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = ops.report(f"{session_id}-007", result)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = ops.report("not-a-task", result)
    assert (status, body["error"]["details"][0]["field"]) == (400, "taskId")
    assert task(ops.session(session_id)[1], "fetch")["status"] == "leased", "nothing was applied"
    ops.succeed(fetch_id)
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    ops.wait_ended(session_id)


def test_invalid_results_are_400_and_change_nothing(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps())
    fetch_id = ops.wait_leased(session_id, "fetch")

    for bad in (
        {"status": "done"},
        {"status": "failed"},
        {"status": "succeeded", "error": {"type": "X"}},
        {"status": "succeeded", "output": "text"},
        {"status": "succeeded", "attempt": 0},
        {"status": "succeeded", "extra": 1},
    ):
        status, body = ops.report(fetch_id, bad)
        assert (status, body["error"]["code"]) == (400, "validation_error"), bad
    assert task(ops.session(session_id)[1], "fetch")["status"] == "leased"
    ops.succeed(fetch_id)
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    ops.wait_ended(session_id)


def test_a_heartbeat_renews_the_lease_while_the_task_is_leased(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(timeout_seconds=60, heartbeat_seconds=30))
    fetch_id = ops.wait_queued(session_id, "fetch")
    status, body = ops.heartbeat(fetch_id)
    assert (status, body["error"]["code"]) == (409, "task_not_open"), "a queued task holds no lease yet"
    status, leased = ops.next_task()
    assert (status, leased["task_id"]) == (200, fetch_id)
    assert (leased["heartbeat_seconds"], leased["timeout_seconds"]) == (30, 60), "the lease says its terms"
    assert leased["lease_expires_at"] < leased["attempt_deadline"], "a lease of 30 s, within the attempt's 60 s"

    status, beat = ops.heartbeat(fetch_id)
    assert (status, beat["task_id"], beat["attempt"]) == (200, fetch_id, 1)
    assert beat["lease_expires_at"] >= leased["lease_expires_at"], "renewed from now, for heartbeat_seconds"
    assert ops.queue(status="leased")[1]["items"][0]["lease_expires_at"] == beat["lease_expires_at"]
    ops.succeed(fetch_id)
    summarise_id = ops.wait_leased(session_id, "summarise")
    status, body = ops.heartbeat(fetch_id)
    assert (status, body["error"]["code"]) == (409, "task_not_open")
    ops.succeed(summarise_id)
    ops.wait_ended(session_id)


def test_a_template_sent_with_the_trigger_is_stored_as_a_version(ops: SessionDriver) -> None:
    inline = {"name": "one-off", "tasks": [{"id": "only", "action": "text.summarise"}]}

    status, started = ops.trigger({"template": inline, "input": {"doc": "a"}})
    assert (status, started["workflow_id"], started["version"], started["status"]) == (202, "one-off", 1, "waiting")
    ops.succeed(ops.wait_leased(started["session_id"], "only"))
    assert ops.wait_ended(started["session_id"])["status"] == "completed"
    status, again = ops.trigger({"template": inline})
    assert (status, again["version"]) == (202, 1), "an identical template is the same version"


def test_bad_triggers_are_refused_and_start_nothing(ops: SessionDriver) -> None:
    assert ops.create_workflow(two_steps())[0] == 201
    cycle = {
        "name": "loop",
        "tasks": [{"id": "a", "action": "x", "fallback": "b"}, {"id": "b", "action": "y", "fallback": "a"}],
    }

    cases = [
        ({"workflow_id": "nope"}, 404, None),
        ({"workflow_id": "triage", "version": 9}, 404, None),
        ({}, 400, ""),
        ({"workflow_id": "triage", "template": two_steps()}, 400, ""),
        ({"workflow_id": "triage", "priority": 10}, 400, "priority"),
        ({"workflow_id": "triage", "input": []}, 400, "input"),
        ({"template": cycle}, 400, "template.tasks.0.fallback"),
        ({"template": {"name": "x", "tasks": [{"id": "a", "action": "x", "retry": {"max_retries": 11}}]}}, 400, None),
    ]
    for body, expected, field in cases:
        status, answer = ops.trigger(body)
        assert status == expected, (body, answer)
        if field:
            assert field in [detail["field"] for detail in answer["error"]["details"]], answer
    assert ops.trigger({"workflow_id": "triage"}, agent_id="ghost")[0] == 404
    status, page = ops.sessions()
    assert (status, page["items"]) == (200, []), "no refused trigger left a session"


def test_only_admins_trigger_and_cancel_and_agents_read_only_their_own_sessions(ops: SessionDriver) -> None:
    ops.register("agent-2")
    session_id = ops.start(two_steps())

    status, body = ops.trigger({"workflow_id": "triage"}, caller=agent_context("agent-1"))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert ops.session(session_id, caller=agent_context("agent-1"))[0] == 200
    assert ops.session(session_id, caller=agent_context("agent-2"))[0] == 403
    other = SessionDriver(ops.call, ops.api_event, agent_id="agent-2")
    assert other.session(session_id)[0] == 404, "a session is found only under its own agent"
    ops.succeed(ops.wait_leased(session_id, "fetch"))
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    ops.wait_ended(session_id)


def test_sessions_are_listed_newest_first_in_pages(ops: SessionDriver) -> None:
    template = {"name": "quick", "tasks": [{"id": "only", "action": "x", "timeout_seconds": 1}]}
    started = [ops.start(template) for _ in range(3)]

    status, page = ops.sessions(limit="2")
    assert status == 200
    assert [item["session_id"] for item in page["items"]] == started[::-1][:2]
    status, rest = ops.sessions(limit="2", next_token=page["next_token"])
    assert ([item["session_id"] for item in rest["items"]], "next_token" in rest) == ([started[0]], False)
    assert {"workflow_id", "version", "status", "created_at"} <= set(page["items"][0])
    # A token issued before page tokens had one codec was the last session's id: it still pages.
    status, legacy = ops.sessions(limit="2", next_token=started[1])
    assert (status, [item["session_id"] for item in legacy["items"]]) == (200, [started[0]])
    status, body = ops.sessions(next_token="zz")
    assert (status, body["error"]["details"][0]["field"]) == (400, "next_token")
    for session_id in started:
        ops.wait_ended(session_id)


def test_a_result_equal_to_an_earlier_attempts_needs_its_attempt_number(ops: SessionDriver) -> None:
    session_id = ops.start(two_steps(retry={"max_retries": 1, "backoff_seconds": 0}))
    failure = {"status": "failed", "error": {"type": "ToolError", "message": "the tool failed"}}
    fetch_id = ops.wait_leased(session_id, "fetch")
    assert ops.report(fetch_id, failure)[0] == 200
    ops.wait_leased(session_id, "fetch", attempts=2)

    status, body = ops.report(fetch_id, failure)
    assert (status, body["error"]["code"]) == (409, "attempt_required"), "could be a late repeat of attempt 1"
    assert ops.report(fetch_id, {**failure, "attempt": 1})[1]["attempt"] == 1, "a repeat for attempt 1 is harmless"
    assert task(ops.session(session_id)[1], "fetch")["status"] == "leased"
    status, body = ops.report(fetch_id, {**failure, "attempt": 2})
    assert (status, body["attempt"]) == (200, 2)

    view = ops.wait_ended(session_id)
    assert [entry["status"] for entry in task(view, "fetch")["history"]] == ["failed", "failed"]
    assert view["status"] == "error"


def test_a_task_that_ran_as_a_fallback_runs_again_in_its_own_place(ops: SessionDriver) -> None:
    template = {
        "name": "triage",
        "tasks": [{"id": "fetch", "action": "web.fetch", "fallback": "ask"}, {"id": "ask", "action": "human.ask"}],
    }
    session_id = ops.start(template)

    ops.fail(ops.wait_leased(session_id, "fetch"))
    ops.succeed(ops.wait_leased(session_id, "ask"), {"run": 1})
    ops.succeed(ops.wait_leased(session_id, "ask", attempts=2), {"run": 2}, attempt=2)

    view = ops.wait_ended(session_id)
    ask = task(view, "ask")
    assert (view["status"], ask["status"], ask["attempts"], ask["output"]) == ("completed", "succeeded", 2, {"run": 2})
    assert ask["fallback_for"] == ["fetch"]
    assert [entry["status"] for entry in ask["history"]] == ["succeeded", "succeeded"]


def test_an_agent_that_declares_capabilities_is_given_only_those_actions(ops: SessionDriver) -> None:
    ops.register(capabilities=["web.fetch", "text.summarise"])
    assert ops.trigger({"template": two_steps()})[0] == 202, "both actions declared"

    asks = {"name": "asks", "tasks": [{"id": "fetch", "action": "web.fetch"}, {"id": "ask", "action": "human.ask"}]}
    status, body = ops.trigger({"template": asks})
    assert (status, body["error"]["code"]) == (400, "validation_error")
    (problem,) = body["error"]["details"]
    assert (problem["field"], problem["type"]) == ("template.tasks.1.action", "capability_undeclared")
    assert "'human.ask'" in problem["message"]
    event = ops.api_event("workflows/get.json", path={"workflowId": "asks"})
    assert ops.call("WorkflowsFunction", event)[0] == 404, "an inline template refused is not stored"

    assert ops.create_workflow(asks)[0] == 201, "storing a workflow is not about an agent"
    status, body = ops.trigger({"workflow_id": "asks"})
    assert (status, body["error"]["details"][0]["field"]) == (400, "tasks.1.action")
    event = ops.api_event("session_control/run_task.json", body={"action": "human.ask"})
    del event["headers"]["Idempotency-Key"]
    status, body = ops.call("SessionControlFunction", event)
    assert (status, body["error"]["details"][0]["field"]) == (400, "action")
    assert len(ops.sessions()[1]["items"]) == 1, "only the first trigger started a session"


@pytest.mark.parametrize(
    ("sample", "path", "known"),
    [
        ("agent_read/list_sessions.json", None, "limit, next_token, status, workflow_id, since, until"),
        ("agent_read/get_history.json", None, "limit, next_token, since, until"),
        ("agent_read/list_tasks.json", None, "status, limit, next_token"),
        ("workflows/list.json", None, "limit, next_token"),
        ("workflows/get.json", {"workflowId": "triage"}, "version"),
    ],
)
def test_list_routes_refuse_a_query_parameter_they_do_not_take(
    ops: SessionDriver, sample: str, path: dict[str, str] | None, known: str
) -> None:
    query = {"limt": "1", "limit": "1"} if "workflows/get" not in sample else {"limt": "1"}
    event = ops.api_event(sample, path=path, query=query)
    function = "WorkflowsFunction" if sample.startswith("workflows") else "AgentReadFunction"
    status, body = ops.call(function, event)
    assert (status, body["error"]["code"]) == (400, "validation_error")
    (problem,) = body["error"]["details"]
    assert (problem["field"], problem["in"], problem["type"]) == ("limt", "query", "unknown")
    assert problem["message"].endswith(f"(it takes: {known})")


def test_sessions_are_filtered_by_status_workflow_and_time_window(ops: SessionDriver) -> None:
    quick = {"name": "quick", "tasks": [{"id": "only", "action": "x"}]}
    other = {"name": "other", "tasks": [{"id": "only", "action": "x"}]}
    done = ops.start(quick)
    ops.succeed(ops.wait_leased(done, "only"))
    ops.wait_ended(done)
    running = [ops.start(quick) for _ in range(3)]
    elsewhere = ops.start(other)

    def listed(**query: str) -> list[str]:
        status, page = ops.sessions(**query)
        assert status == 200, page
        return [item["session_id"] for item in page["items"]]

    assert listed(status="completed") == [done]
    assert listed(workflow_id="other") == [elsewhere]
    assert listed(status="processing", workflow_id="quick") == running[::-1]
    status, page = ops.sessions(status="processing", workflow_id="quick", limit="2")
    assert [item["session_id"] for item in page["items"]] == running[::-1][:2]
    assert listed(status="processing", workflow_id="quick", limit="2", next_token=page["next_token"]) == [running[0]]

    created = {item["session_id"]: item["created_at"] for item in ops.sessions()[1]["items"]}
    assert listed(since=created[running[0]], until=created[running[2]]) == running[::-1]
    assert listed(until=created[done]) == [done]
    for query, field in (({"status": "done"}, "status"), ({"workflow_id": "Not_A_Name"}, "workflow_id")):
        status, body = ops.sessions(**query)
        assert (status, body["error"]["details"][0]["field"]) == (400, field)
    for session_id in [*running, elsewhere]:
        ops.cancel(session_id)
