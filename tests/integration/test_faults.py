"""The fault matrix: DynamoDB and Step Functions fail at each write and call that carries an accepted request, an agent
vanishes, results come twice or out of turn, a webhook hangs or answers garbage.

Each case ends in a defined state (the request retried, refused with a clear error the caller may send again, or the
template's retry or fallback) and asserts on what is stored and how many attempts and executions ran: nothing accepted
is lost, nothing is applied twice. The faults are injected at the client boundary (tests.integration.faults); the
session runner executes for real on moto, and time is moved with the Clock fixture, never waited out.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from pytest_socket import disable_socket, enable_socket, socket_allow_hosts

from opscore import wiring
from opscore.dispatch.delivery import webhook
from opscore.dispatch.health import SweepReport
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Clock, Invoke
from tests.integration.faults import LEASE, NO_ANSWER, RESULT, RUNNER_STEP, STATE_UPDATE, inject, observe
from tests.integration.session_driver import SessionDriver, eventually, task
from tests.integration.test_dispatch import run_task
from tests.webhook_receiver import SECRET, webhook_receiver

THROTTLES = ["ProvisionedThroughputExceededException", "ThrottlingException", "ThrottlingError"]
# One throttle by its error code, one by a cancelled transaction's reason: the two ways the library reads a throttle.
TWO_THROTTLES = ["ThrottlingException", "ThrottlingError"]
TWO_STEPS = {
    "name": "two-steps",
    "tasks": [
        {"id": "fetch", "action": "web.fetch", "retry": {"max_retries": 1, "backoff_seconds": 1}},
        {"id": "summarise", "action": "text.summarise"},
    ],
}


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    driver = SessionDriver(call, api_event, now=clock.now)
    driver.register()
    return driver


def history(ops: SessionDriver) -> list[tuple[int, str]]:
    event = ops.api_event("agent_read/get_history.json", agent_id=ops.agent_id, caller=ADMIN_CONTEXT, query={})
    status, page = ops.call("AgentReadFunction", event)
    assert status == 200, page
    return [(entry["version"], entry["state"]) for entry in page["items"]]


def executions(runtime: LambdaRuntime) -> list[dict[str, Any]]:
    """Every execution of every session runner, as Step Functions lists them."""
    client = boto3.client("stepfunctions")
    with runtime.exclusive():
        machines = [machine["stateMachineArn"] for machine in client.list_state_machines()["stateMachines"]]
        return [
            execution
            for machine in machines
            for execution in client.list_executions(stateMachineArn=machine)["executions"]
        ]


def running(runtime: LambdaRuntime) -> list[str]:
    return [execution["name"] for execution in executions(runtime) if execution["status"] == "RUNNING"]


def refused_clearly(status: int, body: Any, expected: int, code: str) -> None:
    """The error envelope with its code, and nothing of a traceback (a 429 or 503 also says when to retry: the
    handlers' Retry-After is checked in test_retry_after_comes_with_every_429_and_503)."""
    assert (status, body["error"]["code"]) == (expected, code), body
    assert body["request_id"] is not None
    assert "Traceback" not in json.dumps(body)


# ---------------------------------------------------------------------------------------------------- state updates
@pytest.mark.parametrize("code", THROTTLES)
def test_a_throttled_state_update_is_a_429_that_stores_nothing_and_its_resend_applies_once(
    ops: SessionDriver, code: str
) -> None:
    assert ops.report_state("idle")[0] == 200
    injected = inject("dynamodb", "TransactWriteItems", code, times=99, when=STATE_UPDATE)
    status, body = ops.report_state("busy")
    refused_clearly(status, body, 429, "throttled")
    assert injected.count >= 1
    assert history(ops) == [(1, "idle")], "nothing was stored"

    injected.remove()
    status, accepted = ops.report_state("busy")
    assert (status, accepted["version"]) == (200, 2)
    assert history(ops) == [(2, "busy"), (1, "idle")]


def test_a_state_update_that_meets_another_transaction_is_tried_again_or_refused_as_a_conflict(
    ops: SessionDriver,
) -> None:
    assert ops.report_state("idle")[0] == 200
    once = inject("dynamodb", "TransactWriteItems", "TransactionConflict", when=STATE_UPDATE)
    status, accepted = ops.report_state("busy")
    assert (status, accepted["version"], once.count) == (200, 2, 1), "tried again at once"

    inject("dynamodb", "TransactWriteItems", "TransactionConflict", times=99, when=STATE_UPDATE)
    refused_clearly(*ops.report_state("idle"), 409, "conflict")  # "send it again": the SDK does
    assert history(ops) == [(2, "busy"), (1, "idle")], "applied once, and nothing of the refused one"


def test_a_state_update_that_dynamodb_fails_is_a_503_to_retry_that_stores_nothing(ops: SessionDriver) -> None:
    assert ops.report_state("idle")[0] == 200
    inject("dynamodb", "TransactWriteItems", "InternalServerError", when=STATE_UPDATE)
    status, body = ops.report_state("busy")
    refused_clearly(status, body, 503, "service_unavailable")
    assert history(ops) == [(1, "idle")]


@pytest.mark.parametrize("code", ["InternalServerError", NO_ANSWER])
def test_retry_after_comes_with_every_429_and_503(
    ops: SessionDriver, runtime: LambdaRuntime, api_event: EventFactory, code: str
) -> None:
    body = {"state": "idle", "timestamp": "2026-01-01T00:00:00Z"}
    event = api_event("state_update/post.json", body=body, caller=agent_context(ops.agent_id))
    for fault, expected in ((code, 503), ("ThrottlingException", 429)):
        injected = inject("dynamodb", "TransactWriteItems", fault, when=STATE_UPDATE)
        response = runtime.invoke("StateUpdateFunction", event)
        assert (response["statusCode"], injected.count) == (expected, 1)
        assert response["multiValueHeaders"]["Retry-After"] == ["1"]
        assert "Traceback" not in response["body"]
    assert runtime.invoke("StateUpdateFunction", event)["statusCode"] == 200


def test_a_state_update_whose_answer_is_lost_after_its_commit_is_applied_once_when_sent_again(
    ops: SessionDriver, clock: Clock
) -> None:
    assert ops.report_state("idle")[0] == 200
    body = {"state": "busy", "timestamp": clock.now().isoformat()}
    event = ops.api_event("state_update/post.json", body=body, caller=agent_context(ops.agent_id))
    inject("dynamodb", "TransactWriteItems", "InternalServerError", when=STATE_UPDATE, committed=True)
    refused_clearly(*ops.call("StateUpdateFunction", event), 503, "service_unavailable")

    status, accepted = ops.call("StateUpdateFunction", event)  # the agent sends the same report again
    assert (status, accepted["version"], accepted["state"]) == (200, 2, "busy")
    assert history(ops) == [(2, "busy"), (1, "idle")], "applied once"


# ---------------------------------------------------------------------------------------------------- leases
def queued_task(ops: SessionDriver, **fields: Any) -> dict[str, Any]:
    """An ad-hoc task, queued for the agent (its session runner waiting on it); the trigger's answer."""
    started = run_task(ops, **fields)
    ops.wait_queued(started["session_id"], "task")
    return started


@pytest.mark.parametrize("code", TWO_THROTTLES)
def test_a_throttled_lease_is_a_429_that_leases_nothing(ops: SessionDriver, code: str) -> None:
    started = queued_task(ops)
    injected = inject("dynamodb", "TransactWriteItems", code, times=99, when=LEASE)
    refused_clearly(*ops.next_task(), 429, "throttled")
    assert injected.count >= 1
    injected.remove()
    work = task(ops.session(started["session_id"])[1], "task")
    assert (work["status"], work["attempts"]) == ("queued", 1), "still queued, for the next pull"
    assert ops.agent()[1]["queue"]["in_flight"] == 0

    status, leased = ops.next_task()
    assert (status, leased["task_id"], leased["attempt"]) == (200, started["task_id"], 1)
    ops.succeed(started["task_id"])
    assert ops.wait_ended(started["session_id"])["status"] == "completed"


def test_a_lease_that_meets_another_transaction_reads_the_queue_again_and_leases(ops: SessionDriver) -> None:
    started = queued_task(ops)
    injected = inject("dynamodb", "TransactWriteItems", "TransactionConflict", times=2, when=LEASE)
    status, leased = ops.next_task()
    assert (status, leased["task_id"], injected.count) == (200, started["task_id"], 2)
    assert ops.agent()[1]["queue"]["in_flight"] == 1, "leased once"


def test_a_lease_that_dynamodb_fails_is_a_503_to_retry_that_leases_nothing(ops: SessionDriver) -> None:
    started = queued_task(ops)
    inject("dynamodb", "TransactWriteItems", "InternalServerError", when=LEASE)
    refused_clearly(*ops.next_task(), 503, "service_unavailable")
    assert task(ops.session(started["session_id"])[1], "task")["status"] == "queued"
    assert ops.next_task()[1]["task_id"] == started["task_id"]


def test_a_lease_whose_answer_is_lost_expires_and_the_retry_runs_the_task_once_more(
    ops: SessionDriver, sweep: Callable[[float], SweepReport], runtime: LambdaRuntime
) -> None:
    """The pull's transaction commits, then the function dies before it answers: the agent never learns of the lease.
    The lease runs out (heartbeat_seconds), the sweep fails the attempt with OpsCore.LeaseExpired, and the
    template's retry queues attempt 2, which the agent leases and completes."""
    started = queued_task(
        ops, timeout_seconds=600, heartbeat_seconds=30, retry={"max_retries": 1, "backoff_seconds": 0}
    )
    inject("dynamodb", "TransactWriteItems", "InternalServerError", when=LEASE, committed=True)
    refused_clearly(*ops.next_task(), 503, "service_unavailable")
    assert ops.next_task()[0] == 204, "leased, to an agent that does not know it"

    assert sweep(31).leases_expired == 1
    assert ops.wait_leased(started["session_id"], "task", attempts=2) == started["task_id"]
    stale = ops.report(started["task_id"], {**SUCCEEDED, "attempt": 1})
    refused_clearly(*stale, 409, "task_not_open")  # a result for the lease given up, now another attempt's
    ops.succeed(started["task_id"], attempt=2)
    view = ops.wait_ended(started["session_id"])
    work = task(view, "task")
    assert (view["status"], work["attempts"]) == ("completed", 2)
    assert [attempt["error"]["type"] for attempt in work["history"] if attempt.get("error")] == ["OpsCore.LeaseExpired"]
    assert len(executions(runtime)) == 1


# ---------------------------------------------------------------------------------------------------- results
def leased_task(ops: SessionDriver, **fields: Any) -> dict[str, Any]:
    started = queued_task(ops, **fields)
    status, leased = ops.next_task()
    assert status == 200, leased
    return started


SUCCEEDED = {"status": "succeeded", "output": {"page": "<html>"}}


@pytest.mark.parametrize("code", [*TWO_THROTTLES, "InternalServerError"])
def test_a_result_dynamodb_refuses_is_recorded_by_its_resend_once(
    ops: SessionDriver, runtime: LambdaRuntime, code: str
) -> None:
    started = leased_task(ops)
    injected = inject("dynamodb", "TransactWriteItems", code, times=99, when=RESULT)
    expected = (503, "service_unavailable") if code == "InternalServerError" else (429, "throttled")
    refused_clearly(*ops.report(started["task_id"], SUCCEEDED), *expected)
    injected.remove()
    work = task(ops.session(started["session_id"])[1], "task")
    assert (work["status"], work["output"]) == ("leased", None), "nothing recorded: the runner still waits"

    assert ops.report(started["task_id"], SUCCEEDED)[0] == 200
    view = ops.wait_ended(started["session_id"])
    assert (view["status"], task(view, "task")["attempts"], task(view, "task")["output"]) == (
        "completed",
        1,
        SUCCEEDED["output"],
    )
    assert len(executions(runtime)) == 1


def test_a_result_that_meets_another_transaction_is_tried_again_and_recorded(ops: SessionDriver) -> None:
    started = leased_task(ops)
    injected = inject("dynamodb", "TransactWriteItems", "TransactionConflict", times=2, when=RESULT)
    assert ops.report(started["task_id"], SUCCEEDED)[0] == 200
    assert injected.count == 2
    assert ops.wait_ended(started["session_id"])["status"] == "completed"


def test_a_result_whose_answer_is_lost_after_its_commit_is_answered_again_and_told_once(ops: SessionDriver) -> None:
    started = leased_task(ops)
    inject("dynamodb", "TransactWriteItems", "InternalServerError", when=RESULT, committed=True)
    refused_clearly(*ops.report(started["task_id"], SUCCEEDED), 503, "service_unavailable")

    told = observe("stepfunctions", "SendTaskSuccess")
    status, accepted = ops.report(started["task_id"], SUCCEEDED)  # the agent sends it again
    assert (status, accepted["attempt"]) == (200, 1)
    view = ops.wait_ended(started["session_id"])
    assert (view["status"], task(view, "task")["attempts"]) == ("completed", 1)
    assert len(told) == 1, "the runner was told once: by the resend"


# ---------------------------------------------------------------------------------------------------- runner steps
@pytest.mark.parametrize(
    ("code", "committed"),
    [
        # refused: the dispatch function fails its invocation (Throttled); the Task state's Lambda retrier runs it again
        ("ThrottlingException", False),
        ("TransactionConflict", False),
        # failed: a DynamoDB 500 is transient, so the session must not fail, nor its task use up a retry, because of it
        ("InternalServerError", False),
        # failed after the step's write took effect: the retry finds the attempt queued and keeps it (a new token, the
        # same attempt)
        ("InternalServerError", True),
    ],
)
def test_a_runner_step_dynamodb_refuses_or_fails_is_retried_by_the_runner_and_queues_the_attempt_once(
    ops: SessionDriver, runtime: LambdaRuntime, code: str, committed: bool
) -> None:
    injected = inject("dynamodb", "TransactWriteItems", code, when=RUNNER_STEP, committed=committed)
    started = run_task(ops)
    ops.wait_leased(started["session_id"], "task")
    assert injected.count == 1
    ops.succeed(started["task_id"])
    view = ops.wait_ended(started["session_id"])
    assert (view["status"], task(view, "task")["attempts"]) == ("completed", 1)
    assert len(executions(runtime)) == 1


def test_a_result_twice_is_recorded_once_and_one_before_its_lease_or_a_different_one_is_refused(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    started = queued_task(ops)
    refused_clearly(*ops.report(started["task_id"], SUCCEEDED), 409, "task_not_open")  # before its lease
    assert task(ops.session(started["session_id"])[1], "task")["status"] == "queued", "nothing recorded"

    assert ops.next_task()[0] == 200
    told = observe("stepfunctions", "SendTaskSuccess")
    first = ops.report(started["task_id"], SUCCEEDED)
    assert first[0] == 200
    assert ops.report(started["task_id"], SUCCEEDED) == first, "the same answer again"
    other = {"status": "succeeded", "output": {"page": "another"}}
    refused_clearly(*ops.report(started["task_id"], other), 409, "result_conflict")

    view = ops.wait_ended(started["session_id"])
    work = task(view, "task")
    assert (view["status"], work["attempts"], work["output"], len(work["history"])) == (
        "completed",
        1,
        SUCCEEDED["output"],
        1,
    )
    # The repeat tells the runner again (the first call may have stopped before it could); Step Functions answers
    # a closed token, and nothing runs twice.
    assert len({request["taskToken"] for request in told}) == 1
    assert [execution["status"] for execution in executions(runtime)] == ["SUCCEEDED"]


# ---------------------------------------------------------------------------------------------------- Step Functions
@pytest.mark.parametrize(("code", "expected"), [("ThrottlingException", 429), ("ServiceUnavailable", 503)])
def test_a_result_step_functions_refuses_is_kept_and_told_again_by_its_resend(
    ops: SessionDriver, runtime: LambdaRuntime, code: str, expected: int
) -> None:
    started = leased_task(ops)
    refusing = inject("stepfunctions", "SendTaskSuccess", code, times=99)
    status, body = ops.report(started["task_id"], SUCCEEDED)
    assert (status, body["error"]["code"]) == (expected, {429: "throttled", 503: "service_unavailable"}[expected])
    view = ops.session(started["session_id"])[1]
    assert (task(view, "task")["status"], task(view, "task")["output"]) == ("succeeded", SUCCEEDED["output"])
    assert running(runtime), "the runner still waits"

    refusing.remove()
    assert ops.report(started["task_id"], SUCCEEDED)[0] == 200
    eventually(lambda: not running(runtime), "the execution's end")
    assert [execution["status"] for execution in executions(runtime)] == ["SUCCEEDED"]


def test_a_result_whose_runner_was_never_told_completes_when_the_agent_sends_it_again(ops: SessionDriver) -> None:
    """The function dies between the result's write and SendTaskSuccess (here: the call never gets an answer)."""
    started = leased_task(ops, timeout_seconds=600)
    missing = inject("stepfunctions", "SendTaskSuccess", NO_ANSWER)
    refused_clearly(*ops.report(started["task_id"], SUCCEEDED), 503, "service_unavailable")
    assert missing.count == 1
    told = observe("stepfunctions", "SendTaskSuccess")
    assert ops.report(started["task_id"], SUCCEEDED) == (
        200,
        {"task_id": started["task_id"], "session_id": started["session_id"], "status": "succeeded", "attempt": 1},
    )
    assert len(told) == 1
    assert ops.wait_ended(started["session_id"])["status"] == "completed"


SHORT_FIRST = {
    "name": "short-first",
    "tasks": [
        {"id": "fetch", "action": "web.fetch", "timeout_seconds": 2, "retry": {"max_retries": 1, "backoff_seconds": 1}},
        {"id": "summarise", "action": "text.summarise"},
    ],
}


def test_a_result_whose_runner_was_never_told_and_never_sent_again_is_passed_on_at_the_attempts_timeout(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    """The window left open: the result is stored, the runner never hears of it, the agent does not retry. The
    attempt's timeout (2 s here) ends the runner's wait; its retry's dispatch finds the task succeeded and passes the
    success on, so the session goes on with the next task, the first having run once."""
    session_id = ops.start(SHORT_FIRST)
    fetch = ops.wait_leased(session_id, "fetch")
    inject("stepfunctions", "SendTaskSuccess", NO_ANSWER)
    refused_clearly(*ops.report(fetch, SUCCEEDED), 503, "service_unavailable")

    summarise = ops.wait_leased(session_id, "summarise")
    assert task(ops.session(session_id)[1], "fetch")["attempts"] == 1, "not run again"
    ops.succeed(summarise)
    view = ops.wait_ended(session_id)
    assert (view["status"], task(view, "fetch")["output"]) == ("completed", SUCCEEDED["output"])
    assert len(executions(runtime)) == 1


def sessions_of(ops: SessionDriver) -> list[dict[str, Any]]:
    status, page = ops.sessions()
    assert status == 200, page
    return list(page["items"])


@pytest.mark.parametrize(("code", "expected"), [("ThrottlingException", 429), ("ServiceUnavailable", 503)])
def test_a_trigger_step_functions_refuses_starts_nothing_and_says_so(
    ops: SessionDriver, runtime: LambdaRuntime, code: str, expected: int
) -> None:
    injected = inject("stepfunctions", "StartExecution", code)
    status, body = ops.trigger({"template": TWO_STEPS}, key="ticket-1")
    assert (status, body["error"]["code"]) == (expected, {429: "throttled", 503: "service_unavailable"}[expected])
    assert injected.count == 1
    (refused,) = sessions_of(ops)
    assert (refused["status"], refused["error"]["type"]) == ("error", "runner_not_started")
    assert executions(runtime) == []

    status, started = ops.trigger({"template": TWO_STEPS}, key="ticket-1")  # the same request, sent again
    assert status == 202, started
    assert len(executions(runtime)) == 1
    ops.wait_leased(started["session_id"], "fetch")


def test_a_trigger_whose_start_is_lost_after_it_took_effect_runs_no_work_for_that_session(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    """StartExecution starts the execution, then its answer is lost: the trigger has already ended the session in
    error, so the execution's first step finds it ended and stops; the caller's resend starts the only session that
    runs work."""
    inject("stepfunctions", "StartExecution", NO_ANSWER, committed=True)
    refused_clearly(*ops.trigger({"template": TWO_STEPS}), 503, "service_unavailable")
    eventually(lambda: len(executions(runtime)) == 1 and not running(runtime), "the orphan execution's end")
    (orphan,) = sessions_of(ops)
    assert orphan["status"] == "error"
    assert [task["attempts"] for task in ops.session(orphan["session_id"])[1]["tasks"]] == [0, 0], "nothing queued"

    status, started = ops.trigger({"template": TWO_STEPS})
    assert status == 202, started
    ops.succeed(ops.wait_leased(started["session_id"], "fetch"))
    ops.succeed(ops.wait_leased(started["session_id"], "summarise"))
    assert ops.wait_ended(started["session_id"])["status"] == "completed"
    assert len(executions(runtime)) == 2


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailable"])
def test_a_cancel_whose_stop_step_functions_refuses_still_cancels_and_the_execution_ends(
    ops: SessionDriver, runtime: LambdaRuntime, code: str
) -> None:
    started = leased_task(ops)
    injected = inject("stepfunctions", "StopExecution", code)
    status, view = ops.cancel(started["session_id"])
    assert (status, view["status"], injected.count) == (200, "cancelled", 1)
    eventually(lambda: not running(runtime), "the execution's end (its waiting token failed by the cancel)")
    assert ops.agent()[1]["queue"]["in_flight"] == 0
    refused_clearly(*ops.report(started["task_id"], SUCCEEDED), 409, "task_not_open")


# ---------------------------------------------------------------------------------------------------- idempotency
def idempotency_table(request: dict[str, Any]) -> bool:
    return bool(request.get("TableName") == wiring.settings().idempotency_table)


def test_a_trigger_whose_idempotency_record_is_throttled_is_a_429_that_starts_nothing(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    inject("dynamodb", "PutItem", "ProvisionedThroughputExceededException", when=idempotency_table)
    refused_clearly(*ops.trigger({"template": TWO_STEPS}, key="ticket-2"), 429, "throttled")
    assert (sessions_of(ops), executions(runtime)) == ([], [])

    status, started = ops.trigger({"template": TWO_STEPS}, key="ticket-2")
    assert status == 202, started
    assert ops.trigger({"template": TWO_STEPS}, key="ticket-2") == (202, started)
    assert len(executions(runtime)) == 1


@pytest.mark.parametrize("code", ["InternalServerError", "ProvisionedThroughputExceededException"])
def test_a_trigger_whose_answer_cannot_be_remembered_still_answers_for_the_session_it_started(
    ops: SessionDriver, runtime: LambdaRuntime, code: str
) -> None:
    """The session started; only keeping its answer for the Idempotency-Key failed. An error here would invite a
    resend that (once the key's in-progress mark expires) starts a second session: the caller gets its session."""
    inject("dynamodb", "UpdateItem", code, when=idempotency_table)
    status, started = ops.trigger({"template": TWO_STEPS}, key="ticket-3")
    assert status == 202, started
    assert [session["session_id"] for session in sessions_of(ops)] == [started["session_id"]]
    status, body = ops.trigger({"template": TWO_STEPS}, key="ticket-3")
    refused_clearly(status, body, 409, "request_in_progress")  # until the mark expires (the function's timeout)
    assert len(executions(runtime)) == 1


def test_a_trigger_whose_idempotency_record_dynamodb_fails_is_a_503_that_starts_nothing(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    inject("dynamodb", "PutItem", "InternalServerError", when=idempotency_table)
    refused_clearly(*ops.trigger({"template": TWO_STEPS}, key="ticket-4"), 503, "service_unavailable")
    assert (sessions_of(ops), executions(runtime)) == ([], [])


# ---------------------------------------------------------------------------------------------------- agents vanishing
def test_an_expired_lease_whose_runner_step_functions_keeps_refusing_is_retried_at_the_attempts_timeout(
    ops: SessionDriver, sweep: Callable[[float], SweepReport], runtime: LambdaRuntime
) -> None:
    """The agent vanishes; the sweep ends its lease (recorded, the slot back) but Step Functions throttles every
    SendTaskFailure. The runner's own timeout (3 s here) then ends the wait, and the retry queues attempt 2 with its
    whole timeout (the task shows the retry when the runner makes it: its timeout, then the retrier's wait)."""
    started = queued_task(ops, timeout_seconds=3, heartbeat_seconds=1, retry={"max_retries": 1, "backoff_seconds": 1})
    status, leased = ops.next_task()
    assert status == 200, leased
    refusing = inject("stepfunctions", "SendTaskFailure", "ThrottlingException", times=99)
    reports: list[SweepReport] = []
    eventually(lambda: reports.append(sweep(0)) or reports[-1].leases_expired > 0, "the 1 s lease's expiry")
    assert (reports[-1].leases_expired, reports[-1].agents_freed) == (1, {"agent-1"}), "ended, and counted as ended"
    assert refusing.count == 3, "tried three times"
    work = task(ops.session(started["session_id"])[1], "task")
    assert (work["status"], work["history"][0]["error"]["type"]) == ("retrying", "OpsCore.LeaseExpired")
    assert work["scheduled_for"] > leased["attempt_deadline"], "retried after the runner's own timeout"
    assert ops.agent()[1]["queue"]["in_flight"] == 0

    refusing.remove()
    assert ops.wait_leased(started["session_id"], "task", attempts=2) == started["task_id"]
    ops.succeed(started["task_id"], attempt=2)
    view = ops.wait_ended(started["session_id"])
    assert (view["status"], task(view, "task")["attempts"]) == ("completed", 2)
    assert len(executions(runtime)) == 1


def test_an_agent_that_vanishes_mid_task_hands_its_task_to_the_fallback(
    ops: SessionDriver, sweep: Callable[[float], SweepReport]
) -> None:
    template = {
        "name": "with-fallback",
        "tasks": [
            {"id": "fetch", "action": "web.fetch", "timeout_seconds": 600, "heartbeat_seconds": 30, "fallback": "ask"},
            {"id": "ask", "action": "human.ask", "fallback_only": True},
        ],
    }
    session_id = ops.start(template)
    fetch = ops.wait_leased(session_id, "fetch")
    assert ops.heartbeat(fetch)[0] == 200
    assert sweep(31).leases_expired == 1  # no heartbeat or result within the lease
    ask = ops.wait_leased(session_id, "ask")
    refused_clearly(*ops.report(fetch, SUCCEEDED), 409, "task_not_open")  # the vanished agent comes back too late
    ops.succeed(ask)
    view = ops.wait_ended(session_id)
    assert (view["status"], task(view, "fetch")["status"], task(view, "fetch")["attempts"]) == (
        "completed",
        "timed_out",
        1,
    )


# ---------------------------------------------------------------------------------------------------- webhooks
@pytest.fixture
def loopback() -> Iterator[None]:
    enable_socket()
    socket_allow_hosts(["127.0.0.1"])  # the receiver, and nothing else
    yield
    disable_socket()


RETRIED_ONCE = {"name": "pushed", "tasks": [{"id": "work", "action": "web.fetch", "retry": {"max_retries": 1}}]}


@pytest.mark.parametrize("garbage", [b"<html>oops</html>", b'{"status": "maybe"}'])
def test_a_webhook_that_answers_garbage_fails_the_attempt_and_the_retry_delivers_again(
    ops: SessionDriver, loopback: None, garbage: bytes
) -> None:
    def answer(delivered: dict[str, Any]) -> tuple[int, dict[str, Any] | bytes | None]:
        return (200, garbage) if delivered["attempt"] == 1 else (200, SUCCEEDED)

    with webhook_receiver(answer) as receiver:
        ops.register(delivery="webhook", endpoint=receiver.url, webhook_secret=SECRET)
        session_id = ops.start(RETRIED_ONCE)
        view = ops.wait_ended(session_id)
        deliveries = receiver.wait_for(2)
    work = task(view, "work")
    assert (view["status"], work["attempts"], work["history"][0]["error"]["type"]) == (
        "completed",
        2,
        "OpsCore.DeliveryFailed",
    )
    assert "200 without a valid task result" in work["history"][0]["error"]["message"]
    assert [delivery.task["attempt"] for delivery in deliveries] == [1, 2], "each attempt delivered once"


def test_a_webhook_that_hangs_is_given_up_after_its_timeout_and_the_retry_delivers_again(
    ops: SessionDriver, loopback: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook, "TIMEOUT_SECONDS", 0.5)
    released = threading.Event()

    def answer(delivered: dict[str, Any]) -> tuple[int, dict[str, Any] | bytes | None]:
        if delivered["attempt"] == 1:
            released.wait(10)  # hangs past the delivery's timeout
        return 200, SUCCEEDED

    with webhook_receiver(answer) as receiver:
        ops.register(delivery="webhook", endpoint=receiver.url, webhook_secret=SECRET)
        session_id = ops.start(RETRIED_ONCE)
        view = ops.wait_ended(session_id)
        released.set()
    work = task(view, "work")
    assert (view["status"], work["attempts"]) == ("completed", 2)
    (first,) = [entry for entry in work["history"] if entry.get("error")]
    assert first["error"]["type"] == "OpsCore.DeliveryFailed"
    assert "could not be reached" in first["error"]["message"]
