"""Quarantine as a circuit breaker, over the handlers and the executed session runner.

The breaker counts the agent's own failures (an expired lease, a failed delivery, a leased attempt timed out, a failed
result with `"fault": "agent"`) within a window; it opens, holds against the agent's own reports, half-opens after its
cool-down for exactly one probe task, and closes on a good probe or opens again on a bad one. Time is moved with the
Clock fixture (Ops-Core's clock), never waited out.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from opscore import wiring
from opscore.agents.store import agent_key
from opscore.core.clock import parse_timestamp
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.boundary import Answer, always, intercept
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver, eventually, task
from tests.integration.test_dispatch import pull, run_task, wait_queue

FLAKY = {
    "name": "flaky",
    "tasks": [
        {"id": "work", "action": "web.fetch", "retry": {"max_retries": 5, "backoff_seconds": 0}, "fallback": "ask"},
        {"id": "ask", "action": "human.ask", "fallback_only": True},
    ],
}
SINGLE = {"name": "single", "tasks": [{"id": "work", "action": "web.fetch"}]}


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    return SessionDriver(call, api_event, now=clock.now)


def next_task_response(runtime: LambdaRuntime, api_event: EventFactory, agent_id: str = "agent-1") -> dict[str, Any]:
    """POST .../tasks/next as the agent, with the response's headers."""
    event = api_event("task_api/next.json", agent_id=agent_id, caller=agent_context(agent_id))
    response = runtime.invoke("TaskApiFunction", event)
    body = response.get("body")
    headers = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
    return {"status": response["statusCode"], "headers": headers, "body": json.loads(body or "null")}


def lift(ops: SessionDriver, agent_id: str = "agent-1", caller: dict[str, str] | None = None) -> tuple[int, Any]:
    event = ops.api_event("state_update/lift_quarantine.json", agent_id=agent_id, caller=caller or ADMIN_CONTEXT)
    return ops.call("StateUpdateFunction", event)


def history(ops: SessionDriver) -> list[dict[str, Any]]:
    event = ops.api_event("agent_read/get_history.json", agent_id=ops.agent_id, caller=ADMIN_CONTEXT, query={})
    status, page = ops.call("AgentReadFunction", event)
    assert status == 200, page
    return list(page["items"])


def quarantine_open(ops: SessionDriver) -> dict[str, Any]:
    """Register the agent with quarantine_after 1, and open its breaker with one failure of its own fault."""
    started = run_task(ops)
    leased = ops.wait_leased(started["session_id"], "task")
    ops.fail(leased, "OutOfMemory", "the worker ran out of memory", fault="agent")
    status, agent = ops.agent()
    assert status == 200
    assert agent["quarantine"] is not None, agent
    return dict(agent)


def test_a_flaky_task_whose_failures_are_its_own_never_quarantines(ops: SessionDriver) -> None:
    ops.register(quarantine_after=2)
    session_id = ops.start(FLAKY)
    for attempt in (1, 2, 3):  # the template expects these: its retries absorb them
        ops.fail(ops.wait_leased(session_id, "work", attempts=attempt), "upstream.timeout", attempt=attempt)
        _status, agent = ops.agent()
        assert (agent["quarantined"], agent["quarantine"], agent["failure_streak"]) == (False, None, 0)
    ops.succeed(ops.wait_leased(session_id, "work", attempts=4), attempt=4)
    assert ops.wait_ended(session_id)["status"] == "completed"


