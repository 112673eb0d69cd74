"""Agent-aware dispatch on the real runner: per-agent priority queues, leases, concurrency limits, health.

Agents lease their work with POST .../tasks/next, as a polling agent built with AgentKit does. The health sweep is
run through the library with a clock moved forward (its deadlines are wall-clock times), never by waiting them out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from opscore import wiring
from opscore.agents.records import CountedFailure
from opscore.core.clock import format_timestamp, utc_now
from opscore.dispatch.health import SweepReport
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import EventFactory, agent_context
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver, eventually, task


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    return SessionDriver(call, api_event, now=clock.now)


def run_task(ops: SessionDriver, agent_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """POST .../tasks as an admin: an ad-hoc task (a one-task session); returns the 202 answer."""
    body = {"action": "web.fetch", **fields}
    event = ops.api_event("session_control/run_task.json", agent_id=agent_id or ops.agent_id, body=body)
    del event["headers"]["Idempotency-Key"]
    status, started = ops.call("SessionControlFunction", event)
    assert status == 202, started
    return dict(started)


def wait_queue(ops: SessionDriver, count: int, agent_id: str | None = None) -> list[dict[str, Any]]:
    """Wait until the agent's queue holds `count` tasks; return them in dispatch order."""
    items: list[dict[str, Any]] = []

    def queued() -> bool:
        nonlocal items
        status, page = ops.queue(agent_id, status="queued")
        assert status == 200, page
        items = page["items"]
        return len(items) == count

    eventually(queued, f"{count} queued tasks")
    return items


def pull(ops: SessionDriver, agent_id: str | None = None) -> dict[str, Any] | None:
    status, leased = ops.next_task(agent_id)
    assert status in {200, 204}, leased
    return dict(leased) if status == 200 else None


def test_higher_priority_first_and_first_in_first_out_within_a_priority(ops: SessionDriver) -> None:
    ops.register(max_concurrency=5)
    started = []
    for priority in (2, 8, 5, 8):
        started.append(run_task(ops, priority=priority, input={"n": len(started)}))
        wait_queue(ops, len(started))  # one at a time, so their queue times are in this order
    assert [item["priority"] for item in wait_queue(ops, 4)] == [8, 8, 5, 2]

    order = [pull(ops) for _ in range(4)]
    assert [leased["input"]["n"] for leased in order if leased] == [1, 3, 2, 0], "8 (first in), 8, 5, 2"
    assert pull(ops) is None, "nothing left: 204"
    assert order[0] is not None
    assert set(order[0]) == {
        "task_id",
        "session_id",
        "action",
        "input",
        "session_input",
        "priority",
        "attempt",
        "lease_expires_at",
        "heartbeat_seconds",
        "timeout_seconds",
        "attempt_deadline",
    }
    assert (order[0]["task_id"], order[0]["attempt"]) == (started[1]["task_id"], 1)
    # the lease's terms: no heartbeat asked for, so the lease lasts the attempt (300 s from being queued)
    assert (order[0]["heartbeat_seconds"], order[0]["timeout_seconds"]) == (None, 300)
    assert order[0]["lease_expires_at"] == order[0]["attempt_deadline"]
    status, agent = ops.agent()
    assert (status, agent["queue"]) == (200, {"queued": 0, "in_flight": 4, "queued_by_priority": {}})
    for leased in order:
        assert leased is not None
        ops.succeed(leased["task_id"])
    for answer in started:
        assert ops.wait_ended(answer["session_id"])["status"] == "completed"
    assert ops.agent()[1]["queue"]["in_flight"] == 0


def test_concurrent_pulls_never_exceed_max_concurrency_nor_share_a_task(
    ops: SessionDriver, call: Invoke, api_event: EventFactory
) -> None:
    ops.register(max_concurrency=2)
    ops.register("agent-2")
    started = [run_task(ops, priority=5) for _ in range(5)]
    wait_queue(ops, 5)
    assert ops.agent()[1]["queue"] == {"queued": 5, "in_flight": 0, "queued_by_priority": {"5": 5}}

    def concurrent_pulls(count: int) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=count) as pool:
            answers = list(pool.map(lambda _: ops.next_task(), range(count)))
        assert {status for status, _ in answers} <= {200, 204}
        return [body for status, body in answers if status == 200]

    assert pull(ops, "agent-2") is None, "another agent's queue is not yours"
    handed: list[str] = []
    while len(handed) < 5:
        leased = concurrent_pulls(6)
        assert 1 <= len(leased) <= 2, "never more than max_concurrency at once"
        handed += [item["task_id"] for item in leased]
        _status, agent = ops.agent()
        assert agent["queue"]["in_flight"] == len(leased)
        for item in leased:
            ops.succeed(item["task_id"])
    assert sorted(handed) == sorted(answer["task_id"] for answer in started), "each task handed out once, none lost"
    for answer in started:
        assert ops.wait_ended(answer["session_id"])["status"] == "completed"


