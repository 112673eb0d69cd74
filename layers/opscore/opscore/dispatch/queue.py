"""Agents' task queues and leases, kept on the task items themselves.

A task the runner hands over is queued on its agent; an agent (or its delivery channel) leases it; the lease ends
with the agent's result, an expiry, a timeout or a cancel. Two sparse indexes make every lookup a Query:
- AgentTasks: `agent_tasks=<agent>#queued`, `agent_tasks_sk=<rank>#<task id>` while queued (lowest rank first, see
  `queue_rank`); `agent_tasks=<agent>#leased`, `agent_tasks_sk=<lease expiry>#<task id>` while leased;
- Deadlines: `deadline_kind=ATTEMPT`, `deadline_at=<attempt deadline>#<task id>` while queued (when the runner's
  timeout for the attempt runs out), then `deadline_kind=LEASE`, `deadline_at=<lease expiry>#<task id>` while leased
  (a lease never outlasts the attempt's deadline): the sweep's queries, beside the agents' silence deadlines.

The agent's `in_flight` moves only in the same transaction as a task's lease, so it counts leases exactly: a lease
takes a slot only while the agent is dispatchable and below `max_concurrency`, and every way a lease ends gives the
slot back once (the task's `lease_expires_at` guards it). A failure counted against the agent is appended to its
`failures` in that same transaction, so none is lost; and every recorded end of an attempt adds to the agent's
tallies in its own transaction (opscore.agents.tallies), so each is counted once. A quarantined agent's one lease is
its probe, leased only while it is half-open and no other probe is out: the agent item's `probe` is the condition and
the mark, in the lease's transaction, so two concurrent pulls cannot both take one.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from opscore.agents.models import AgentState
from opscore.agents.records import PROBES_NOT, TAKES_NO_WORK, CountedFailure
from opscore.agents.store import DEADLINES_INDEX, agent_key
from opscore.aws.dynamodb import run_transaction, translated_errors, update_if
from opscore.aws.items import decode_item, n, s
from opscore.aws.updates import Update
from opscore.sessions.items import QUEUE_ATTRIBUTES, ended_writes, outcome_update, task_key, task_record
from opscore.sessions.models import TaskStatus, task_id
from opscore.sessions.records import TaskRecord, TaskRef

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from opscore.sessions.attempts import AttemptEnd

QUEUE_INDEX = "AgentTasks"
LEASE = "LEASE"
ATTEMPT = "ATTEMPT"  # a queued attempt, by when the runner's timeout for it runs out (see SessionStore.dispatch)
# Waiting this long is worth one priority level: a task enqueued this much earlier ranks with one a level more urgent.
QUEUE_AGING_SECONDS = 120
# Everything that marks a task as leased; removing them together ends the lease.
LEASE_ATTRIBUTES = QUEUE_ATTRIBUTES
# A task whose time in the runner has run out is not leased or renewed: the runner no longer waits for it.
IN_TIME = "(attribute_not_exists(attempt_deadline) OR attempt_deadline > :now)"

LeaseOutcome = Literal["leased", "taken", "agent_unavailable"]


def queue_rank(enqueued_at: datetime, priority: int) -> int:
    """The queue's order: milliseconds since the epoch, less QUEUE_AGING_SECONDS per priority level.

    Higher priority first; within a priority, first in first out; and a task that has waited QUEUE_AGING_SECONDS
    longer than another outranks it by one level, so low-priority work is never starved for ever (priority 0 waits
    at most 9 * QUEUE_AGING_SECONDS behind a steady stream of priority 9).
    """
    return int(enqueued_at.timestamp() * 1000) - priority * QUEUE_AGING_SECONDS * 1000


def queued_partition(agent_id: str) -> str:
    return f"{agent_id}#queued"


def leased_partition(agent_id: str) -> str:
    return f"{agent_id}#leased"


def queue_entry(agent_id: str, rank: int, session_id: str, index: int) -> dict[str, Any]:
    """The attributes that put a task in its agent's queue."""
    return {
        "agent_tasks": s(queued_partition(agent_id)),
        "agent_tasks_sk": s(f"{rank:015d}#{task_id(session_id, index)}"),
    }


