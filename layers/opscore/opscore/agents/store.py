"""Agent registrations, current state and state history in the Ops-Core table.

Items (one partition per agent, so reading an agent and its history are single-partition requests):
- `PK=AGENT#<id> SK=AGENT`: the registration and the current state with its version (one item, so the dispatcher's
  later conditional writes can test state and capacity together);
- `PK=AGENT#<id> SK=STATE#<UTC timestamp>`: one history entry per accepted update, TTL'd by `expires_at`, written in
  the same transaction as the state. Accepted timestamps strictly increase, so the timestamp is a unique key and key
  order is version order;
- `PK=AGENT#<id> SK=TALLY#...`: the agent's ended attempts by the minute and the hour (see opscore.agents.tallies).

Both the agent item and each history entry keep `state_totals`: the microseconds spent in each state up to that
state's timestamp (the previous totals plus the time in the previous state), so the time in each state over any window
is a difference of two totals (see opscore.agents.stats.totals_at). Items written before the totals were kept have none.

The agent item also carries what dispatch needs: `in_flight` (tasks leased now, changed only together with a task's
lease); its circuit breaker: `failures` (its recent counted failures, `<timestamp> <error type>`, appended with the
lease's end and trimmed here under the `failures_seq` guard), and while it is open `quarantined`,
`quarantined_since`, `quarantine_reason`, `quarantine_failures`, `quarantine_last_error`, `probe_after`, and the
probe (`probe`, `probe_until`) a half-open agent holds; and its silence deadline in the Deadlines index
(`deadline_kind=SILENCE`, `deadline_at=<when it counts as offline>#<id>`), which the sweep queries.

Every agent is also in the Agents index (`agents_shard=AGENTS#<0..3>`, `agents_sk=<state>#<id>`, `-` for no state
yet), which GET /agents pages through. Both are written with every registration and every state write, so an item
written before the index existed appears there once it next registers or changes state. The sort key changes only
with the state, so heartbeats and leases never write the index.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from opscore.agents.models import AgentState, CurrentState, RegistrationRequest, StateHistoryEntry
from opscore.agents.records import (
    DEFAULT_QUARANTINE_WINDOW_SECONDS,
    AgentRecord,
    CountedFailure,
    QuarantineRecord,
    agent_error,
)
from opscore.aws.dynamodb import ConditionFailed, translated_errors, update_if
from opscore.aws.items import Attributes, Item, decode_item, n, s
from opscore.aws.pages import decode_page_token, encode_page_token, query_prefix_page
from opscore.aws.updates import Update
from opscore.core.contracts import canonical_json, parse_json
from opscore.core.errors import Throttled
from opscore.core.retry import Backoff, attempts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

AGENT_SK = "AGENT"
HISTORY_PREFIX = "STATE#"
DEADLINES_INDEX = "Deadlines"
SILENCE = "SILENCE"
AGENTS_INDEX = "Agents"
# The Agents index's partitions: each takes about 1,000 index writes a second, and a state change is two (the old
# key goes, the new one comes), so four shards carry some 2,000 state changes a second across the fleet. A listing
# reads them all and merges (one small Query each).
AGENT_SHARDS = 4
NO_STATE = "-"
# An id's characters all sort after a space and before '~' (see AGENT_ID_PATTERN): the bounds of a key range.
AFTER_ID, PAST_ID = " ", "~"


def agents_shard(agent_id: str) -> str:
    return f"AGENTS#{zlib.crc32(agent_id.encode()) % AGENT_SHARDS}"


def agents_sort_key(agent_id: str, state: str | None) -> str:
    return f"{state or NO_STATE}#{agent_id}"


BATCH_ATTEMPTS = 4
BATCH_BACKOFF = Backoff(0.05, 0.4)


def silence_deadline(agent_id: str, silent_at: str) -> str:
    return f"{silent_at}#{agent_id}"


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
    # An opening (or re-opening) of the agent's breaker, its lift, or neither.
    quarantine: QuarantineRecord | Literal["keep", "lift"] = "keep"
    # Only while the agent's silence deadline is before this (marking it offline): a contact meanwhile wins.
    silent_before: str | None = None
    by_opscore: bool = False  # Ops-Core's own change, not the agent's report (see AgentRecord.state_by_opscore)
    # Microseconds spent in each state up to this state's timestamp: kept on the agent item and the history entry.
    state_totals: dict[str, int] | None = None

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

    def upsert_registration(self, agent_id: str, request: RegistrationRequest, now: str, silent_at: str) -> AgentRecord:
        """Create or replace the registration; the current state is left as it is (`created` says which)."""
        update = (
            Update(agent_key(agent_id))
            .set("entity", "agent")
            .set("agent_id", agent_id)
            .set("name", request.name)
            .set("capabilities", list(request.capabilities))
            .set("max_concurrency", request.max_concurrency)
            .set("metadata", canonical_json(request.metadata))
            .set("updated_at", now)
            .set_if_absent("registered_at", now)
            .set_if_absent("state_version", 0)
            # Exactly one PUT sees generation 1, so "created" is exact even when two registrations race.
            .increment("generation")
            .set("delivery", request.delivery)
            .set("offline_after_seconds", request.offline_after_seconds)
            .set("quarantine_after", request.quarantine_after)
            .set("quarantine_window_seconds", request.quarantine_window_seconds)
            .set("quarantine_cooldown_seconds", request.quarantine_cooldown_seconds)
            .set_if_absent("in_flight", 0)
            # Registering is contact: the silence clock starts (again) here.
            .set("deadline_kind", SILENCE)
            .set("deadline_at", silence_deadline(agent_id, silent_at))
            .set("last_seen_at", now)
            .set("agents_shard", agents_shard(agent_id))
            .set_if_absent("agents_sk", agents_sort_key(agent_id, None))
        )
        for attribute, value in (
            ("agent_version", request.version),
            ("endpoint", request.endpoint),
            ("webhook_secret", request.webhook_secret),
        ):
            if value is None:
                update.remove(attribute)
            else:
                update.set(attribute, value)
        with translated_errors():
            response = self._client.update_item(**update.request(self._table), ReturnValues="ALL_NEW")
        attributes = decode_item(response["Attributes"])
        record = _agent_record(attributes, created=attributes.get("generation") == 1)
        if record.state is not None and attributes.get("agents_sk") != agents_sort_key(agent_id, record.state):
            self._index_state(agent_id, record.state)
        return record

    def _index_state(self, agent_id: str, state: str) -> None:
        """An item that had a state before the Agents index existed: its sort key, while that is still its state."""
        update_if(
            self._client,
            Update(agent_key(agent_id))
            .set("agents_sk", agents_sort_key(agent_id, state))
            .condition("#state = :state", state=state)
            .request(self._table),
        )

    def list_page(self, state: str | None, limit: int, next_token: str | None) -> tuple[list[AgentRecord], str | None]:
        """A page of agents in (state, id) order, optionally of one state: a Query of each Agents shard (keys only),
        merged, then the page's agent items in one BatchGetItem. The token is the last sort key shown."""
        prefix = f"{state}#" if state is not None else ""
        low, high = prefix or AFTER_ID, prefix + PAST_ID
        if next_token is not None:
            after = decode_page_token(
                next_token, lambda key: set(key) == {"agents_sk"} and key["agents_sk"].startswith(prefix)
            )["agents_sk"]
            low = max(low, after + AFTER_ID)
        keys: list[str] = []
        for shard in range(AGENT_SHARDS):
            with translated_errors():
                items = self._client.query(
                    TableName=self._table,
                    IndexName=AGENTS_INDEX,
                    KeyConditionExpression="agents_shard = :shard AND agents_sk BETWEEN :low AND :high",
                    ExpressionAttributeValues={":shard": s(f"AGENTS#{shard}"), ":low": s(low), ":high": s(high)},
                    Limit=limit + 1,
                ).get("Items", [])
            keys += [decode_item(item)["agents_sk"] for item in items]
        keys.sort()
        page = keys[:limit]
        records = self._get_many([key.partition("#")[2] for key in page])
        token = encode_page_token({"agents_sk": page[-1]}) if len(keys) > limit else None
        return records, token

    def _get_many(self, agent_ids: list[str]) -> list[AgentRecord]:
        """The agents' items, in the order asked (at most 100: one BatchGetItem, its unprocessed keys asked again)."""
        found: dict[str, AgentRecord] = {}
        wanted = [agent_key(agent_id) for agent_id in agent_ids]
        for _ in attempts(BATCH_ATTEMPTS, BATCH_BACKOFF):
            if not wanted:
                break
            with translated_errors():
                response = self._client.batch_get_item(RequestItems={self._table: {"Keys": wanted}})
            for item in response.get("Responses", {}).get(self._table, []):
                record = _agent_record(decode_item(item))
                found[record.agent_id] = record
            unprocessed = response.get("UnprocessedKeys") or {}
            wanted = list(unprocessed[self._table]["Keys"]) if self._table in unprocessed else []
        if wanted:
            raise Throttled("the agents could not all be read now; try again")
        return [found[agent_id] for agent_id in agent_ids if agent_id in found]

    def get(self, agent_id: str) -> AgentRecord | None:
        with translated_errors():
            response = self._client.get_item(TableName=self._table, Key=agent_key(agent_id), ConsistentRead=True)
        item = response.get("Item")
        return _agent_record(decode_item(item)) if item else None

    def write_state(self, agent_id: str, expected_version: int, write: StateWrite, entry: StateHistoryEntry) -> None:
        """Apply a state update and its history entry atomically, if the agent is still at `expected_version`.

        One transaction: the agent item moves from `expected_version` to `entry.version` and the history entry is
        created, or neither happens (ConditionFailed: someone else wrote first; read again and decide again).
        """
        update = (
            Update(agent_key(agent_id))
            .set("state", write.state.value)
            .set("state_timestamp", write.timestamp)
            .set("state_details", write.details_json)
            .set("state_error", write.error_json)
            .set("state_version", entry.version)
            .set("state_recorded_at", write.recorded_at)
            .set("agents_shard", agents_shard(agent_id))
            .set("agents_sk", agents_sort_key(agent_id, write.state.value))
        )
        if write.state_totals is not None:
            update.set("state_totals", write.state_totals)
        if write.silent_at is not None:
            update.set("last_seen_at", write.recorded_at).set("deadline_kind", SILENCE)
            update.set("deadline_at", silence_deadline(agent_id, write.silent_at))
        else:
            update.remove("deadline_kind", "deadline_at")
        if write.by_opscore:
            update.set("state_by_opscore", True)
        else:
            update.remove("state_by_opscore")
        if isinstance(write.quarantine, QuarantineRecord):
            _open_breaker(update, write.quarantine)
        elif write.quarantine == "lift":
            # The window goes with the quarantine; failures_seq moves, so a trim read before this cannot undo it.
            update.remove(*QUARANTINE_ATTRIBUTES, "failures", "failure_streak").increment("failures_seq")
        # An agent that never had a state may lack state_version (items written by other tools): version 0 then
        # means "no version yet".
        condition = "attribute_exists(#PK) AND (#state_version = :expected" + (
            " OR attribute_not_exists(#state_version))" if expected_version == 0 else ")"
        )
        values: dict[str, Any] = {"expected": expected_version}
        if write.silent_before is not None:
            condition += " AND #deadline_at < :silent_before"
            values["silent_before"] = write.silent_before
        update.condition(condition, **values)
        with translated_errors():
            self._client.transact_write_items(
                TransactItems=[
                    {"Update": update.request(self._table)},  # type: ignore[typeddict-item]
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._history_item(agent_id, entry, write),
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
        return None if item is None else decode_item(item).get("delivery") or "poll"

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

    def trim_failures(self, agent_id: str, seq: int, kept: tuple[CountedFailure, ...]) -> bool:
        """Keep only `kept` of the agent's counted failures, if none was counted since they were read (`seq`)."""
        update = Update(agent_key(agent_id)).increment("failures_seq").remove("failure_streak")
        if kept:
            update.set("failures", [failure.entry for failure in kept])
        else:
            update.remove("failures")
        update.condition("#failures_seq = :seq", seq=seq)
        return update_if(self._client, update.request(self._table))

    def free_probe(self, agent_id: str, probe: str) -> bool:
        """The probe ended without deciding (a cancel, the agent offline): a half-open agent may lease another."""
        return update_if(
            self._client,
            {
                "TableName": self._table,
                "Key": agent_key(agent_id),
                "UpdateExpression": "REMOVE probe, probe_until",
                "ConditionExpression": "probe = :probe",
                "ExpressionAttributeValues": {":probe": s(probe)},
            },
        )

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
        return [_agent_id(decode_item(item)) for item in items]

    def _history_item(self, agent_id: str, entry: StateHistoryEntry, write: StateWrite) -> Item:
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
            "expires_at": n(write.expires_at),
        }
        if entry.previous_state is not None:
            item["previous_state"] = s(entry.previous_state.value)
        if write.state_totals is not None:
            item["state_totals"] = {"M": {state: n(total) for state, total in write.state_totals.items()}}
        return item

    def first_change_after(self, agent_id: str, timestamp: str) -> ChangeTotals | None:
        """The agent's first state change after `timestamp` with the totals it kept (one Query, Limit 1: the next key
        after STATE#<timestamp>, which is a tally or nothing once the history has no later entry)."""
        with translated_errors():
            items = self._client.query(
                TableName=self._table,
                KeyConditionExpression="PK = :pk AND SK > :after",
                ExpressionAttributeValues={
                    ":pk": s(f"AGENT#{agent_id}"),
                    ":after": s(HISTORY_PREFIX + timestamp),
                },
                ProjectionExpression="SK, state_timestamp, previous_state, state_totals",
                Limit=1,
            ).get("Items", [])
        found = decode_item(items[0]) if items else None
        if found is None or not str(found["SK"]).startswith(HISTORY_PREFIX):
            return None
        previous = found.get("previous_state")
        return ChangeTotals(
            timestamp=found.get("state_timestamp", ""),
            previous_state=AgentState(previous) if previous else None,
            totals=found.get("state_totals"),
        )

    def get_history_entry(self, agent_id: str, timestamp: str) -> StateHistoryEntry | None:
        with translated_errors():
            response = self._client.get_item(
                TableName=self._table,
                Key={"PK": s(f"AGENT#{agent_id}"), "SK": s(HISTORY_PREFIX + timestamp)},
                ConsistentRead=True,
            )
        item = response.get("Item")
        return _history_entry(decode_item(item)) if item else None

    def list_history(
        self, agent_id: str, limit: int, next_token: str | None, window: tuple[str, str] | None = None
    ) -> tuple[list[StateHistoryEntry], str | None]:
        """One page, newest first (within `window`: the first and last timestamps taken, as stored); the token is
        returned only when at least one more entry follows."""
        page, token = query_prefix_page(
            self._client,
            self._table,
            partition=f"AGENT#{agent_id}",
            sort_prefix=HISTORY_PREFIX,
            limit=limit,
            next_token=next_token,
            newest_first=True,
            between=window,
        )
        return [_history_entry(decode_item(item)) for item in page], token


class ChangeTotals(NamedTuple):
    """A state change's timestamp, the state it ended, and the totals kept up to it (None: written before them)."""

    timestamp: str
    previous_state: AgentState | None
    totals: dict[str, int] | None


def _current_state(attributes: Attributes) -> CurrentState | None:
    state = attributes.get("state")
    if state is None:
        return None
    return CurrentState(
        state=AgentState(state),
        timestamp=attributes.get("state_timestamp", ""),
        details=parse_json(attributes.get("state_details")),
        error=agent_error(parse_json(attributes.get("state_error"))),
        version=attributes.get("state_version", 0),
    )


# What an open breaker keeps on the agent item; a lift removes them all, and the failures with them.
QUARANTINE_ATTRIBUTES = (
    "quarantined",
    "quarantined_since",
    "quarantine_reason",
    "quarantine_failures",
    "quarantine_last_error",
    "quarantine_window",
    "probe_after",
    "probe",
    "probe_until",
)


# Attributes copied as they are; an item written before one of them existed takes the record's default.
_PLAIN_FIELDS = (
    "agent_version",
    "endpoint",
    "webhook_secret",
    "max_concurrency",
    "delivery",
    "offline_after_seconds",
    "quarantine_after",
    "registered_at",
    "updated_at",
    "last_seen_at",
    "quarantine_window_seconds",
    "quarantine_cooldown_seconds",
    "in_flight",
    "failures_seq",
    "probe",
    "probe_until",
    "state_by_opscore",
)


def _agent_id(attributes: Attributes) -> str:
    """The id the item is keyed by (its agent_id attribute says the same, unless a tool wrote the item by hand)."""
    return str(attributes["PK"]).removeprefix("AGENT#")


def _agent_record(attributes: Attributes, created: bool = False) -> AgentRecord:
    deadline = attributes.get("deadline_at") if attributes.get("deadline_kind") == SILENCE else None
    return AgentRecord(
        agent_id=_agent_id(attributes),
        name=attributes.get("name", ""),
        capabilities=tuple(attributes.get("capabilities", ())),
        metadata=parse_json(attributes.get("metadata")) or {},
        current=_current_state(attributes),
        failures=tuple(CountedFailure.of(entry) for entry in attributes.get("failures", ())),
        quarantine=_quarantine(attributes),
        silent_at=deadline.split("#", 1)[0] if deadline else None,
        state_totals=attributes.get("state_totals"),
        created=created,
        # Missing, or zero where Ops-Core never writes zero: the record's default, as when the item was read by hand.
        **{name: attributes[name] for name in _PLAIN_FIELDS if attributes.get(name)},
    )


def _open_breaker(update: Update, quarantine: QuarantineRecord) -> None:
    """The breaker opens (or opens again): since when and why, and no probe out."""
    update.set("quarantined", True).set("quarantined_since", quarantine.since)
    update.set("quarantine_reason", quarantine.reason).set("quarantine_failures", quarantine.failures)
    update.set("quarantine_last_error", quarantine.last_error).set("probe_after", quarantine.probe_after)
    update.set("quarantine_window", quarantine.window_seconds).remove("probe", "probe_until")


def _quarantine(attributes: Attributes) -> QuarantineRecord | None:
    """The open breaker; an item quarantined before the breaker had a window reads as opened when last updated."""
    if not attributes.get("quarantined"):
        return None
    since = attributes.get("quarantined_since") or attributes.get("state_recorded_at") or ""
    return QuarantineRecord(
        since=since,
        reason="probe_failed" if attributes.get("quarantine_reason") == "probe_failed" else "failures",
        failures=attributes.get("quarantine_failures", 0),
        last_error=attributes.get("quarantine_last_error", ""),
        probe_after=attributes.get("probe_after") or since,
        window_seconds=attributes.get("quarantine_window")
        or attributes.get("quarantine_window_seconds")
        or DEFAULT_QUARANTINE_WINDOW_SECONDS,
    )


def _history_entry(attributes: Attributes) -> StateHistoryEntry:
    previous = attributes.get("previous_state")
    return StateHistoryEntry(
        state=AgentState(attributes.get("state", "")),
        previous_state=AgentState(previous) if previous else None,
        timestamp=attributes.get("state_timestamp", ""),
        details=parse_json(attributes.get("state_details")),
        error=agent_error(parse_json(attributes.get("state_error"))),
        version=attributes.get("state_version", 0),
        recorded_at=attributes.get("recorded_at", ""),
    )
