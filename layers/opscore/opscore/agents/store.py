"""Agent registrations, current state and state history in the Ops-Core table.

Items (one partition per agent, so reading an agent and its history are single-partition requests):
- `PK=AGENT#<id> SK=AGENT`: the registration and the current state with its version (one item, so the dispatcher's
  later conditional writes can test state and capacity together);
- `PK=AGENT#<id> SK=STATE#<UTC timestamp>`: one history entry per accepted update, TTL'd by `expires_at`, written in
  the same transaction as the state. Accepted timestamps strictly increase, so the timestamp is a unique key and key
  order is version order.

The agent item also carries what dispatch needs: `in_flight` (tasks leased now, changed only together with a task's
lease), `failure_streak` and `quarantined`, and its silence deadline in the Deadlines index
(`deadline_kind=SILENCE`, `deadline_at=<when it counts as offline>#<id>`), which the sweep queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from opscore.agents.models import (
    Agent,
    AgentError,
    AgentState,
    CurrentState,
    QueueCounts,
    RegistrationRequest,
    StateHistoryEntry,
)
from opscore.aws.dynamodb import (
    ConditionFailed,
    Item,
    as_json,
    get_n,
    get_s,
    n,
    s,
    translated_errors,
    update_if,
)
from opscore.aws.pages import query_prefix_page
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Throttled

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

AGENT_SK = "AGENT"
HISTORY_PREFIX = "STATE#"
NULL_JSON = "null"
DEADLINES_INDEX = "Deadlines"
SILENCE = "SILENCE"


DEFAULT_OFFLINE_AFTER_SECONDS = 300
DEFAULT_QUARANTINE_AFTER = 3


def silence_deadline(agent_id: str, silent_at: str) -> str:
    return f"{silent_at}#{agent_id}"


def silent_from(now: datetime, offline_after_seconds: int | None) -> str:
    """When an agent heard from at `now` counts as silent: after its offline_after_seconds, rounded up to the minute.

    The sweep runs once a minute, so the rounding changes nothing it decides; but it keeps the deadline (an index
    key) the same for every contact within a minute, and an unchanged index key costs no index write.
    """
    due = now + timedelta(seconds=offline_after_seconds or DEFAULT_OFFLINE_AFTER_SECONDS)
    rounded = due.replace(second=0, microsecond=0)
    return format_timestamp(rounded if rounded == due else rounded + timedelta(minutes=1))


def agent_key(agent_id: str) -> Item:
    return {"PK": s(f"AGENT#{agent_id}"), "SK": s(AGENT_SK)}


@dataclass(frozen=True)
class StateWrite:
    """A state update as stored: everything normalised, payloads in canonical JSON."""

    state: AgentState
    timestamp: str
    details_json: str
    error_json: str
    recorded_at: str
    expires_at: int
    # When the agent counts as offline if it stays silent; None for a write that marks it offline.
    silent_at: str | None = None
    quarantine: Literal["keep", "set", "lift"] = "keep"
    # Only while the agent's silence deadline is before this (marking it offline): a contact meanwhile wins.
    silent_before: str | None = None

    def same_report_as(self, entry: StateHistoryEntry) -> bool:
        return (
            entry.state is self.state
            and entry.timestamp == self.timestamp
            and canonical_json(entry.details) == self.details_json
            and canonical_json(entry.error.model_dump() if entry.error else None) == self.error_json
        )


class AgentStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def upsert_registration(
        self, agent_id: str, request: RegistrationRequest, now: str, silent_at: str
    ) -> tuple[Item, bool]:
        """Create or replace the registration; the current state is left as it is. Returns (item, created)."""
        values: dict[str, Any] = {
            ":entity": s("agent"),
            ":agent_id": s(agent_id),
            ":name": s(request.name),
            ":capabilities": {"L": [s(capability) for capability in request.capabilities]},
            ":max_concurrency": n(request.max_concurrency),
            ":metadata": s(canonical_json(request.metadata)),
            ":now": s(now),
            ":zero": n(0),
            ":one": n(1),
            ":delivery": s(request.delivery),
            ":offline_after": n(request.offline_after_seconds),
            ":quarantine_after": n(request.quarantine_after),
            ":silence": s(SILENCE),
            ":deadline": s(silence_deadline(agent_id, silent_at)),
        }
        assignments = [
            "entity = :entity",
            "agent_id = :agent_id",
            "#name = :name",
            "capabilities = :capabilities",
            "max_concurrency = :max_concurrency",
            "metadata = :metadata",
            "updated_at = :now",
            "registered_at = if_not_exists(registered_at, :now)",
            "state_version = if_not_exists(state_version, :zero)",
            # Exactly one PUT sees generation 1, so "created" is exact even when two registrations race.
            "generation = if_not_exists(generation, :zero) + :one",
            "delivery = :delivery",
            "offline_after_seconds = :offline_after",
            "quarantine_after = :quarantine_after",
            "in_flight = if_not_exists(in_flight, :zero)",
            "failure_streak = if_not_exists(failure_streak, :zero)",
            # Registering is contact: the silence clock starts (again) here.
            "deadline_kind = :silence",
            "deadline_at = :deadline",
            "last_seen_at = :now",
        ]
        removals = []
        for attribute, value in (
            ("agent_version", request.version),
            ("endpoint", request.endpoint),
            ("webhook_secret", request.webhook_secret),
        ):
            if value is None:
                removals.append(attribute)
            else:
                assignments.append(f"{attribute} = :{attribute}")
                values[f":{attribute}"] = s(value)
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        with translated_errors():
            response = self._client.update_item(
                TableName=self._table,
                Key=agent_key(agent_id),
                UpdateExpression=expression,
                ExpressionAttributeNames={"#name": "name"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        item = response["Attributes"]
        return item, get_n(item, "generation") == 1

    def get_agent_item(self, agent_id: str) -> Item | None:
        with translated_errors():
            response = self._client.get_item(TableName=self._table, Key=agent_key(agent_id), ConsistentRead=True)
        return response.get("Item") or None

    def write_state(self, agent_id: str, expected_version: int, write: StateWrite, entry: StateHistoryEntry) -> None:
        """Apply a state update and its history entry atomically, if the agent is still at `expected_version`.

        One transaction: the agent item moves from `expected_version` to `entry.version` and the history entry is
        created, or neither happens (VersionConflict: someone else wrote first; read again and decide again).
        """
        history = self._history_item(agent_id, entry, write.expires_at)
        values: dict[str, Any] = {}
        assignments = ""
        removals = []
        if write.silent_at is not None:
            assignments += ", last_seen_at = :now, deadline_kind = :silence, deadline_at = :deadline"
            values.update({":silence": s(SILENCE), ":deadline": s(silence_deadline(agent_id, write.silent_at))})
        else:
            removals += ["deadline_kind", "deadline_at"]
        if write.silent_before is not None:
            values[":silent_before"] = s(write.silent_before)
        if write.quarantine == "set":
            assignments += ", quarantined = :true"
            values[":true"] = {"BOOL": True}
        elif write.quarantine == "lift":
            assignments += ", failure_streak = :zero"
            values[":zero"] = n(0)
            removals.append("quarantined")
        update = (
            "SET #state = :state, state_timestamp = :ts, state_details = :details, state_error = :error, "
            "state_version = :version, state_recorded_at = :now" + assignments
        )
        if removals:
            update += " REMOVE " + ", ".join(removals)
        with translated_errors():
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": agent_key(agent_id),
                            "UpdateExpression": update,
                            # An agent that never had a state may lack state_version (items written by other
                            # tools): version 0 then means "no version yet".
                            "ConditionExpression": (
                                "attribute_exists(PK) AND (state_version = :expected"
                                + (" OR attribute_not_exists(state_version))" if expected_version == 0 else ")")
                                + (" AND deadline_at < :silent_before" if write.silent_before is not None else "")
                            ),
                            "ExpressionAttributeNames": {"#state": "state"},
                            "ExpressionAttributeValues": {
                                ":state": s(write.state.value),
                                ":ts": s(write.timestamp),
                                ":details": s(write.details_json),
                                ":error": s(write.error_json),
                                ":version": n(entry.version),
                                ":expected": n(expected_version),
                                ":now": s(write.recorded_at),
                                **values,
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": history,
                            "ConditionExpression": "attribute_not_exists(SK)",
                        }
                    },
                ]
            )

    def delivery_of(self, agent_id: str) -> str | None:
        """The agent's delivery channel (one attribute read); None for an unknown agent."""
        with translated_errors():
            response = self._client.get_item(
                TableName=self._table, Key=agent_key(agent_id), ProjectionExpression="delivery"
            )
        item = response.get("Item")
        return None if item is None else get_s(item, "delivery") or "poll"

    def touch(self, agent_id: str, now: str, silent_at: str) -> None:
        """The agent was heard from (a heartbeat, a result, a pull): push its silence deadline back.

        An agent with no deadline (marked offline) keeps none: only a state report brings it back.
        """
        try:
            with translated_errors():
                self._client.update_item(
                    TableName=self._table,
                    Key=agent_key(agent_id),
                    UpdateExpression="SET last_seen_at = :now, deadline_at = :deadline",
                    ConditionExpression="attribute_exists(deadline_kind)",
                    ExpressionAttributeValues={
                        ":now": s(now),
                        ":deadline": s(silence_deadline(agent_id, silent_at)),
                    },
                )
        except (ConditionFailed, Throttled):
            pass  # best effort: the next contact moves the deadline; a busy agent item must not fail the request

    def clear_silence(self, agent_id: str, now: str) -> None:
        """Drop a passed silence deadline of an agent already offline (a re-registration set it again)."""
        update_if(
            self._client,
            {
                "TableName": self._table,
                "Key": agent_key(agent_id),
                "UpdateExpression": "REMOVE deadline_kind, deadline_at",
                "ConditionExpression": "deadline_at < :now",
                "ExpressionAttributeValues": {":now": s(now)},
            },
        )

    def silent_agents(self, now: str, limit: int) -> list[str]:
        """Agents whose silence deadline has passed, most overdue first (one Query of the Deadlines index)."""
        with translated_errors():
            items = self._client.query(
                TableName=self._table,
                IndexName=DEADLINES_INDEX,
                KeyConditionExpression="deadline_kind = :silence AND deadline_at < :now",
                ExpressionAttributeValues={":silence": s(SILENCE), ":now": s(now)},
                Limit=limit,
            ).get("Items", [])
        return [item["PK"]["S"].removeprefix("AGENT#") for item in items]

    def _history_item(self, agent_id: str, entry: StateHistoryEntry, expires_at: int) -> Item:
        item: Item = {
            "PK": s(f"AGENT#{agent_id}"),
            "SK": s(HISTORY_PREFIX + entry.timestamp),
            "entity": s("state"),
            "state": s(entry.state.value),
            "state_timestamp": s(entry.timestamp),
            "state_details": s(canonical_json(entry.details)),
            "state_error": s(canonical_json(entry.error.model_dump() if entry.error else None)),
            "state_version": n(entry.version),
            "recorded_at": s(entry.recorded_at),
            "expires_at": n(expires_at),
        }
        if entry.previous_state is not None:
            item["previous_state"] = s(entry.previous_state.value)
        return item

    def get_history_entry(self, agent_id: str, timestamp: str) -> StateHistoryEntry | None:
        with translated_errors():
            response = self._client.get_item(
                TableName=self._table,
                Key={"PK": s(f"AGENT#{agent_id}"), "SK": s(HISTORY_PREFIX + timestamp)},
                ConsistentRead=True,
            )
        item = response.get("Item")
        return history_from_item(item) if item else None

    def list_history(
        self, agent_id: str, limit: int, next_token: str | None
    ) -> tuple[list[StateHistoryEntry], str | None]:
        """One page, newest first; the token is returned only when at least one more entry follows."""
        page, token = query_prefix_page(
            self._client,
            self._table,
            partition=f"AGENT#{agent_id}",
            sort_prefix=HISTORY_PREFIX,
            limit=limit,
            next_token=next_token,
            newest_first=True,
        )
        return [history_from_item(item) for item in page], token