def test_a_paused_agent_gets_nothing_until_it_comes_back(ops: SessionDriver) -> None:
    ops.register()
    assert ops.report_state("paused")[0] == 200
    started = run_task(ops)
    wait_queue(ops, 1)
    assert pull(ops) is None, "paused: 204"

    status, accepted = ops.report_state("busy")
    assert (status, accepted["previous_state"]) == (200, "paused")
    leased = pull(ops)
    assert leased is not None
    assert leased["task_id"] == started["task_id"]
    ops.succeed(leased["task_id"])
    ops.wait_ended(started["session_id"])


def test_an_expired_lease_fails_the_attempt_and_the_retry_is_queued_again(
    ops: SessionDriver, sweep: Callable[[float], SweepReport]
) -> None:
    ops.register()
    started = run_task(ops, timeout_seconds=600, heartbeat_seconds=30, retry={"max_retries": 1, "backoff_seconds": 0})
    first = ops.wait_leased(started["session_id"], "task")
    assert sweep(10).leases_expired == 0, "a lease is not expired early"

    report = sweep(31)
    assert (report.leases_expired, report.agents_freed) == (1, {"agent-1"})
    assert ops.wait_leased(started["session_id"], "task", attempts=2) == first
    view = ops.session(started["session_id"])[1]
    (expired,) = task(view, "task")["history"]
    assert (expired["status"], expired["error"]["type"]) == ("timed_out", "OpsCore.LeaseExpired")
    status, body = ops.report(first, {"status": "succeeded", "attempt": 1})
    assert (status, body["error"]["code"]) == (409, "task_not_open"), "the expired attempt takes no result"
    assert ops.agent()[1]["queue"]["in_flight"] == 1, "the slot came back with the expiry, and went to attempt 2"
    ops.succeed(first)
    assert ops.wait_ended(started["session_id"])["status"] == "completed"


def test_a_silent_agent_is_marked_offline_and_its_leases_end(
    ops: SessionDriver, sweep: Callable[[float], SweepReport]
) -> None:
    ops.register(offline_after_seconds=60)
    ops.register("agent-2", offline_after_seconds=600)
    assert ops.report_state("idle")[0] == 200
    started = run_task(ops, timeout_seconds=600, retry={"max_retries": 1, "backoff_seconds": 0})
    ops.wait_leased(started["session_id"], "task")

    assert sweep(30).agents_offline == 0
    assert sweep(125).agents_offline == 1, (
        "past 60 s, rounded up to the minute: agent-1 only (agent-2 may be silent 600 s)"
    )
    _status, agent = ops.agent()
    assert (agent["current_state"]["state"], agent["current_state"]["details"]) == (
        "offline",
        {"reason": "silent", "offline_after_seconds": 60},
    )
    assert agent["queue"]["in_flight"] == 0
    assert ops.agent("agent-2")[1]["current_state"] is None
    ops.wait_queued(started["session_id"], "task", attempts=2)
    history = task(ops.session(started["session_id"])[1], "task")["history"]
    assert history[0]["error"]["type"] == "OpsCore.AgentOffline"
    assert pull(ops) is None, "an offline agent is handed nothing"
    ops.register(offline_after_seconds=60)  # a re-sync starts the silence clock again, but stays offline
    assert sweep(250).agents_offline == 0, "silent again, but marked once"
    assert ops.agent()[1]["current_state"]["version"] == 2, "idle, offline: no second offline entry"

    assert ops.report_state("idle")[0] == 200
    ops.succeed(ops.wait_leased(started["session_id"], "task", attempts=2))
    ops.wait_ended(started["session_id"])


def test_the_queue_view_and_ad_hoc_tasks_check_their_input(ops: SessionDriver) -> None:
    ops.register(max_concurrency=2)
    started = run_task(ops, priority=7, input={"url": "https://example.com"}, id="fetch")
    assert (started["workflow_id"], started["version"], started["task_id"]) == (
        "ad-hoc",
        0,
        f"{started['session_id']}-000",
    )
    (queued,) = wait_queue(ops, 1)
    assert (queued["task_id"], queued["status"], queued["priority"], queued["lease_expires_at"]) == (
        started["task_id"],
        "queued",
        7,
        None,
    )
    leased = pull(ops)
    assert leased is not None
    assert leased["input"] == {"url": "https://example.com"}
    (held,) = ops.queue(status="leased")[1]["items"]
    assert (held["status"], held["lease_expires_at"]) == ("leased", leased["lease_expires_at"])
    assert ops.queue()[1]["items"] == []

    for query, field in (
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"next_token": "x"}, "next_token"),
    ):
        status, body = ops.queue(**query)
        assert (status, body["error"]["details"][0]["field"]) == (400, field), query
    event = ops.api_event("session_control/run_task.json", body={"action": "x", "fallback": "other"})
    status, body = ops.call("SessionControlFunction", event)
    assert (status, body["error"]["details"][0]["field"]) == (400, "fallback")
    event = ops.api_event("session_control/run_task.json", body={"action": "x"}, caller=agent_context("agent-1"))
    assert ops.call("SessionControlFunction", event)[0] == 403
    event = ops.api_event("session_control/run_task.json", agent_id="ghost", body={"action": "x"})
    assert ops.call("SessionControlFunction", event)[0] == 404
    assert ops.queue("ghost")[0] == 404
    assert len(ops.sessions()[1]["items"]) == 1, "refused tasks started nothing"
    ops.succeed(leased["task_id"])
    ops.wait_ended(started["session_id"])


