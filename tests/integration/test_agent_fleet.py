"""GET /agents and GET /agent/{agentId}/stats through the handlers, after real flows (sessions run on moto)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from opscore import wiring
from opscore.agents.tallies import RELATIVE_ERROR
from opscore.dispatch.health import SweepReport
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Clock, Invoke
from tests.integration.session_driver import SessionDriver, eventually
from tests.integration.test_dispatch import pull, run_task


@pytest.fixture
def ops(call: Invoke, api_event: EventFactory, clock: Clock) -> SessionDriver:
    return SessionDriver(call, api_event, now=clock.now)


@pytest.fixture
def agents(call: Invoke, api_event: EventFactory) -> Callable[..., tuple[int, Any]]:
    def do(caller: dict[str, str] = ADMIN_CONTEXT, **query: str) -> tuple[int, Any]:
        event = api_event("agent_read/list_agents.json", caller=caller, query=query)
        event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()}
        return call("AgentReadFunction", event)

    return do


@pytest.fixture
def stats(call: Invoke, api_event: EventFactory) -> Callable[..., tuple[int, Any]]:
    def do(agent_id: str = "agent-1", caller: dict[str, str] = ADMIN_CONTEXT, **query: str) -> tuple[int, Any]:
        event = api_event("agent_read/get_stats.json", agent_id=agent_id, caller=caller, query=query)
        event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()}
        return call("AgentReadFunction", event)

    return do


# More one-task sessions than the stats once read (50) before they sampled.
BUSY = 51


def report_at(ops: SessionDriver, state: str, when: datetime, agent_id: str = "agent-1") -> None:
    body = {"state": state, "timestamp": when.isoformat()}
    event = ops.api_event("state_update/post.json", agent_id=agent_id, body=body, caller=agent_context(agent_id))
    status, answer = ops.call("StateUpdateFunction", event)
    assert status == 200, answer


def test_the_fleet_is_listed_by_state_filtered_and_paged(
    ops: SessionDriver, agents: Callable[..., tuple[int, Any]]
) -> None:
    # given three agents: one idle, one busy with a task waiting in its queue, one that never reported
    for agent_id in ("agent-1", "agent-2", "agent-3"):
        ops.register(agent_id)
    ops.report_state("idle", "agent-1")
    ops.report_state("paused", "agent-2")  # paused: the task waits in its queue
    run_task(ops, "agent-2")
    eventually(lambda: ops.queue("agent-2")[1]["items"] != [], "the task queued on agent-2")

    # when the admin lists every agent
    status, page = agents()
    # then all three, by state then id, each with its queue and what it holds
    assert status == 200, page
    assert [(item["agent_id"], item["state"], item["queued"]) for item in page["items"]] == [
        ("agent-3", None, 0),
        ("agent-1", "idle", 0),
        ("agent-2", "paused", 1),
    ]
    assert "next_token" not in page
    first = page["items"][1]
    assert set(first) == {
        "agent_id",
        "name",
        "state",
        "state_timestamp",
        "last_seen_at",
        "quarantined",
        "failure_streak",
        "queued",
        "in_flight",
        "max_concurrency",
    }
    assert (first["quarantined"], first["in_flight"], first["max_concurrency"]) == (False, 0, 1)
    assert first["last_seen_at"] is not None

    # filtered by state
    assert [item["agent_id"] for item in agents(state="paused")[1]["items"]] == ["agent-2"]
    assert agents(state="busy")[1] == {"items": []}

    # paged one at a time, the token carrying on where the last page stopped
    seen, token = [], None
    for _ in range(4):
        status, page = agents(limit="1", **({"next_token": token} if token else {}))
        assert status == 200, page
        seen += [item["agent_id"] for item in page["items"]]
        token = page.get("next_token")
        if token is None:
            break
    assert seen == ["agent-3", "agent-1", "agent-2"]

    # a state change moves the agent in the listing
    ops.report_state("busy", "agent-1")
    assert [item["agent_id"] for item in agents(state="busy")[1]["items"]] == ["agent-1"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"bogus": "1"}, "bogus"),
        ({"state": "sleeping"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"next_token": "not-a-token"}, "next_token"),
    ],
)
def test_the_listing_refuses_what_it_does_not_take(
    agents: Callable[..., tuple[int, Any]], query: dict[str, str], field: str
) -> None:
    status, body = agents(**query)
    assert (status, body["error"]["code"]) == (400, "validation_error")
    assert [detail["field"] for detail in body["error"]["details"]] == [field]


def test_a_token_of_another_state_is_refused(ops: SessionDriver, agents: Callable[..., tuple[int, Any]]) -> None:
    for agent_id in ("agent-1", "agent-2"):
        ops.register(agent_id)
        ops.report_state("idle", agent_id)
    token = agents(limit="1")[1]["next_token"]
    status, body = agents(state="busy", next_token=token)
    assert (status, body["error"]["details"][0]["field"]) == (400, "next_token")


def test_only_an_admin_lists_agents(ops: SessionDriver, agents: Callable[..., tuple[int, Any]]) -> None:
    ops.register("agent-1")
    status, body = agents(caller=agent_context("agent-1"))
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_an_agent_written_before_the_index_is_listed_once_it_next_writes(
    ops: SessionDriver, agents: Callable[..., tuple[int, Any]], aws: Any
) -> None:
    # given an agent item with a state but without the index's attributes (as written before the index existed)
    ops.register("agent-1")
    ops.report_state("idle", "agent-1")
    aws.update_item(
        TableName=wiring.settings().table_name,
        Key={"PK": {"S": "AGENT#agent-1"}, "SK": {"S": "AGENT"}},
        UpdateExpression="REMOVE agents_shard, agents_sk",
    )
    assert agents()[1] == {"items": []}
    # when it registers again, then it is listed under the state it has
    ops.register("agent-1")
    assert [(item["agent_id"], item["state"]) for item in agents(state="idle")[1]["items"]] == [("agent-1", "idle")]


def test_stats_count_the_windows_attempts_and_time_in_each_state(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]], sweep: Callable[[float], SweepReport]
) -> None:
    # given an agent idle 40 minutes ago, busy for exactly ten minutes from 30 minutes ago, idle since
    ops.register("agent-1")
    now = ops.now()
    report_at(ops, "idle", now - timedelta(minutes=40))
    report_at(ops, "busy", now - timedelta(minutes=30))
    report_at(ops, "idle", now - timedelta(minutes=20))
    # and three tasks: one succeeded, one failed, one whose lease ran out
    succeeded = run_task(ops)
    ops.succeed(ops.wait_leased(succeeded["session_id"], "task"))
    ops.wait_ended(succeeded["session_id"])
    failed = run_task(ops)
    ops.fail(ops.wait_leased(failed["session_id"], "task"))
    ops.wait_ended(failed["session_id"])
    expired = run_task(ops, timeout_seconds=600, heartbeat_seconds=30)
    ops.wait_leased(expired["session_id"], "task")
    assert sweep(31).leases_expired == 1
    ops.wait_ended(expired["session_id"])
    # and one more waiting in its queue (priority 7) while the agent is paused
    ops.report_state("paused")
    run_task(ops, priority=7)
    eventually(lambda: ops.queue()[1]["items"] != [], "the task queued")

    # when the admin reads the agent's stats over the last hour
    status, body = stats()

    # then
    assert status == 200, body
    assert (body["agent_id"], body["window"], body["window_seconds"]) == ("agent-1", "1h", 3600)
    assert body["tasks"] == {"succeeded": 1, "failed": 1, "timed_out": 1, "success_rate": 0.3333}
    assert body["failure_streak"] == ops.agent()[1]["failure_streak"]
    spent = body["state_seconds"]
    assert spent["busy"] == 600.0
    assert spent["initializing"] == spent["error"] == spent["offline"] == 0.0
    assert 1800 <= spent["idle"] <= 1800 + 31 + 120, "10 minutes, then from 20 minutes ago until paused"
    assert body["utilisation"] == round(600 / 3600, 4)
    # every attempt was leased: three queue waits and run times, the longest run the lease that ran out (31 s on)
    assert body["queue_wait_ms"]["count"] == body["run_time_ms"]["count"] == 3
    # (percentiles come from a histogram: within RELATIVE_ERROR of the measured value)
    assert body["run_time_ms"]["p95"] >= 31_000 / (1 + RELATIVE_ERROR)
    assert body["run_time_ms"]["p50"] < 30_000
    assert body["queue"] == {"queued": 1, "in_flight": 0, "queued_by_priority": {"7": 1}}
    assert body["sampled"] is False

    # the last five minutes, read with the agent's own key: the same attempts, none of the busy time
    status, short = stats(caller=agent_context("agent-1"), window="5m")
    assert status == 200, short
    assert (short["window_seconds"], short["tasks"]) == (300, body["tasks"])
    assert (short["state_seconds"]["busy"], short["utilisation"]) == (0.0, 0.0)
    assert sum(short["state_seconds"].values()) == pytest.approx(300, abs=0.01)


@pytest.mark.parametrize("window", ["1d", "4m", "25h", "abc"])
def test_a_window_out_of_range_is_a_400_naming_it(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]], window: str
) -> None:
    ops.register("agent-1")
    status, body = stats(window=window)
    assert (status, [detail["field"] for detail in body["error"]["details"]]) == (400, ["window"])


def test_stats_of_an_unknown_agent_or_another_agents_are_refused(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]]
) -> None:
    ops.register("agent-1")
    assert stats("agent-9")[0] == 404
    assert stats(caller=agent_context("agent-2"))[0] == 403
    status, body = stats(bogus="1")
    assert (status, body["error"]["details"][0]["field"]) == (400, "bogus")


def test_a_busy_agents_stats_count_every_attempt_of_the_window_exactly(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]]
) -> None:
    # given an agent that ran more tasks than the old sample of its sessions held: 46 succeeded, 5 failed
    ops.register(max_concurrency=BUSY)
    for _ in range(BUSY):
        run_task(ops)
    eventually(lambda: ops.agent()[1]["queue"]["queued"] == BUSY, f"{BUSY} tasks queued")
    for number in range(BUSY):
        task = pull(ops)
        assert task is not None
        if number % 11 == 0:
            ops.fail(task["task_id"])
        else:
            ops.succeed(task["task_id"])

    # when the admin reads its stats over the last hour
    status, body = stats()

    # then every attempt is counted and timed, nothing sampled
    assert status == 200, body
    assert body["tasks"] == {"succeeded": 46, "failed": 5, "timed_out": 0, "success_rate": 0.902}
    assert body["queue_wait_ms"]["count"] == body["run_time_ms"]["count"] == BUSY
    assert body["sampled"] is False


def test_a_repeated_or_late_result_is_not_counted_again(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]], sweep: Callable[[float], SweepReport]
) -> None:
    # given a task that succeeded, and its result sent again
    ops.register()
    first = run_task(ops)
    done = ops.wait_leased(first["session_id"], "task")
    ops.succeed(done)
    ops.succeed(done)
    ops.wait_ended(first["session_id"])
    # and a task whose lease ran out (the sweep ended it as timed out) before its agent's result came
    late = run_task(ops, timeout_seconds=600, heartbeat_seconds=30)
    late_id = ops.wait_leased(late["session_id"], "task")
    assert sweep(31).leases_expired == 1
    status, refused = ops.report(late_id, {"status": "succeeded", "output": {}})
    assert status == 409, refused
    assert sweep(32).leases_expired == 0

    # when the admin reads the agent's stats
    status, body = stats(window="5m")

    # then each attempt counts once, as it ended first
    assert status == 200, body
    assert body["tasks"] == {"succeeded": 1, "failed": 0, "timed_out": 1, "success_rate": 0.5}
    assert body["run_time_ms"]["count"] == 2


def test_ops_cores_own_state_changes_count_in_the_time_in_each_state(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]], sweep: Callable[[float], SweepReport], clock: Clock
) -> None:
    # given an agent idle since ten minutes ago that falls silent, so the sweep marks it offline 6 minutes on
    ops.register(offline_after_seconds=60)
    report_at(ops, "idle", ops.now() - timedelta(minutes=10))
    assert sweep(6 * 60).agents_offline == 1
    clock.advance(120)

    # when the admin reads its stats over the last five minutes, two of them after the sweep
    status, body = stats(window="5m")

    # then the window is idle until the sweep's change and offline since
    assert status == 200, body
    spent = body["state_seconds"]
    assert spent["idle"] + spent["offline"] == pytest.approx(300, abs=0.01)
    assert 120 <= spent["offline"] < 180
    assert body["sampled"] is False


def test_state_history_written_before_the_totals_is_still_counted(
    ops: SessionDriver, stats: Callable[..., tuple[int, Any]], aws: Any
) -> None:
    # given an agent busy for ten minutes from 30 minutes ago, its item and history written before totals were kept
    ops.register()
    now = ops.now()
    report_at(ops, "idle", now - timedelta(minutes=40))
    report_at(ops, "busy", now - timedelta(minutes=30))
    report_at(ops, "idle", now - timedelta(minutes=20))
    table = wiring.settings().table_name
    items = aws.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": "AGENT#agent-1"}},
    )["Items"]
    for item in items:
        aws.update_item(
            TableName=table, Key={"PK": item["PK"], "SK": item["SK"]}, UpdateExpression="REMOVE state_totals"
        )

    # when the admin reads its stats over the last hour
    status, body = stats()

    # then the time in each state is counted from the history in the window
    assert status == 200, body
    assert body["state_seconds"]["busy"] == 600.0
    assert body["state_seconds"]["idle"] == pytest.approx(600 + 1200, abs=60)
    assert body["sampled"] is False
