"""Warm in-process latency of the busiest handlers on moto, beside a hand-written floor making the same AWS calls.

The floor is what any implementation pays: the same DynamoDB and Step Functions requests against the same moto, on
items of the same shape, without Powertools, pydantic or Ops-Core's rules. The difference is what the handler itself
costs per request. An agent's requests (lease, heartbeat, result, the empty pull) are timed on two agents' queues,
filled by the runner alike: the handler works one, the floor the other.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bench.harness import Harness
from opscore.sessions.definition import RunnerTargets, definition_text, runner_definition
from opscore.workflows.templates import WorkflowTemplate

DELAYED = {"name": "bench-delayed", "tasks": [{"id": "a", "action": "x", "delay_seconds": 3600}]}


def silent_from(now: datetime, seconds: int = 300) -> str:
    """The floor's silence deadline, rounded up to the minute as Ops-Core rounds it (the same value, the same write)."""
    due = now + timedelta(seconds=seconds)
    rounded = due.replace(second=0, microsecond=0)
    return (rounded if rounded == due else rounded + timedelta(minutes=1)).isoformat()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        # Nearest rank: with fewer than 100 samples, the 99th percentile is the slowest one.
        "p99_ms": round(ordered[math.ceil(len(ordered) * 0.99) - 1] * 1000, 3),
        "n": len(ordered),
    }


def alternated(
    harness: Harness,
    action: Callable[[int], Any],
    floor: Callable[[int], Any],
    runs: int,
    *,
    settle: Callable[[int], Any] | None = None,
    floor_settle: Callable[[int], Any] | None = None,
) -> tuple[list[float], list[float]]:
    """Each run's handler duration, as the runtime measured it (without waiting for the runner's functions), and
    each floor run's, one after the other: moto copies the whole table for each item of a transaction, so its
    requests slow down as the table grows, and alternating keeps that drift out of the ratio. The floor holds the
    runtime's lock, which keeps the runner's functions out while it calls moto; `settle` and `floor_settle` wait,
    untimed, for the work a run set off, so it does not land in the next run."""
    ours, base = [], []
    for run in range(runs):
        action(run)
        ours.append(harness.runtime.last_duration)
        if settle is not None:
            settle(run)
        with harness.runtime.exclusive():
            started = time.perf_counter()
            floor(run)
            base.append(time.perf_counter() - started)
        if floor_settle is not None:
            floor_settle(run)
    return ours, base


