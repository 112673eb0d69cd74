"""Push delivery: the webhook channel POSTs each task to a receiver on loopback, which answers at once or later."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_socket import disable_socket, enable_socket, socket_allow_hosts

from tests.conftest import EventFactory
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver, task
from tests.webhook_receiver import SECRET, webhook_receiver

TWO_STEPS = {
    "name": "triage",
    "tasks": [
        {"id": "fetch", "action": "web.fetch", "input": {"url": "https://tickets.example.com/1"}},
        {"id": "summarise", "action": "text.summarise"},
    ],
}


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory) -> Iterator[SessionDriver]:
    enable_socket()
    socket_allow_hosts(["127.0.0.1"])  # the receiver, and nothing else
    yield SessionDriver(call, api_event)
    disable_socket()  # until this test's own network guard lifts


def register_webhook(ops: SessionDriver, url: str, **settings: Any) -> None:
    ops.register(delivery="webhook", endpoint=url, webhook_secret=SECRET, **settings)


def test_a_200_with_the_result_completes_each_task_synchronously(ops: SessionDriver) -> None:
    def work(delivered: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "succeeded", "output": {"did": delivered["action"]}}

    with webhook_receiver(work) as receiver:
        register_webhook(ops, receiver.url)
        session_id = ops.start(TWO_STEPS, input={"ticket": "T-1"})
        view = ops.wait_ended(session_id)
        deliveries = receiver.wait_for(2)

    assert view["status"] == "completed"
    assert [task(view, name)["output"] for name in ("fetch", "summarise")] == [
        {"did": "web.fetch"},
        {"did": "text.summarise"},
    ]
    assert all(delivery.signed for delivery in deliveries), "every delivery carries a valid signature"
    first = deliveries[0].task
    assert (first["action"], first["input"], first["session_input"], first["attempt"]) == (
        "web.fetch",
        {"url": "https://tickets.example.com/1"},
        {"ticket": "T-1"},
        1,
    )
    assert ops.agent()[1]["queue"]["in_flight"] == 0


def test_a_202_leaves_the_task_leased_until_the_agent_reports_it(ops: SessionDriver) -> None:
    with webhook_receiver(lambda _: (202, None)) as receiver:
        register_webhook(ops, receiver.url)
        session_id = ops.start(TWO_STEPS)
        (fetch,) = receiver.wait_for(1)
        view = ops.session(session_id)[1]
        assert task(view, "fetch")["status"] == "leased"
        assert ops.next_task()[0] == 204, "a pushed task is not handed out again"

        ops.succeed(fetch.task["task_id"], {"page": "<html>"})  # the callback: the next task is pushed at once
        summarise = receiver.wait_for(2)[1]
        assert summarise.task["action"] == "text.summarise"
        ops.succeed(summarise.task["task_id"])
        view = ops.wait_ended(session_id)

    assert (view["status"], task(view, "fetch")["output"]) == ("completed", {"page": "<html>"})


def test_an_endpoint_that_keeps_refusing_fails_the_attempt_for_the_retry(ops: SessionDriver) -> None:
    answers = iter([(400, {"error": "busy"}), (200, {"status": "succeeded", "output": {}})])
    with webhook_receiver(lambda _: next(answers)) as receiver:
        register_webhook(ops, receiver.url)
        template = {
            "name": "once",
            "tasks": [{"id": "only", "action": "x", "retry": {"max_retries": 1, "backoff_seconds": 0}}],
        }
        session_id = ops.start(template)
        view = ops.wait_ended(session_id)
        assert len(receiver.wait_for(2)) == 2

    only = task(view, "only")
    assert (view["status"], only["attempts"]) == ("completed", 2)
    assert only["history"][0]["error"] == {
        "type": "OpsCore.DeliveryFailed",
        "message": "the endpoint answered 400",
        "task_id": None,
    }


def test_a_paused_webhook_agent_is_served_as_soon_as_it_reports_idle(ops: SessionDriver) -> None:
    with webhook_receiver(lambda _: (200, {"status": "succeeded", "output": {}})) as receiver:
        register_webhook(ops, receiver.url)
        assert ops.report_state("paused")[0] == 200
        session_id = ops.start(TWO_STEPS)
        ops.wait_queued(session_id, "fetch")
        assert receiver.deliveries == [], "nothing is pushed to a paused agent"

        assert ops.report_state("idle")[0] == 200  # the wake: its queue is served now, asynchronously
        view = ops.wait_ended(session_id)
        assert len(receiver.wait_for(2)) == 2
    assert view["status"] == "completed"


def test_failed_deliveries_count_against_the_agent(ops: SessionDriver) -> None:
    with webhook_receiver(lambda _: (410, None)) as receiver:
        register_webhook(ops, receiver.url, quarantine_after=2)
        template = {"name": "gone", "tasks": [{"id": "only", "action": "x", "retry": {"max_retries": 3}}]}
        session_id = ops.start(template)
        view = ops.wait_for(session_id, lambda view: task(view, "only")["attempts"] >= 2, "a second attempt")
        receiver.wait_for(2)
        _status, agent = ops.agent()
        assert (agent["quarantined"], agent["current_state"]["state"]) == (True, "error"), "2 failures in a row"
        view = ops.wait_ended(session_id)
    errors = [entry["error"]["type"] for entry in task(view, "only")["history"]]
    assert errors == ["OpsCore.DeliveryFailed", "OpsCore.DeliveryFailed", "OpsCore.AgentQuarantined"]
    assert view["status"] == "error"


def test_a_slot_freed_by_a_cancel_goes_to_the_next_queued_task(ops: SessionDriver) -> None:
    with webhook_receiver(lambda _: (202, None)) as receiver:
        register_webhook(ops, receiver.url)  # max_concurrency 1
        first = ops.start(TWO_STEPS)
        receiver.wait_for(1)
        second = ops.start(TWO_STEPS)
        ops.wait_queued(second, "fetch")
        assert len(receiver.deliveries) == 1, "the agent is full"

        assert ops.cancel(first)[0] == 200
        pushed = receiver.wait_for(2)[1]
        assert pushed.task["session_id"] == second
        ops.succeed(pushed.task["task_id"])
        ops.succeed(receiver.wait_for(3)[2].task["task_id"])
        assert ops.wait_ended(second)["status"] == "completed"


def test_a_quarantined_webhook_agent_is_pushed_nothing_but_its_probe_once_half_open(
    ops: SessionDriver, clock: Clock
) -> None:
    ops.now = clock.now
    single = {"name": "single", "tasks": [{"id": "only", "action": "x"}]}

    def answer(delivered: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if delivered["session_input"].get("fail"):
            return 410, None  # a failed delivery: the agent's own failure, counted
        return 200, {"status": "succeeded", "output": {"probe": delivered.get("probe", False)}}

    with webhook_receiver(answer) as receiver:
        register_webhook(ops, receiver.url, quarantine_after=1, quarantine_cooldown_seconds=30)
        assert ops.create_workflow(single)[0] == 201
        first = ops.trigger({"workflow_id": "single", "input": {"fail": True}})[1]["session_id"]
        assert ops.wait_ended(first)["status"] == "error"
        receiver.wait_for(1)
        assert ops.agent()[1]["quarantined"] is True

        status, started = ops.trigger({"workflow_id": "single"})
        assert status == 202
        assert started["quarantine"] is not None
        assert ops.wait_ended(started["session_id"])["status"] == "error", "failed over, never pushed"
        assert len(receiver.deliveries) == 1

        clock.advance(31)  # half-open: the next task queued is pushed as the probe
        status, probing = ops.trigger({"workflow_id": "single"})
        view = ops.wait_ended(probing["session_id"])
        deliveries = receiver.wait_for(2)
    assert view["status"] == "completed"
    assert task(view, "only")["output"] == {"probe": True}
    assert deliveries[1].task["probe"] is True
    _status, agent = ops.agent()
    assert (agent["quarantined"], agent["quarantine"]) == (False, None), "the good probe closed the breaker"


def test_an_output_past_its_limit_in_a_200_fails_the_delivery_rather_than_the_task_item(ops: SessionDriver) -> None:
    # The worst case a webhook can send back: a 200 whose output alone (stored twice on the task item, as the output
    # and as the result) would pass DynamoDB's 400 KB. It fails the attempt with its reason, and the retry completes.
    huge = {"status": "succeeded", "output": {"text": "x" * (200 * 1024)}}
    answers = iter([(200, huge), (200, {"status": "succeeded", "output": {"ok": True}})])
    with webhook_receiver(lambda _: next(answers)) as receiver:
        register_webhook(ops, receiver.url)
        template = {
            "name": "large-answer",
            "tasks": [{"id": "only", "action": "x", "retry": {"max_retries": 1, "backoff_seconds": 0}}],
        }
        session_id = ops.start(template)
        view = ops.wait_ended(session_id)
        assert len(receiver.wait_for(2)) == 2

    only = task(view, "only")
    assert (view["status"], only["attempts"], only["output"]) == ("completed", 2, {"ok": True})
    first = only["history"][0]["error"]
    assert first["type"] == "OpsCore.DeliveryFailed"
    assert "65536" in first["message"]