def test_a_lease_is_exclusive_and_every_lease_ends_once(
    ops: SessionDriver, sweep: Callable[[float], SweepReport]
) -> None:
    ops.register(max_concurrency=2)
    started = [run_task(ops, timeout_seconds=600, heartbeat_seconds=30) for _ in range(3)]
    wait_queue(ops, 3)
    first, second = pull(ops), pull(ops)
    assert first is not None
    assert second is not None
    assert first["task_id"] != second["task_id"], "a leased task is no longer in the queue"
    assert pull(ops) is None, "at max_concurrency"
    assert ops.next_task("agent-2")[0] == 404, "an agent that is not registered leases nothing"

    # the first lease ends with its result, once: neither its repeat nor a later sweep ends it again
    ops.fail(first["task_id"], fault="agent")
    ops.fail(first["task_id"], fault="agent")
    _status, agent = ops.agent()
    assert (agent["queue"]["in_flight"], agent["failure_streak"]) == (1, 1), "one slot back, one failure counted"
    assert sweep(31).leases_expired == 1, "only the second lease was still running"
    status, body = ops.report(second["task_id"], {"status": "succeeded"})
    assert (status, body["error"]["code"]) == (409, "task_not_open"), "the expired lease takes no result"
    _status, agent = ops.agent()
    assert (agent["queue"]["in_flight"], agent["failure_streak"]) == (0, 2), "each lease gave its slot back once"
    for answer in started:
        ops.cancel(answer["session_id"])
    assert ops.agent()[1]["queue"]["in_flight"] == 0


def test_cancelling_a_leased_task_gives_the_slot_back_without_blaming_the_agent(ops: SessionDriver) -> None:
    ops.register()
    started = run_task(ops)
    ops.wait_leased(started["session_id"], "task")
    assert ops.agent()[1]["queue"]["in_flight"] == 1

    status, view = ops.cancel(started["session_id"])
    assert (status, view["status"], task(view, "task")["status"]) == (200, "cancelled", "skipped")
    status, agent = ops.agent()
    assert (agent["queue"], agent["failure_streak"]) == ({"queued": 0, "in_flight": 0, "queued_by_priority": {}}, 0)
    status, body = ops.heartbeat(started["task_id"])
    assert (status, body["error"]["code"]) == (409, "task_not_open")


def test_the_queue_store_leases_each_attempt_once_and_gives_each_slot_back_once(
    ops: SessionDriver, runtime: LambdaRuntime
) -> None:
    """The lease and release transactions themselves (opscore.dispatch.queue), below the routes that use them."""
    ops.register(max_concurrency=2)
    for _ in range(3):
        run_task(ops, timeout_seconds=600)
    wait_queue(ops, 3)
    queue, stamp, until = wiring.task_queue(), "2026-11-24T10:00:00.000000Z", "2099-01-01T00:00:00.000000Z"
    counted = CountedFailure(format_timestamp(utc_now()), "OpsCore.LeaseExpired")
    with runtime.exclusive():
        refs = [task.ref for task in queue.queued("agent-1", 10)]
        assert queue.lease("agent-1", refs[0], stamp, until, 300) == "leased"
        assert queue.lease("agent-1", refs[0], stamp, until, 300) == "taken", "a second pull of the same attempt"
        assert queue.lease("agent-2", refs[1], stamp, until, 300) == "agent_unavailable", "not registered"
        assert queue.lease("agent-1", refs[1], stamp, until, 300) == "leased"
        assert queue.lease("agent-1", refs[2], stamp, until, 300) == "agent_unavailable", "at max_concurrency"
        assert queue.release("agent-1", refs[0], ended=None, counted=counted, now=stamp)
        assert not queue.release("agent-1", refs[0], ended=None, counted=counted, now=stamp), "ended once"
    _status, agent = ops.agent()
    assert (agent["queue"]["in_flight"], agent["failure_streak"]) == (1, 1)


def test_the_queue_view_pages_and_takes_back_tokens_issued_before_one_codec(ops: SessionDriver) -> None:
    ops.register()
    started = [run_task(ops, priority=9 - number) for number in range(3)]
    wait_queue(ops, 3)
    status, first = ops.queue(limit="2")
    assert [item["task_id"] for item in first["items"]] == [answer["task_id"] for answer in started[:2]]
    status, rest = ops.queue(limit="2", next_token=first["next_token"])
    assert (status, [item["task_id"] for item in rest["items"]], "next_token" in rest) == (
        200,
        [started[2]["task_id"]],
        False,
    )
    # Before page tokens had one codec, a queue token was the last entry's place in the index, bare.
    padded = first["next_token"] + "=" * (-len(first["next_token"]) % 4)
    bare = json.loads(base64.urlsafe_b64decode(padded))["after"]
    status, legacy = ops.queue(limit="2", next_token=bare)
    assert (status, legacy["items"]) == (200, rest["items"])
    for answer in started:
        ops.cancel(answer["session_id"])