def test_the_agents_own_failures_open_the_breaker_and_its_idle_does_not_close_it(
    ops: SessionDriver, runtime: LambdaRuntime, api_event: EventFactory, clock: Clock
) -> None:
    ops.register(quarantine_after=2, quarantine_cooldown_seconds=120)
    first = ops.start(FLAKY)
    ops.fail(ops.wait_leased(first, "work"), "OutOfMemory", fault="agent")
    assert ops.agent()[1]["failure_streak"] == 1
    ops.wait_queued(first, "work", attempts=2)  # the retry is queued ahead of the second session's task
    second = ops.start(FLAKY)
    ops.wait_queued(second, "work")
    ops.fail(ops.wait_leased(first, "work", attempts=2), "ToolCrashed", attempt=2, fault="agent")

    _status, agent = ops.agent()
    quarantine = agent["quarantine"]
    assert (agent["current_state"]["state"], agent["quarantined"], agent["failure_streak"]) == ("error", True, 2)
    assert {key: quarantine[key] for key in ("reason", "failures", "window_seconds", "last_error_type")} == {
        "reason": "failures",
        "failures": 2,
        "window_seconds": 600,
        "last_error_type": "ToolCrashed",
    }
    since, probe_after = parse_timestamp(quarantine["since"]), parse_timestamp(quarantine["probe_after"])
    assert since is not None
    assert probe_after is not None
    assert (probe_after - since).total_seconds() == 120
    assert (quarantine["half_open"], quarantine["probe_task_id"]) == (False, None)
    assert history(ops)[0]["details"]["reason"] == "quarantined"

    # the queued tasks failed over, their error saying since when and why; their fallbacks wait
    message = f"agent agent-1 has been quarantined since {quarantine['since']} (2 failures in 600 s: ToolCrashed)"
    for session_id in (first, second):
        ops.wait_queued(session_id, "ask")
        work = task(ops.session(session_id)[1], "work")
        assert work["status"] == "failed"
        assert work["history"][-1]["error"] == {"type": "OpsCore.AgentQuarantined", "message": message, "task_id": None}

    # the agent's own idle is stored, and the breaker holds
    status, accepted = ops.report_state("idle")
    assert (status, accepted["state"]) == (200, "idle")
    _status, agent = ops.agent()
    assert (agent["current_state"]["state"], agent["quarantined"]) == ("idle", True)

    # its pull says it is quarantined, and when to ask again
    clock.advance(20)
    answer = next_task_response(runtime, api_event)
    assert answer["status"] == 409, answer
    assert answer["body"]["error"]["code"] == "agent_quarantined"
    assert answer["body"]["error"]["quarantine"] == {**quarantine, "half_open": False}
    assert answer["body"]["error"]["message"].startswith(message)
    assert 70 <= int(answer["headers"]["Retry-After"]) <= 100, "the seconds left of the 120 s cool-down"


def test_a_trigger_for_a_quarantined_agent_says_so_and_its_session_error_names_when_it_began(
    ops: SessionDriver,
) -> None:
    ops.register(quarantine_after=1)
    since = quarantine_open(ops)["quarantine"]["since"]

    ops.create_workflow(SINGLE)
    status, started = ops.trigger({"workflow_id": "single"})
    assert status == 202, started
    assert (started["quarantine"]["since"], started["quarantine"]["reason"]) == (since, "failures")
    view = ops.wait_ended(started["session_id"])
    assert view["status"] == "error"
    assert view["error"]["type"] == "OpsCore.AgentQuarantined"
    assert view["error"]["message"] == (
        f"agent agent-1 has been quarantined since {since} (1 failure in 600 s: OutOfMemory)"
    )
    adhoc = run_task(ops)
    assert adhoc["quarantine"]["since"] == since, "an ad-hoc task's answer says so too"
    assert ops.wait_ended(adhoc["session_id"])["status"] == "error"

    assert lift(ops)[0] == 200
    status, started = ops.trigger({"workflow_id": "single"})
    assert (status, started["quarantine"]) == (202, None)
    ops.succeed(ops.wait_leased(started["session_id"], "work"))


def test_failures_older_than_the_window_do_not_count(ops: SessionDriver, clock: Clock) -> None:
    ops.register(quarantine_after=2, quarantine_window_seconds=60)
    session_id = ops.start(FLAKY)
    ops.fail(ops.wait_leased(session_id, "work"), "OutOfMemory", fault="agent")
    assert ops.agent()[1]["failure_streak"] == 1
    clock.advance(61)
    assert ops.agent()[1]["failure_streak"] == 0, "out of the window"
    ops.fail(ops.wait_leased(session_id, "work", attempts=2), "OutOfMemory", attempt=2, fault="agent")
    _status, agent = ops.agent()
    assert (agent["quarantined"], agent["failure_streak"]) == (False, 1)
    ops.fail(ops.wait_leased(session_id, "work", attempts=3), "OutOfMemory", attempt=3, fault="agent")
    assert ops.agent()[1]["quarantined"] is True, "two within the window"
    assert lift(ops)[0] == 200