def measure(harness: Harness, runs: int) -> dict[str, Any]:
    agent, floor_agent = "bench-latency", "bench-latency-floor"
    for registered in (agent, floor_agent):  # each holds a lease per result run at once
        harness.register(registered, max_concurrency=1000)
    harness.create_workflow(DELAYED)
    harness.create_workflow({"name": "bench-quick", "tasks": [{"id": "a", "action": "x"}]})
    table, dynamodb, sfn = harness.table, harness.dynamodb, harness.sfn
    results: dict[str, Any] = {}

    # -- state update: a consistent read, then the agent item and its history entry in one transaction; an idle
    # report also reads the agent's delivery channel (to wake a pushing one)
    def state_update(run: int) -> None:
        body = {"state": "busy" if run % 2 else "idle", "timestamp": f"2026-11-24T06:00:00.{run:06d}Z"}
        event = harness.event("state_update/post.json", path={"agentId": agent}, body=body)
        assert harness.call("StateUpdateFunction", event)[0] == 200

    def state_update_floor(run: int) -> None:
        # The same requests on an agent registered the same way (moto's time grows with the attributes it answers):
        # read the agent, write its state and silence deadline (conditioned on the version read) with the history
        # entry, and on an idle report read the agent's delivery channel (a pushing channel would be woken).
        state = "busy" if run % 2 else "idle"
        stamp = f"2026-11-24T07:00:00.{run:06d}Z"
        moment = datetime.now(UTC)
        now = moment.isoformat()
        key = {"PK": {"S": f"AGENT#{floor_agent}"}, "SK": {"S": "AGENT"}}
        dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
        written = {
            "state": {"S": state},
            "state_timestamp": {"S": stamp},
            "state_details": {"S": "null"},
            "state_error": {"S": "null"},
            "state_version": {"N": str(run + 1)},
        }
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": key,
                        "UpdateExpression": (
                            "SET #state = :state, state_timestamp = :ts, state_details = :details, "
                            "state_error = :error, state_version = :version, state_recorded_at = :now, "
                            "last_seen_at = :now, deadline_kind = :silence, deadline_at = :deadline"
                        ),
                        "ConditionExpression": "attribute_exists(PK) AND state_version = :expected",
                        "ExpressionAttributeNames": {"#state": "state"},
                        "ExpressionAttributeValues": {
                            ":state": written["state"],
                            ":ts": written["state_timestamp"],
                            ":details": written["state_details"],
                            ":error": written["state_error"],
                            ":version": written["state_version"],
                            ":expected": {"N": str(run)},
                            ":now": {"S": now},
                            ":silence": {"S": "SILENCE"},
                            ":deadline": {"S": f"{silent_from(moment)}#{floor_agent}"},
                        },
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "PK": key["PK"],
                            "SK": {"S": f"STATE#{stamp}"},
                            "entity": {"S": "state"},
                            **written,
                            "recorded_at": {"S": now},
                            "expires_at": {"N": "1800000000"},
                            "previous_state": {"S": "idle" if state == "busy" else "busy"},
                        },
                        "ConditionExpression": "attribute_not_exists(SK)",
                    }
                },
            ]
        )
        if state == "idle":
            dynamodb.get_item(TableName=table, Key=key, ProjectionExpression="delivery")

    results["state update"] = _pair(*alternated(harness, state_update, state_update_floor, runs))

    # -- trigger: the session item (with its first task's mark: it waits out a long delay), StartExecution of the
    # workflow's runner (which then waits, idle), and the session marked processing
    triggered: list[str] = []

    def trigger(_: int) -> None:
        triggered.append(harness.trigger(agent, "bench-delayed"))

    # The floor starts the same runner with the same input for a session stored the same way, so the runner's first
    # steps (on moto's threads, competing for the cores) weigh on both sides alike.
    first = harness.trigger(agent, "bench-delayed")
    execution_arn = harness.item(first, "SESSION")["execution_arn"]["S"]
    runner_arn = execution_arn.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:")
    tasks_json = json.dumps([{"id": "a", "action": "x", "fallback_only": False}])

    def trigger_floor(run: int) -> None:
        # The trigger's own requests: the agent, the workflow's latest version, the session and its first task's
        # mark, the execution.
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
        session = {
            "PK": {"S": f"SESSION#{session_id}"},
            "SK": {"S": "SESSION"},
            "status": {"S": "waiting"},
            "agent_id": {"S": agent},
            "tasks": {"S": tasks_json},
        }
        mark: dict[str, Any] = {
            "TableName": table,
            "Key": {"PK": {"S": f"SESSION#{session_id}"}, "SK": {"S": "TASK#000"}},
            "UpdateExpression": "SET #status = :scheduled",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":scheduled": {"S": "scheduled"}},
        }
        dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": table, "Item": session}}, {"Update": mark}]  # type: ignore[typeddict-item]
        )
        runner_input = {
            "session_id": session_id,
            "agent_id": agent,
            "input": {},
            "tasks": [{"input": {}, "priority": 5}],
        }
        sfn.start_execution(stateMachineArn=runner_arn, name=session_id, input=json.dumps(runner_input))

    trigger_runs = max(10, runs // 4)
    results["trigger"] = _pair(*alternated(harness, trigger, trigger_floor, trigger_runs))

    # -- an agent's work: lease (tasks/next), heartbeat, result; each agent holds many leases at once. The
    # floor works its own agent's queue, filled the same way, with the same requests.
    ours = [harness.trigger(agent, "bench-quick") for _ in range(trigger_runs)]
    floors = [harness.trigger(floor_agent, "bench-quick") for _ in range(trigger_runs)]
    for session in ours + floors:
        harness.wait(partial(harness.queued, session, 0), "a queued task")
    # The order a lease hands them out: the queue's rank (all have the same priority).
    ours.sort(key=lambda session: harness.item(session, "TASK#000")["agent_tasks_sk"]["S"])
    floor = Floor(harness, floor_agent)
    results.update(_work(harness, agent, ours, floor=floor, floors=floors, runs=trigger_runs))
    results["store a template (new runner)"] = _storing(harness, trigger_runs)
    return results


def _storing(harness: Harness, runs: int) -> dict[str, Any]:
    """Storing a version whose shape is new: the handler (its reads, CreateStateMachine, the version's write) beside
    CreateStateMachine alone, for a definition of the same size."""
    role = harness.template.functions["WorkflowsFunction"].environment["RUNNER_ROLE_ARN"]
    sfn = harness.sfn

    def store(run: int) -> None:
        harness.create_workflow({"name": f"bench-store-{run}", "tasks": [{"id": "a", "action": f"x{run}"}]})

    def create_alone(run: int) -> None:
        shape = WorkflowTemplate.model_validate({"name": f"bench-floor-{run}", "tasks": [{"id": "a", "action": "y"}]})
        targets = RunnerTargets(
            harness.template.functions["WorkflowsFunction"].environment["DISPATCH_FUNCTION_ARN"], "t"
        )
        definition = definition_text(runner_definition(shape, targets))
        sfn.create_state_machine(name=f"bench-floor-{run}", definition=definition, roleArn=role, type="STANDARD")

    return _pair(*alternated(harness, store, create_alone, runs))


def _work(
    harness: Harness, agent: str, ours: list[str], *, floor: Floor, floors: list[str], runs: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    leased: list[str] = []  # the floor's tasks, in the order it leased them
    results["lease (tasks/next)"] = _pair(
        *alternated(
            harness, lambda run: harness.lease(agent, f"{ours[run]}-000"), lambda _: leased.append(floor.lease()), runs
        )
    )
    assert sorted(leased) == sorted(f"{session}-000" for session in floors)
    results["heartbeat"] = _pair(
        *alternated(
            harness,
            lambda run: harness.heartbeat(agent, f"{ours[run]}-000"),
            lambda run: floor.heartbeat(leased[run]),
            runs,
        )
    )
    results["result"] = _pair(
        *alternated(
            harness, lambda run: harness.report(agent, f"{ours[run]}-000"), lambda run: floor.result(leased[run]), runs
        )
    )
    for session in ours + floors:  # each result completed its session; then the queues are empty
        harness.wait(partial(_completed, harness, session), "the session's end")
    results["lease (tasks/next, nothing ready)"] = _pair(
        *alternated(harness, lambda _: harness.nothing_ready(agent), lambda _: floor.nothing_ready(), runs)
    )
    return results


def _completed(harness: Harness, session_id: str) -> bool:
    return harness.status(session_id) == "completed"


class Floor:
    """The agent's operations as hand-written DynamoDB and Step Functions requests: the same requests the handlers
    make (each condition and update included, since moto evaluates them), without Ops-Core around them."""

    def __init__(self, harness: Harness, agent: str) -> None:
        self._dynamodb, self._sfn, self._table = harness.dynamodb, harness.sfn, harness.table
        self._agent = agent
        self._agent_key = {"PK": {"S": f"AGENT#{agent}"}, "SK": {"S": "AGENT"}}

    @staticmethod
    def _key(task_id: str) -> dict[str, Any]:
        session, index = task_id.rsplit("-", 1)
        return {"PK": {"S": f"SESSION#{session}"}, "SK": {"S": f"TASK#{index}"}}

    def _touch(self) -> None:
        now = datetime.now(UTC)
        silent = silent_from(now)
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._agent_key,
            UpdateExpression="SET last_seen_at = :now, deadline_at = :deadline",
            ConditionExpression="attribute_exists(deadline_kind)",
            ExpressionAttributeValues={":now": {"S": now.isoformat()}, ":deadline": {"S": f"{silent}#{self._agent}"}},
        )

    def lease(self) -> str:
        """Read the agent, touch it, read its queue, lease the head (agent and task in one transaction), read the
        task; returns the task id."""
        (head, *_) = self._read_queue()
        task_id = f"{head['session_id']['S']}-{int(head['index']['N']):03d}"
        now = datetime.now(UTC).isoformat()
        expires = (datetime.now(UTC) + timedelta(seconds=300)).isoformat()
        position = {"S": f"{expires}#{task_id}"}
        self._dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._agent_key,
                        "UpdateExpression": "ADD in_flight :one",
                        "ConditionExpression": (
                            "attribute_exists(PK) AND attribute_not_exists(quarantined) "
                            "AND (attribute_not_exists(in_flight) OR in_flight < max_concurrency) "
                            "AND (attribute_not_exists(#state) OR NOT (#state IN (:paused, :error, :offline)))"
                        ),
                        "ExpressionAttributeNames": {"#state": "state"},
                        "ExpressionAttributeValues": {
                            ":one": {"N": "1"},
                            ":paused": {"S": "paused"},
                            ":error": {"S": "error"},
                            ":offline": {"S": "offline"},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._key(task_id),
                        "UpdateExpression": (
                            "SET #status = :leased, leased_at = :now, lease_expires_at = :expires, updated_at = :now, "
                            "agent_tasks = :partition, agent_tasks_sk = :position, "
                            "deadline_kind = :lease, deadline_at = :position, agent_offline_after = :offline_after"
                        ),
                        "ConditionExpression": "#status = :queued AND dispatch_seq = :seq AND agent_id = :agent",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":leased": {"S": "leased"},
                            ":queued": {"S": "queued"},
                            ":now": {"S": now},
                            ":expires": {"S": expires},
                            ":partition": {"S": f"{self._agent}#leased"},
                            ":position": position,
                            ":lease": {"S": "LEASE"},
                            ":seq": head["dispatch_seq"],
                            ":agent": {"S": self._agent},
                            ":offline_after": {"N": "300"},
                        },
                    }
                },
            ]
        )
        self._dynamodb.get_item(TableName=self._table, Key=self._key(task_id), ConsistentRead=True)
        return task_id

    def heartbeat(self, task_id: str) -> None:
        """Read the task, touch the agent, move the lease's expiry."""
        item = self._dynamodb.get_item(TableName=self._table, Key=self._key(task_id), ConsistentRead=True)["Item"]
        self._touch()
        now = datetime.now(UTC).isoformat()
        expires = (datetime.now(UTC) + timedelta(seconds=300)).isoformat()
        self._dynamodb.update_item(
            TableName=self._table,
            Key=self._key(task_id),
            UpdateExpression=(
                "SET lease_expires_at = :expires, agent_tasks_sk = :position, deadline_at = :position, "
                "updated_at = :now"
            ),
            ConditionExpression="#status = :leased AND dispatch_seq = :seq AND lease_expires_at > :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":expires": {"S": expires},
                ":position": {"S": f"{expires}#{task_id}"},
                ":now": {"S": now},
                ":leased": {"S": "leased"},
                ":seq": item["dispatch_seq"],
            },
        )

    def result(self, task_id: str) -> None:
        """Read the task, touch the agent; record the result with the attempt's end, end the lease and complete the
        session (its last task) in one transaction; tell the runner; read the agent's delivery channel."""
        key = self._key(task_id)
        item = self._dynamodb.get_item(TableName=self._table, Key=key, ConsistentRead=True)["Item"]
        self._touch()
        now = datetime.now(UTC).isoformat()
        self._dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": {"PK": key["PK"], "SK": {"S": "SESSION"}},
                        "UpdateExpression": "SET #status = :completed, ended_at = :now, updated_at = :now",
                        "ConditionExpression": "#status = :processing",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":processing": {"S": "processing"},
                            ":completed": {"S": "completed"},
                            ":now": {"S": now},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": key,
                        "UpdateExpression": (
                            "SET #status = :succeeded, ended_at = :now, duration_ms = :ms, history.#n = :entry, "
                            "#output = :output, #result = :result, result_seq = :seq, result_attempt = :attempt, "
                            "updated_at = :now "
                            "REMOVE lease_expires_at, agent_tasks, agent_tasks_sk, deadline_kind, deadline_at, "
                            "#error, scheduled_for"
                        ),
                        "ConditionExpression": (
                            "#status = :leased AND dispatch_seq = :seq AND attribute_exists(lease_expires_at) "
                            "AND attempt_deadline > :now"
                        ),
                        "ExpressionAttributeNames": {
                            "#status": "status",
                            "#result": "result",
                            "#output": "output",
                            "#error": "error",
                            "#n": "1",
                        },
                        "ExpressionAttributeValues": {
                            ":succeeded": {"S": "succeeded"},
                            ":ms": {"N": "100"},
                            ":entry": {
                                "S": '{"attempt":1,"ended_at":"'
                                + now
                                + '","error":null,"started_at":"'
                                + now
                                + '","status":"succeeded"}'
                            },
                            ":output": {"S": "{}"},
                            ":result": {"S": '{"output":{},"status":"succeeded"}'},
                            ":seq": item["dispatch_seq"],
                            ":attempt": item["attempts"],
                            ":leased": {"S": "leased"},
                            ":now": {"S": now},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._agent_key,
                        "UpdateExpression": "ADD in_flight :minus_one",
                        "ExpressionAttributeValues": {":minus_one": {"N": "-1"}},
                    }
                },
            ]
        )
        self._sfn.send_task_success(taskToken=item["task_token"]["S"], output='{"status": "succeeded"}')
        self._dynamodb.get_item(TableName=self._table, Key=self._agent_key, ProjectionExpression="delivery")

    def _read_queue(self) -> list[Any]:
        """What every pull does first: read the agent, touch it, read the head of its queue."""
        self._dynamodb.get_item(TableName=self._table, Key=self._agent_key, ConsistentRead=True)
        self._touch()
        return list(
            self._dynamodb.query(
                TableName=self._table,
                IndexName="AgentTasks",
                KeyConditionExpression="agent_tasks = :partition",
                ExpressionAttributeValues={":partition": {"S": f"{self._agent}#queued"}},
                Limit=10,
            )["Items"]
        )

    def nothing_ready(self) -> None:
        """Read the agent, touch it, find its queue empty."""
        assert not self._read_queue()


def _pair(handler: list[float], floor: list[float]) -> dict[str, Any]:
    ours, base = percentiles(handler), percentiles(floor)
    return {"handler": ours, "floor": base, "p50_ratio": round(ours["p50_ms"] / base["p50_ms"], 2)}