class TaskQueue:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # ------------------------------------------------------------------ reads
    def queued(self, agent_id: str, limit: int, start_after: str | None = None) -> list[TaskRecord]:
        """The agent's queue in dispatch order (eventually consistent: a lease re-checks each task)."""
        return self._query(queued_partition(agent_id), limit, start_after)

    def leased(self, agent_id: str, limit: int, start_after: str | None = None) -> list[TaskRecord]:
        """The agent's leased tasks, the soonest to expire first."""
        return self._query(leased_partition(agent_id), limit, start_after)

    def _query(self, partition: str, limit: int, start_after: str | None) -> list[TaskRecord]:
        """Entries of the AgentTasks index, as task records with the index's projected fields."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": QUEUE_INDEX,
            "KeyConditionExpression": "agent_tasks = :partition",
            "ExpressionAttributeValues": {":partition": s(partition)},
            "Limit": limit,
        }
        if start_after is not None:
            query["KeyConditionExpression"] += " AND agent_tasks_sk > :after"
            query["ExpressionAttributeValues"][":after"] = s(start_after)
        with translated_errors():
            items = self._client.query(**query).get("Items", [])
        return [task_record(decode_item(item)) for item in items]

    def queued_priorities(self, agent_id: str) -> list[int]:
        """The priority of every queued task of the agent (all pages of the index, priorities only)."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": QUEUE_INDEX,
            "KeyConditionExpression": "agent_tasks = :partition",
            "ExpressionAttributeValues": {":partition": s(queued_partition(agent_id))},
            "ProjectionExpression": "priority",
        }
        with translated_errors():
            pages = self._client.get_paginator("query").paginate(**query)
            return [decode_item(item).get("priority", 0) for page in pages for item in page.get("Items", [])]

    def queued_count(self, agent_id: str) -> int:
        """How many tasks wait in the agent's queue (a COUNT Query of the index: every entry is still read)."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": QUEUE_INDEX,
            "KeyConditionExpression": "agent_tasks = :partition",
            "ExpressionAttributeValues": {":partition": s(queued_partition(agent_id))},
            "Select": "COUNT",
        }
        with translated_errors():
            pages = self._client.get_paginator("query").paginate(**query)
            return sum(page.get("Count", 0) for page in pages)

    def expired_leases(self, now: str, limit: int) -> list[TaskRecord]:
        """Leases that ended before `now`, the oldest first (one Query of the Deadlines index's projection)."""
        return self._past_deadlines(LEASE, now, limit)

    def expired_attempts(self, now: str, limit: int) -> list[TaskRecord]:
        """Queued attempts whose time in the runner ran out before `now`, the oldest first."""
        return self._past_deadlines(ATTEMPT, now, limit)

    def _past_deadlines(self, kind: str, now: str, limit: int) -> list[TaskRecord]:
        with translated_errors():
            items = self._client.query(
                TableName=self._table,
                IndexName=DEADLINES_INDEX,
                KeyConditionExpression="deadline_kind = :kind AND deadline_at < :now",
                ExpressionAttributeValues={":kind": s(kind), ":now": s(now)},
                Limit=limit,
            ).get("Items", [])
        return [task_record(decode_item(item)) for item in items]

    # ------------------------------------------------------------------ leases
    def lease(
        self,
        agent_id: str,
        task: TaskRef,
        now: str,
        expires_at: str,
        offline_after: int,
        *,
        probe: Probe | None = None,
    ) -> LeaseOutcome:
        """Hand a queued task to its agent, if the agent can take one more now.

        "taken": the task is no longer queued for this attempt (another pull leased it, or it ended);
        "agent_unavailable": the agent is paused, in error, offline or quarantined, or at its max_concurrency; for a
        `probe`, the agent is no longer half-open, or another probe is out.
        """
        leased = (
            "SET #status = :leased, leased_at = :now, lease_expires_at = :expires, updated_at = :now, "
            "agent_tasks = :partition, agent_tasks_sk = :position, "
            "deadline_kind = :lease, deadline_at = :position, agent_offline_after = :offline_after"
        )
        if probe is not None:  # the task knows its attempt is the probe (its end then decides the breaker)
            leased += ", probe_seq = :seq"
        items: list[TransactWriteItemTypeDef] = [
            {"Update": _agent_lease(self._table, agent_id, now, probe)},  # type: ignore[typeddict-item]
            {
                "Update": {
                    "TableName": self._table,
                    "Key": task_key(task.session_id, task.index),
                    "UpdateExpression": leased,
                    "ConditionExpression": (
                        # An attempt recorded without a queue entry (its input did not resolve) is never leased.
                        "#status = :queued AND attribute_exists(agent_tasks) AND dispatch_seq = :seq "
                        f"AND agent_id = :agent AND {IN_TIME}"
                    ),
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":leased": s("leased"),
                        ":queued": s("queued"),
                        ":now": s(now),
                        ":expires": s(expires_at),
                        ":partition": s(leased_partition(agent_id)),
                        ":position": s(f"{expires_at}#{task.task_id}"),
                        ":lease": s(LEASE),
                        ":seq": n(task.sequence),
                        ":agent": s(agent_id),
                        ":offline_after": n(offline_after),
                    },
                }
            },
        ]
        codes = run_transaction(self._client, items)
        if codes is None:
            return "leased"
        return "agent_unavailable" if codes[0] == "ConditionalCheckFailed" else "taken"

    def extend(self, task: TaskRef, now: str, expires_at: str) -> bool:
        """Move a live lease's expiry to `expires_at`; False when the task holds no live lease for this attempt."""
        return update_if(
            self._client,
            {
                "TableName": self._table,
                "Key": task_key(task.session_id, task.index),
                "UpdateExpression": (
                    "SET lease_expires_at = :expires, agent_tasks_sk = :position, deadline_at = :position, "
                    "updated_at = :now"
                ),
                # A result ends the lease (its attributes go), so a heartbeat after it finds none to extend.
                "ConditionExpression": (
                    f"#status = :leased AND dispatch_seq = :seq AND lease_expires_at > :now AND {IN_TIME}"
                ),
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":expires": s(expires_at),
                    ":position": s(f"{expires_at}#{task.task_id}"),
                    ":now": s(now),
                    ":leased": s("leased"),
                    ":seq": n(task.sequence),
                },
            },
        )

    def release(
        self,
        agent_id: str,
        task: TaskRef,
        *,
        ended: AttemptEnd | None,
        counted: CountedFailure | None,
        now: str,
        status: TaskStatus | None = None,
        expired_only: bool = False,
    ) -> bool:
        """End the attempt's lease and give the agent its slot back; False when it held no lease (nothing written).

        `ended` records how the attempt ended (a lease that ran out, an agent gone offline, a failed delivery, a
        timeout); without it only `status` is set (a cancel skips the task). `counted` is a failure counted against
        the agent, kept with its failures; `expired_only` spares a lease a heartbeat has just extended.
        """
        condition = "attribute_exists(#lease_expires_at) AND #dispatch_seq = :seq" + (
            " AND #lease_expires_at <= :now" if expired_only else ""
        )
        if ended is not None:
            update = outcome_update(task.session_id, ended.outcome, now)
        else:
            update = Update(task_key(task.session_id, task.index)).set("updated_at", now).remove(*LEASE_ATTRIBUTES)
            if status is not None:
                update.set("status", status)
        update.condition(condition, seq=task.sequence, now=now)
        items: list[TransactWriteItemTypeDef] = [
            {"Update": update.request(self._table)},  # type: ignore[typeddict-item]
            slot_release(self._table, agent_id, counted),
        ]
        if ended is not None:
            items += ended_writes(self._table, task.session_id, agent_id, ended, now)
        return run_transaction(self._client, items) is None

    def withdraw(self, agent_id: str, task: TaskRef, ended: AttemptEnd, now: str) -> bool:
        """Take a queued attempt off the queue as it ended (counted in the agent's tallies); False when it was no
        longer queued."""
        update = outcome_update(task.session_id, ended.outcome, now).condition(
            "#status = :queued AND #dispatch_seq = :seq", queued="queued", seq=task.sequence
        )
        items: list[TransactWriteItemTypeDef] = [{"Update": update.request(self._table)}]  # type: ignore[typeddict-item]
        items += ended_writes(self._table, task.session_id, agent_id, ended, now)
        return run_transaction(self._client, items) is None