def test_half_open_after_the_cool_down_one_probe_under_concurrent_pulls_and_its_success_closes(
    ops: SessionDriver, clock: Clock
) -> None:
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=30, max_concurrency=3)
    quarantine_open(ops)
    failed_over = run_task(ops)
    assert ops.wait_ended(failed_over["session_id"])["status"] == "error", "queued while open: failed over"

    clock.advance(31)
    _status, agent = ops.agent()
    assert agent["quarantine"]["half_open"] is True
    started = [run_task(ops, input={"n": n}) for n in range(3)]
    wait_queue(ops, 3)  # half-open: tasks wait for the agent again

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: ops.next_task(), range(4)))
    leased = [body for status, body in answers if status == 200]
    refused = [body for status, body in answers if status != 200]
    assert len(leased) == 1, answers
    assert leased[0]["probe"] is True
    assert {body["error"]["code"] for body in refused} == {"agent_quarantined"}
    _status, agent = ops.agent()
    assert (agent["quarantine"]["probe_task_id"], agent["queue"]["in_flight"]) == (leased[0]["task_id"], 1)

    ops.succeed(leased[0]["task_id"])
    _status, agent = ops.agent()
    assert (agent["quarantined"], agent["quarantine"], agent["failure_streak"]) == (False, None, 0)
    assert agent["current_state"]["state"] == "idle", "back from the quarantine's error"
    assert history(ops)[0]["details"] == {"reason": "quarantine_lifted", "by": "probe"}
    rest = [pull(ops), pull(ops)]
    assert all(item is not None and "probe" not in item for item in rest), "closed: ordinary leases again"
    for item in rest:
        assert item is not None
        ops.succeed(item["task_id"])
    for answer in started:
        assert ops.wait_ended(answer["session_id"])["status"] == "completed"


def test_a_failed_probe_opens_the_breaker_again_and_a_cancelled_one_frees_the_slot(
    ops: SessionDriver, clock: Clock
) -> None:
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=30)
    first_since = quarantine_open(ops)["quarantine"]["since"]
    clock.advance(31)
    started = [run_task(ops, input={"n": n}) for n in range(3)]
    wait_queue(ops, 3)

    cancelled = pull(ops)
    assert cancelled is not None
    assert cancelled["probe"] is True
    assert ops.next_task()[1]["error"]["code"] == "agent_quarantined", "one probe at a time"
    session_of = {answer["task_id"]: answer["session_id"] for answer in started}
    assert ops.cancel(session_of[cancelled["task_id"]])[0] == 200
    assert ops.agent()[1]["quarantine"]["probe_task_id"] is None, "a cancel decides nothing"

    probe = pull(ops)
    assert probe is not None
    assert probe["probe"] is True
    ops.fail(probe["task_id"], "upstream.timeout")  # any failed attempt of the probe, its task's fault too
    _status, agent = ops.agent()
    quarantine = agent["quarantine"]
    assert (quarantine["reason"], quarantine["last_error_type"], quarantine["half_open"]) == (
        "probe_failed",
        "upstream.timeout",
        False,
    )
    assert quarantine["since"] > first_since
    assert agent["current_state"]["state"] == "error"

    (waiting,) = [answer for answer in started if answer["task_id"] not in (cancelled["task_id"], probe["task_id"])]
    view = ops.wait_ended(waiting["session_id"])
    assert view["error"]["message"] == (
        f"agent agent-1 has been quarantined since {quarantine['since']} (its probe task failed: upstream.timeout)"
    )
    assert ops.next_task()[1]["error"]["code"] == "agent_quarantined"


