"""Warm in-process latency of the busiest handlers on moto, beside a hand-written floor making the same AWS calls.

The floor is what any implementation pays: the same DynamoDB and Step Functions requests against the same moto,
without Powertools, pydantic or Ops-Core's rules. The difference is what the handler itself costs per request.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench.harness import Harness
from opscore.session_plan import build_plan
from opscore.workflow_templates import WorkflowTemplate

DELAYED = {"name": "bench-delayed", "tasks": [{"id": "a", "action": "x", "delay_seconds": 3600}]}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        # Nearest rank: with fewer than 100 samples, the 99th percentile is the slowest one.
        "p99_ms": round(ordered[math.ceil(len(ordered) * 0.99) - 1] * 1000, 3),
        "n": len(ordered),
    }


def timed(
    action: Callable[[int], Any], runs: int, hold: Any = None, settle: Callable[[int], Any] | None = None
) -> list[float]:
    """Each run's duration. `hold` (the runtime's lock) keeps the runner's functions out while a floor calls moto;
    `settle` waits, untimed, for the work a run set off, so it does not land in the next run."""
    samples = []
    for run in range(runs):
        with hold if hold is not None else contextlib.nullcontext():
            started = time.perf_counter()
            action(run)
            samples.append(time.perf_counter() - started)
        if settle is not None:
            settle(run)
    return samples


def handler_timed(
    harness: Harness, action: Callable[[int], Any], runs: int, settle: Callable[[int], Any] | None = None
) -> list[float]:
    """Each run's handler duration, as the runtime measured it (without waiting for the runner's functions)."""
    samples = []
    for run in range(runs):
        action(run)
        samples.append(harness.runtime.last_duration)
        if settle is not None:
            settle(run)
    return samples


def measure(harness: Harness, runs: int) -> dict[str, Any]:
    agent = "bench-latency"
    harness.register(agent)
    harness.create_workflow(DELAYED)
    harness.create_workflow({"name": "bench-quick", "tasks": [{"id": "a", "action": "x"}]})
    table, dynamodb, sfn = harness.table, harness.dynamodb, harness.sfn
    results: dict[str, Any] = {}

    # -- state update: a consistent read, then the agent item and its history entry in one transaction
    def state_update(run: int) -> None:
        body = {"state": "busy" if run % 2 else "idle", "timestamp": f"2026-11-24T06:00:00.{run:06d}Z"}
        event = harness.event("state_update/post.json", path={"agentId": agent}, body=body)
        assert harness.call("StateUpdateFunction", event)[0] == 200

    def state_update_floor(run: int) -> None:
        body = json.loads(json.dumps({"state": "busy", "timestamp": f"2026-11-24T07:00:00.{run:06d}Z"}))
        key = {"PK": {"S": "AGENT#floor"}, "SK": {"S": "AGENT"}}
        dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": key,
                        "UpdateExpression": "SET #s = :s, v = :v",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": {":s": {"S": body["state"]}, ":v": {"N": str(run)}},
                    }
                },
                {"Put": {"TableName": table, "Item": {"PK": key["PK"], "SK": {"S": f"STATE#{body['timestamp']}"}}}},
            ]
        )

    results["state update"] = _pair(
        handler_timed(harness, state_update, runs), timed(state_update_floor, runs, harness.runtime.exclusive())
    )

    # -- trigger: the session item, then StartExecution (the runner then waits out a long delay, idle)
    triggered: list[str] = []

    def trigger(_: int) -> None:
        triggered.append(harness.trigger(agent, "bench-delayed"))

    def trigger_settled(run: int) -> None:
        harness.wait(lambda: harness.status(triggered[run]) == "processing", "the runner's start")

    # The floor starts the same runner for a session stored the same way, so the runner's first steps (on moto's
    # threads, competing for the cores) weigh on both sides alike.
    runner_arn = harness.template.functions["SessionControlFunction"].environment["STATE_MACHINE_ARN"]
    plan = build_plan(WorkflowTemplate.model_validate(DELAYED), 1, {}, None).model_dump(mode="json")
    tasks_json = json.dumps([{"id": "a", "action": "x", "fallback_only": False}])

    def trigger_floor(run: int) -> None:
        # The trigger's own requests: the agent, the workflow's latest version, the session, the execution.
        agent_key = {"PK": {"S": f"AGENT#{agent}"}, "SK": {"S": "AGENT"}}
        dynamodb.get_item(TableName=table, Key=agent_key, ConsistentRead=True)
        dynamodb.query(
            TableName=table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :v)",
            ExpressionAttributeValues={":pk": {"S": "WORKFLOW#bench-delayed"}, ":v": {"S": "V#"}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        session_id = f"{run:032x}"
        dynamodb.put_item(
            TableName=table,
            Item={
                "PK": {"S": f"SESSION#{session_id}"},
                "SK": {"S": "SESSION"},
                "status": {"S": "waiting"},
                "agent_id": {"S": agent},
                "tasks": {"S": tasks_json},
            },
        )
        runner_input = {"session_id": session_id, "agent_id": agent, "plan": plan}
        sfn.start_execution(stateMachineArn=runner_arn, name=session_id, input=json.dumps(runner_input))

    def floor_settled(run: int) -> None:
        harness.wait(lambda: harness.status(f"{run:032x}") == "processing", "the runner's start")

    trigger_runs = max(10, runs // 4)
    results["trigger"] = _pair(
        handler_timed(harness, trigger, trigger_runs, settle=trigger_settled),
        timed(trigger_floor, trigger_runs, harness.runtime.exclusive(), settle=floor_settled),
    )

    # -- result: read the task, keep the result, SendTaskSuccess
    sessions = [harness.trigger(agent, "bench-quick") for _ in range(trigger_runs * 2)]
    for session in sessions:
        harness.wait(partial(harness.dispatched, session, 0), "a dispatched task")
    ours, floors = sessions[:trigger_runs], sessions[trigger_runs:]

    def result(run: int) -> None:
        harness.report(agent, f"{ours[run]}-000")

    def result_floor(run: int) -> None:
        # The result's own requests: read the task, keep the result (guarded by the session), tell the runner,
        # read the task again.
        key = {"PK": {"S": f"SESSION#{floors[run]}"}, "SK": {"S": "TASK#000"}}
        session_key = {"PK": key["PK"], "SK": {"S": "SESSION"}}
        token = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["task_token"]["S"]
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": session_key,
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "TableName": table,
                        "Key": key,
                        "UpdateExpression": "SET r = :r",
                        "ExpressionAttributeValues": {":r": {"S": "{}"}},
                    }
                },
            ]
        )
        sfn.send_task_success(taskToken=token, output="{}")
        dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)

    results["result"] = _pair(
        handler_timed(harness, result, trigger_runs), timed(result_floor, trigger_runs, harness.runtime.exclusive())
    )
    results["lease"] = "not built yet (agent-aware dispatch)"
    return results


def _pair(handler: list[float], floor: list[float]) -> dict[str, Any]:
    ours, base = percentiles(handler), percentiles(floor)
    return {"handler": ours, "floor": base, "p50_ratio": round(ours["p50_ms"] / base["p50_ms"], 2)}