def slot_release(table: str, agent_id: str, counted: CountedFailure | None) -> TransactWriteItemTypeDef:
    """The agent half of ending a lease: one slot back, and a failure counted against the agent kept with its
    failures (appended: concurrent ends each keep theirs; opscore.agents.store trims the list)."""
    update = "ADD in_flight :minus_one"
    values: dict[str, Any] = {":minus_one": n(-1)}
    if counted is not None:
        update += ", failures_seq :one SET failures = list_append(if_not_exists(failures, :none), :failure)"
        values |= {":one": n(1), ":none": {"L": []}, ":failure": {"L": [s(counted.entry)]}}
    return {
        "Update": {
            "TableName": table,
            "Key": agent_key(agent_id),
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
    }


class Probe(NamedTuple):
    """A half-open agent's probe lease: the attempt it names (probe_key), and when it counts as ended regardless."""

    key: str
    until: str


def _agent_lease(table: str, agent_id: str, now: str, probe: Probe | None) -> dict[str, Any]:
    """The agent half of a lease: one slot taken, if the agent may take it now (for a probe: half-open, none out)."""
    free = "attribute_exists(PK) AND (attribute_not_exists(in_flight) OR in_flight < max_concurrency)"
    if probe is None:
        states = TAKES_NO_WORK
        condition = f"{free} AND attribute_not_exists(quarantined)"
        update = "ADD in_flight :one"
        values: dict[str, Any] = {}
    else:
        states = PROBES_NOT
        condition = (
            f"{free} AND quarantined = :true AND probe_after <= :now "
            "AND (attribute_not_exists(probe) OR probe_until < :now) "
            # the quarantine's own error lets the probe through; an error the agent reported itself does not
            "AND (#state <> :own_error OR attribute_exists(state_by_opscore))"
        )
        update = "ADD in_flight :one SET probe = :probe, probe_until = :until"
        values = {
            ":true": {"BOOL": True},
            ":now": s(now),
            ":probe": s(probe.key),
            ":until": s(probe.until),
            ":own_error": s(AgentState.ERROR.value),
        }
    return {
        "TableName": table,
        "Key": agent_key(agent_id),
        "UpdateExpression": update,
        "ConditionExpression": (
            f"{condition} AND (attribute_not_exists(#state) OR NOT (#state IN ({_placeholders(states)})))"
        ),
        "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": {":one": n(1), **{f":{state}": s(state) for state in states}, **values},
    }


def _placeholders(states: frozenset[str]) -> str:
    return ", ".join(f":{state}" for state in sorted(states))