def test_an_admin_lifts_a_quarantine(ops: SessionDriver) -> None:
    ops.register(quarantine_after=1)
    assert lift(ops, caller=agent_context("agent-1"))[1]["error"]["code"] == "forbidden", "not the agent itself"
    assert lift(ops, "ghost")[0] == 404
    status, body = lift(ops)
    assert (status, body["error"]["code"]) == (409, "not_quarantined")

    quarantine_open(ops)
    session_id = ops.start(FLAKY)
    ops.wait_queued(session_id, "ask")  # its work failed over; its fallback waits
    assert lift(ops, caller=agent_context("agent-1"))[0] == 403
    status, agent = lift(ops)
    assert status == 200, agent
    assert (agent["quarantined"], agent["quarantine"], agent["failure_streak"]) == (False, None, 0)
    assert agent["current_state"]["state"] == "idle"
    assert history(ops)[0]["details"] == {"reason": "quarantine_lifted", "by": "admin"}
    assert lift(ops)[0] == 409, "lifted once"
    leased = pull(ops)
    assert leased is not None
    assert leased["action"] == "human.ask"
    ops.succeed(leased["task_id"])
    assert ops.wait_ended(session_id)["status"] == "completed"


def test_a_quarantined_agent_is_told_so_while_paused_too_and_probes_only_once_it_takes_work(
    ops: SessionDriver, clock: Clock
) -> None:
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=30)
    quarantine_open(ops)
    clock.advance(31)
    started = run_task(ops)
    wait_queue(ops, 1)
    assert ops.report_state("paused")[0] == 200
    status, body = ops.next_task()
    assert (status, body["error"]["code"]) == (409, "agent_quarantined"), "a paused agent takes no probe"
    assert ops.report_state("idle")[0] == 200
    probe = pull(ops)
    assert probe is not None
    assert probe["probe"] is True
    ops.succeed(probe["task_id"])
    assert ops.wait_ended(started["session_id"])["status"] == "completed"
    eventually(lambda: ops.agent()[1]["quarantined"] is False, "the breaker closed")


def test_a_probe_lease_loses_to_a_probe_taken_meanwhile(ops: SessionDriver, clock: Clock) -> None:
    """The probe's exclusivity is the lease transaction's own condition, not the pull's read of the agent before it:
    a rival probe written between that read and the transaction makes this one answer 409 and take nothing."""
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=30, max_concurrency=3)
    quarantine_open(ops)
    clock.advance(31)
    started = run_task(ops)
    wait_queue(ops, 1)
    rival = "rival-000#1"

    def rival_probe_first(request: dict[str, Any]) -> Answer | None:
        if "probe = :probe" in json.dumps(request) and not rivals:
            rivals.append(request)
            wiring.dynamodb().update_item(
                TableName=wiring.settings().table_name,
                Key=agent_key(ops.agent_id),
                UpdateExpression="SET probe = :probe, probe_until = :until",
                ExpressionAttributeValues={":probe": {"S": rival}, ":until": {"S": "2999-01-01T00:00:00.000000Z"}},
            )
        return None

    rivals: list[dict[str, Any]] = []
    intercept(wiring.dynamodb(), "TransactWriteItems", rival_probe_first)
    status, answer = ops.next_task()

    assert rivals, "the pull went for the probe"
    assert (status, answer["error"]["code"]) == (409, "agent_quarantined"), answer
    _status, agent = ops.agent()
    assert (agent["quarantine"]["probe_task_id"], agent["queue"]["in_flight"]) == ("rival-000", 0)
    assert task(ops.session(started["session_id"])[1], "task")["status"] == "queued", "nothing was leased"


def test_an_agent_in_an_error_it_reported_itself_is_not_probed(ops: SessionDriver, clock: Clock) -> None:
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=30)
    quarantine_open(ops)
    clock.advance(31)
    run_task(ops)
    wait_queue(ops, 1)
    assert ops.report_state("error")[0] == 200  # the agent says it is unwell: the probe waits

    status, answer = ops.next_task()
    assert (status, answer["error"]["code"]) == (409, "agent_quarantined"), answer

    assert ops.report_state("idle")[0] == 200  # well again, and still quarantined: the probe is handed out
    status, leased = ops.next_task()
    assert (status, leased["probe"]) == (200, True), leased


