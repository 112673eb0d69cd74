"""Session traces over the handlers and the executed session runner: real sessions, then the trace route's spans.

One session takes an expired lease (a timeout, retried after its backoff), a failure with no retry left, and a
delayed fallback; another fails over at once to its fallback because its agent is quarantined. Time is moved with the
Clock fixture and the health sweep, never waited out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from opscore.dispatch.health import SweepReport
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver
from tests.integration.test_quarantine import lift, quarantine_open

TRACED = {
    "name": "traced",
    "tasks": [
        {
            "id": "fetch",
            "action": "web.fetch",
            "timeout_seconds": 600,
            "heartbeat_seconds": 30,
            "retry": {"max_retries": 1, "backoff_seconds": 0},
            "fallback": "ask",
        },
        {"id": "ask", "action": "human.ask", "fallback_only": True, "delay_seconds": 1},
    ],
}
FAILOVER = {
    "name": "failover",
    "tasks": [
        {"id": "work", "action": "web.fetch", "fallback": "ask"},
        {"id": "ask", "action": "human.ask", "fallback_only": True},
    ],
}


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    return SessionDriver(call, api_event, now=clock.now)


def get_trace(
    ops: SessionDriver, session_id: str, caller: dict[str, str] | None = None, agent_id: str | None = None
) -> tuple[int, Any]:
    event = ops.api_event(
        "agent_read/get_trace.json",
        path={"agentId": agent_id or ops.agent_id, "sessionId": session_id},
        caller=caller or ADMIN_CONTEXT,
    )
    return ops.call("AgentReadFunction", event)


def get_trace_by_session(ops: SessionDriver, session_id: str, caller: dict[str, str] | None = None) -> tuple[int, Any]:
    event = ops.api_event(
        "agent_read/get_trace_by_session.json", path={"sessionId": session_id}, caller=caller or ADMIN_CONTEXT
    )
    return ops.call("AgentReadFunction", event)


def spans_by_name(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in trace["spans"]}


def test_a_timeout_a_retry_and_a_delayed_fallback_are_the_traces_spans(
    ops: SessionDriver, sweep: Callable[[float], SweepReport]
) -> None:
    ops.register()
    session_id = ops.start(TRACED)
    fetch = ops.wait_leased(session_id, "fetch")
    assert sweep(31).leases_expired == 1  # no heartbeat: the lease runs out, a timeout the run retries
    ops.fail(ops.wait_leased(session_id, "fetch", attempts=2), "ToolError", "the page is gone", attempt=2)
    ops.succeed(ops.wait_leased(session_id, "ask"), {"answer": "cached"})
    assert ops.wait_ended(session_id)["status"] == "completed"

    status, trace = get_trace(ops, session_id)
    assert status == 200, trace
    assert (trace["trace_id"], trace["status"], trace["workflow_id"]) == (session_id, "completed", "traced")
    spans = spans_by_name(trace)
    assert list(spans) == [
        "session traced",
        "fetch attempt 1",
        "backoff before fetch attempt 2",
        "fetch attempt 2",
        "delay before ask",
        "fallback ask for fetch",
        "ask attempt 1",
    ]
    root = spans["session traced"]
    assert (root["parent_span_id"], root["status"], root["end_time"]) == (None, "OK", trace["end_time"])
    timed_out = spans["fetch attempt 1"]
    assert timed_out["attributes"]["task_id"] == fetch
    assert (timed_out["status"], timed_out["attributes"]["error.type"]) == ("ERROR", "OpsCore.LeaseExpired")
    assert timed_out["attributes"]["timed_out"] is True
    assert "retry_at" in timed_out["attributes"]
    backoff = spans["backoff before fetch attempt 2"]
    assert backoff["attributes"]["wait"] == "backoff"
    assert backoff["start_time"] == timed_out["end_time"]
    assert backoff["end_time"] == spans["fetch attempt 2"]["start_time"]
    failed = spans["fetch attempt 2"]
    assert (failed["status"], failed["attributes"]["error.type"]) == ("ERROR", "ToolError")
    assert "retry_at" not in failed["attributes"]
    delay = spans["delay before ask"]
    assert (delay["kind"], delay["attributes"]["delay_seconds"]) == ("wait", 1)
    fallback = spans["fallback ask for fetch"]
    assert (fallback["kind"], fallback["status"]) == ("fallback", "OK")
    assert (fallback["attributes"]["cause.type"], fallback["attributes"]["cause.message"]) == (
        "ToolError",
        "the page is gone",
    )
    ask = spans["ask attempt 1"]
    assert (ask["parent_span_id"], ask["status"]) == (fallback["span_id"], "OK")
    for span in (timed_out, failed, ask):
        attributes = span["attributes"]
        assert attributes["queue_wait_ms"] + attributes["run_ms"] == span["duration_ms"]
        assert attributes["queued_at"] <= attributes["leased_at"] <= span["end_time"]
    for span in trace["spans"][1:]:
        assert root["start_time"] <= span["start_time"] <= span["end_time"] <= root["end_time"]
    assert {key: trace["totals"][key] for key in ("attempts", "retries", "timeouts", "fallbacks")} == {
        "attempts": 3,
        "retries": 1,
        "timeouts": 1,
        "fallbacks": 1,
    }
    # the session view's history keeps what the trace is built from
    _status, view = ops.session(session_id)
    first = view["tasks"][0]["history"][0]
    assert (first["queued_at"], first["leased_at"]) == (timed_out["start_time"], timed_out["attributes"]["leased_at"])
    assert first["retry_at"] == timed_out["attributes"]["retry_at"]
    assert view["tasks"][1]["history"][0]["delay_seconds"] == 1

    # the same trace by the session id alone, for an admin
    assert get_trace_by_session(ops, session_id) == (200, trace)


def test_a_quarantine_failover_is_a_fallback_whose_cause_is_the_quarantine(ops: SessionDriver) -> None:
    ops.register(quarantine_after=1)
    quarantine_open(ops)
    session_id = ops.start(FAILOVER)
    ops.wait_queued(session_id, "ask")  # the work failed over at once; its fallback waits for the agent
    assert lift(ops)[0] == 200
    ops.succeed(ops.wait_leased(session_id, "ask"))
    ops.wait_ended(session_id)

    status, trace = get_trace(ops, session_id)
    assert status == 200, trace
    spans = spans_by_name(trace)
    assert list(spans) == ["session failover", "work attempt 1", "fallback ask for work", "ask attempt 1"]
    work = spans["work attempt 1"]
    assert (work["status"], work["attributes"]["error.type"]) == ("ERROR", "OpsCore.AgentQuarantined")
    assert "leased_at" not in work["attributes"], "never leased: all of it was queue wait"
    assert work["attributes"]["queue_wait_ms"] == work["duration_ms"]
    assert spans["fallback ask for work"]["attributes"]["cause.type"] == "OpsCore.AgentQuarantined"
    assert trace["totals"]["fallbacks"] == 1


def test_the_trace_is_read_as_the_session_is(ops: SessionDriver) -> None:
    ops.register()
    ops.register("agent-2")
    session_id = ops.start({"name": "one", "tasks": [{"id": "work", "action": "web.fetch"}]})
    status, trace = get_trace(ops, session_id, caller=agent_context("agent-1"))
    assert status == 200, trace
    work = spans_by_name(trace)["work attempt 1"] if len(trace["spans"]) > 1 else None
    assert work is None or work["end_time"] is None, "an open attempt has no end yet"
    assert trace["end_time"] is None
    status, refused = get_trace(ops, session_id, caller=agent_context("agent-2"))
    assert (status, refused["error"]["code"]) == (403, "forbidden")
    status, missing = get_trace(ops, session_id, agent_id="agent-2")
    assert (status, missing["error"]["code"]) == (404, "not_found"), "another agent's session is missing"
    status, refused = get_trace_by_session(ops, session_id, caller=agent_context("agent-1"))
    assert status == 403, "the read by session id alone is an admin's"
    status, missing = get_trace_by_session(ops, "f" * 32)
    assert (status, missing["error"]["code"]) == (404, "not_found")
    ops.succeed(ops.wait_leased(session_id, "work"))
    ops.wait_ended(session_id)
