"""Failures the agent says are not worth retrying (`"retryable": false`), run by the real session runner: moto
executes the ASL, its Lambda tasks run the real handlers. The task's remaining retries are skipped: its fallback runs
at once, or the session ends in error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import EventFactory
from tests.integration.conftest import Invoke, Lines
from tests.integration.session_driver import SessionDriver, task

NOT_RETRYABLE = {"type": "InvalidUrl", "message": "no such host", "retryable": False}


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> SessionDriver:
    driver = SessionDriver(call, api_event)
    driver.register()
    return driver


def with_fallback(**retry: Any) -> dict[str, Any]:
    return {
        "name": "triage",
        "tasks": [
            {
                "id": "fetch",
                "action": "web.fetch",
                "retry": {"max_retries": 3, "backoff_seconds": 0, **retry},
                "fallback": "ask",
            },
            {"id": "ask", "action": "human.ask", "fallback_only": True},
            {"id": "summarise", "action": "text.summarise"},
        ],
    }


def without_fallback() -> dict[str, Any]:
    return {
        "name": "triage",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 3, "backoff_seconds": 0}},
            {"id": "summarise", "action": "text.summarise"},
        ],
    }


def report_failure(ops: SessionDriver, task_id: str, error: dict[str, Any]) -> tuple[int, Any]:
    return ops.report(task_id, {"status": "failed", "error": error})


def test_a_failure_not_worth_retrying_goes_straight_to_the_fallback(ops: SessionDriver, lines: Lines) -> None:
    # given a task with three retries and a fallback, its first attempt leased
    session_id = ops.start(with_fallback())
    fetch_id = ops.wait_leased(session_id, "fetch")

    # when the agent reports a failure that is not worth retrying
    assert report_failure(ops, fetch_id, NOT_RETRYABLE)[0] == 200

    # then the task is failed at once (never shown retrying), and the fallback runs in its place
    fetch = task(ops.session(session_id)[1], "fetch")
    assert (fetch["status"], fetch["scheduled_for"]) == ("failed", None)
    ops.succeed(ops.wait_leased(session_id, "ask"), {"answer": "the link was wrong"})
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    view = ops.wait_ended(session_id)
    fetch, ask = task(view, "fetch"), task(view, "ask")
    assert view["status"] == "completed"
    assert (fetch["status"], fetch["attempts"]) == ("failed", 1), "no retry ran"
    assert fetch["error"] == {"type": "InvalidUrl", "message": "no such host", "task_id": None, "retryable": False}
    (attempt,) = fetch["history"]
    assert (attempt["status"], attempt["retry_at"], attempt["error"]["retryable"]) == ("failed", None, False)
    assert (ask["status"], ask["fallback_for"]) == ("succeeded", ["fetch"])
    # and the log says why the task was not retried
    ended = [line for line in lines.objects() if line.get("task_id") == fetch_id and line["event"].startswith("task_")]
    assert [line["event"] for line in ended if line["event"] != "task_queued"][-1] == "task_failed"
    (failed,) = [line for line in ended if line["event"] == "task_failed"]
    assert (failed["error_type"], failed["retryable"], failed["new"]) == ("InvalidUrl", False, "failed")
    assert not [line for line in ended if line["event"] == "task_retry_scheduled"]


def test_a_failure_not_worth_retrying_without_a_fallback_ends_the_session_in_error(
    ops: SessionDriver, lines: Lines
) -> None:
    # given a task with three retries and no fallback, its first attempt leased
    session_id = ops.start(without_fallback())
    fetch_id = ops.wait_leased(session_id, "fetch")

    # when the agent reports a failure that is not worth retrying
    assert report_failure(ops, fetch_id, NOT_RETRYABLE)[0] == 200

    # then the session ends in error after that one attempt, its error saying the failure was not retryable
    view = ops.wait_ended(session_id)
    assert view["status"] == "error"
    assert view["error"] == {"type": "InvalidUrl", "message": "no such host", "task_id": fetch_id, "retryable": False}
    fetch = task(view, "fetch")
    assert (fetch["status"], fetch["attempts"], len(fetch["history"])) == ("failed", 1, 1)
    assert task(view, "summarise")["status"] == "skipped"
    (session_ended,) = [line for line in lines.objects() if line["event"] == "session_ended"]
    assert (session_ended["new"], session_ended["task_id"], session_ended["retryable"]) == ("error", fetch_id, False)


def test_a_failure_worth_retrying_is_still_retried(ops: SessionDriver) -> None:
    # given a task with three retries and a fallback
    session_id = ops.start(with_fallback())

    # when the agent reports a failure that says it is retryable (as a failure without the field is)
    error = {"type": "UpstreamTimeout", "message": "tickets did not answer", "retryable": True}
    assert report_failure(ops, ops.wait_leased(session_id, "fetch"), error)[0] == 200

    # then the task's next attempt runs, not its fallback
    ops.succeed(ops.wait_leased(session_id, "fetch", attempts=2))
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    view = ops.wait_ended(session_id)
    fetch = task(view, "fetch")
    assert (view["status"], fetch["status"], fetch["attempts"]) == ("completed", "succeeded", 2)
    assert task(view, "ask")["status"] == "skipped", "the fallback never ran"
    first = fetch["history"][0]
    assert first["error"] == {"type": "UpstreamTimeout", "message": "tickets did not answer", "task_id": None}
    assert first["retry_at"] is not None


def test_a_repeated_failure_not_worth_retrying_is_taken_once(ops: SessionDriver) -> None:
    # given a leased task with retries and a fallback, and its failure not worth retrying reported
    session_id = ops.start(with_fallback())
    fetch_id = ops.wait_leased(session_id, "fetch")
    first = report_failure(ops, fetch_id, NOT_RETRYABLE)
    assert first[0] == 200

    # when the agent sends the same result again, and then the same failure as a retryable one
    again = report_failure(ops, fetch_id, NOT_RETRYABLE)
    retryable = report_failure(ops, fetch_id, {**NOT_RETRYABLE, "retryable": True})

    # then the repeat answers the same and changes nothing; the retryable one is a different result
    assert again == first
    assert (retryable[0], retryable[1]["error"]["code"]) == (409, "result_conflict")
    ops.succeed(ops.wait_leased(session_id, "ask"))
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    view = ops.wait_ended(session_id)
    fetch = task(view, "fetch")
    assert (view["status"], fetch["attempts"], len(fetch["history"])) == ("completed", 1, 1)
    assert fetch["error"]["retryable"] is False, "the first result stands"


def test_retryable_must_be_a_boolean_on_a_failed_result(ops: SessionDriver) -> None:
    # given a leased task with retries and a fallback
    session_id = ops.start(with_fallback())
    fetch_id = ops.wait_leased(session_id, "fetch")

    # when the agent sends `retryable` as something other than a boolean, or with a succeeded result
    refused = [
        ops.report(fetch_id, body)
        for body in (
            {"status": "failed", "error": {"type": "InvalidUrl", "retryable": "false"}},
            {"status": "failed", "error": {"type": "InvalidUrl", "retryable": 0}},
            {"status": "failed", "error": {"type": "InvalidUrl", "retryable": None}},
            {"status": "succeeded", "error": {"type": "InvalidUrl", "retryable": False}},
            {"status": "succeeded", "retryable": False},
        )
    ]

    # then each is a 400 naming the field, and the task still waits for its result
    fields = [[detail["field"] for detail in body["error"]["details"]] for _, body in refused]
    assert [status for status, _ in refused] == [400] * 5
    assert fields[:3] == [["error.retryable"]] * 3
    assert fields[4] == ["retryable"]
    fetch = task(ops.session(session_id)[1], "fetch")
    assert (fetch["status"], fetch["attempts"], fetch["error"]) == ("leased", 1, None)
    ops.succeed(fetch_id)
    ops.succeed(ops.wait_leased(session_id, "summarise"))
    assert ops.wait_ended(session_id)["status"] == "completed"