def test_a_probes_success_closes_the_breaker_even_when_the_runner_throttles_its_answer(
    ops: SessionDriver, clock: Clock
) -> None:
    """The breaker moves before the runner is told: a result answered 429 (Step Functions kept throttling) has
    already closed it, and the agent's repeat of the result is a 200 that tells the runner."""
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=30)
    quarantine_open(ops)
    clock.advance(31)
    started = run_task(ops)
    wait_queue(ops, 1)
    status, probe = ops.next_task()
    assert (status, probe["probe"]) == (200, True), probe
    throttling = intercept(wiring.stepfunctions(), "SendTaskSuccess", always(Answer.error("ThrottlingException")))
    body = {"status": "succeeded", "output": {}, "attempt": 1}
    status, answer = ops.report(probe["task_id"], body)
    assert status == 429, answer
    _status, agent = ops.agent()
    assert (agent["quarantined"], agent["quarantine"]) == (False, None), "closed by the result already recorded"

    throttling.remove()
    assert ops.report(probe["task_id"], body)[0] == 200
    assert ops.wait_ended(started["session_id"])["status"] == "completed"


def test_a_lift_that_keeps_losing_the_race_is_a_conflict_not_a_claim_that_nothing_was_quarantined(
    ops: SessionDriver,
) -> None:
    ops.register(quarantine_after=1)
    quarantine_open(ops)
    lost = Answer.error(
        "TransactionCanceledException",
        "another writer's condition held",
        CancellationReasons=[{"Code": "ConditionalCheckFailed"}, {"Code": "None"}],
    )
    losing = intercept(wiring.dynamodb(), "TransactWriteItems", always(lost))

    status, answer = lift(ops)
    assert (status, answer["error"]["code"]) == (409, "conflict"), answer
    losing.remove()
    assert ops.agent()[1]["quarantined"] is True, "nothing was lifted"
    assert lift(ops)[0] == 200, "sent again, it lifts"


def _withdrawal(request: dict[str, Any]) -> bool:
    """A transaction that takes a queued attempt off its queue (its task's condition: still queued for it)."""
    items = request.get("TransactItems", [])
    return bool(items) and ":queued" in items[0].get("Update", {}).get("ConditionExpression", "")


@pytest.mark.parametrize("conflicts", [2, 99])
def test_a_failover_that_meets_other_transactions_is_tried_again_and_never_claimed_when_it_was_not(
    ops: SessionDriver, conflicts: int
) -> None:
    """Withdrawing a queued task writes the agent's tallies, which its other attempts' ends write too: a transaction
    that meets one of theirs (TransactionConflict) is tried again; one that keeps meeting them leaves the task queued,
    for the probe or its timeout, and says so rather than claiming a failover."""
    ops.register(quarantine_after=1, quarantine_cooldown_seconds=3600)
    first = run_task(ops)
    leased = ops.wait_leased(first["session_id"], "task")
    queued = ops.start(FLAKY)
    ops.wait_queued(queued, "work")
    met = 0

    def conflicting(request: dict[str, Any]) -> Answer | None:
        nonlocal met
        if not _withdrawal(request) or met >= conflicts:
            return None
        met += 1
        reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(request["TransactItems"]) - 1)
        return Answer.error("TransactionCanceledException", "conflict", CancellationReasons=reasons)

    meeting = intercept(wiring.dynamodb(), "TransactWriteItems", conflicting)
    try:
        # the agent's own failure opens the breaker, which fails its queued task over
        ops.fail(leased, "OutOfMemory", "the worker ran out of memory", fault="agent")
    finally:
        meeting.remove()

    work = task(ops.session(queued)[1], "work")
    if conflicts == 2:
        assert met == 2
        assert work["status"] == "failed"
        assert work["history"][-1]["error"]["type"] == "OpsCore.AgentQuarantined"
        ops.wait_queued(queued, "ask")  # the runner was told: its fallback is queued
    else:
        assert met == 5, "tried five times, then left"
        assert (work["status"], work["attempts"]) == ("queued", 1), "still queued: nothing was recorded"