def _error_from_json(raw: str | None) -> AgentError | None:
    decoded = as_json(raw)
    return AgentError.model_validate(decoded) if decoded is not None else None


def current_state_from_item(item: Item) -> CurrentState | None:
    state = get_s(item, "state")
    if state is None:
        return None
    return CurrentState(
        state=AgentState(state),
        timestamp=get_s(item, "state_timestamp") or "",
        details=as_json(get_s(item, "state_details")),
        error=_error_from_json(get_s(item, "state_error")),
        version=get_n(item, "state_version") or 0,
    )


def agent_from_item(item: Item, queue: QueueCounts) -> Agent:
    return Agent(
        agent_id=get_s(item, "agent_id") or "",
        name=get_s(item, "name") or "",
        version=get_s(item, "agent_version"),
        capabilities=[value["S"] for value in item.get("capabilities", {}).get("L", []) if "S" in value],
        endpoint=get_s(item, "endpoint"),
        max_concurrency=get_n(item, "max_concurrency") or 1,
        metadata=as_json(get_s(item, "metadata")) or {},
        delivery=get_s(item, "delivery") or "poll",
        offline_after_seconds=get_n(item, "offline_after_seconds") or DEFAULT_OFFLINE_AFTER_SECONDS,
        quarantine_after=get_n(item, "quarantine_after") or DEFAULT_QUARANTINE_AFTER,
        failure_streak=get_n(item, "failure_streak") or 0,
        quarantined=bool(item.get("quarantined", {}).get("BOOL")),
        registered_at=get_s(item, "registered_at") or "",
        updated_at=get_s(item, "updated_at") or "",
        last_seen_at=get_s(item, "last_seen_at"),
        current_state=current_state_from_item(item),
        queue=queue,
    )


def history_from_item(item: Item) -> StateHistoryEntry:
    previous = get_s(item, "previous_state")
    return StateHistoryEntry(
        state=AgentState(get_s(item, "state") or ""),
        previous_state=AgentState(previous) if previous else None,
        timestamp=get_s(item, "state_timestamp") or "",
        details=as_json(get_s(item, "state_details")),
        error=_error_from_json(get_s(item, "state_error")),
        version=get_n(item, "state_version") or 0,
        recorded_at=get_s(item, "recorded_at") or "",
    )
