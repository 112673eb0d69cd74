"""Sessions and their tasks in the Ops-Core table.

Items:
- `PK=SESSION#<id> SK=SESSION`: the session (agent, workflow version, status, trigger input, the template's task list).
  `session_agent`/`session_id` key the AgentSessions index, so an agent's sessions, newest first, are one Query.
- `PK=SESSION#<id> SK=TASK#<3-digit index>`: one task of the template, written when it is first queued (or marked
  `scheduled`): status, attempts, timings, the agent's last result and the runner's task token (never returned by the
  API), the run it belongs to (`run`: its state and when the state was entered), the attempt's number in that run
  (`run_attempt`), the run's route (`route`, see opscore.sessions.plan.TaskRoute) and when the runner's timeout for
  the attempt runs out (`attempt_deadline`). `dispatch_seq` counts the task's dispatches: every write about an
  attempt is guarded by it. While an attempt is queued or leased the item is also in its agent's queue (see
  opscore.dispatch.queue).

The runner's dispatch and an agent's result are guarded by the session's status, so neither moves a cancelled session;
an attempt Ops-Core ends itself (opscore.dispatch.queue: an expired lease, an agent gone offline, a quarantine, a
timeout) is guarded by the attempt (`dispatch_seq`), and a cancel closes what it finds open first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from opscore.aws.dynamodb import ConditionFailed, run_transaction, translated_errors, update_if
from opscore.aws.items import Item, decode_item, n, s
from opscore.aws.pages import decode_page_token, encode_page_token
from opscore.dispatch.queue import queue_entry, slot_release
from opscore.sessions.items import (
    SESSION_SK,
    TASK_PREFIX,
    ended_writes,
    mark_request,
    outcome_update,
    session_end_request,
    session_key,
    session_record,
    task_key,
    task_record,
)
from opscore.sessions.models import SESSION_ID_PATTERN, TaskStatus, task_id
from opscore.sessions.records import SessionRecord, TaskRecord
from opscore.sessions.writes import Dispatch, NewSession, SavedResult, SessionEnd, TaskMark

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef, UpdateTypeDef

    from opscore.sessions.attempts import AttemptEnd

AGENT_SESSIONS_INDEX = "AgentSessions"
# Queries one page of a filtered session listing may take before it answers with what it found.
FILTERED_QUERIES = 10
# A session id's creation time: 13 hex digits of microseconds, then 19 random ones.
ID_TIME_DIGITS = 13
ID_RANDOM_DIGITS = 19


class SessionFilter(NamedTuple):
    """Which of an agent's sessions a listing shows: each field that is set must match."""

    status: str | None = None
    workflow_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


NO_FILTER = SessionFilter()
# A queued attempt's entry in the Deadlines index: when the runner's timeout for it runs out (the sweep records it).
ATTEMPT_DEADLINE = "ATTEMPT"
SESSION_ID = re.compile(SESSION_ID_PATTERN)


@dataclass
class _Transaction:
    items: list[TransactWriteItemTypeDef] = field(default_factory=list)


class SessionStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # ------------------------------------------------------------------ reads
    def get_session(self, session_id: str) -> SessionRecord | None:
        with translated_errors():
            response = self._client.get_item(TableName=self._table, Key=session_key(session_id), ConsistentRead=True)
        item = response.get("Item")
        return session_record(decode_item(item)) if item else None

    def get_task(self, session_id: str, index: int) -> TaskRecord | None:
        with translated_errors():
            response = self._client.get_item(
                TableName=self._table, Key=task_key(session_id, index), ConsistentRead=True
            )
        item = response.get("Item")
        return task_record(decode_item(item)) if item else None

    def session_with_tasks(self, session_id: str) -> tuple[SessionRecord | None, list[TaskRecord]]:
        """The session and its tasks, in one Query of the session's partition."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": s(f"SESSION#{session_id}")},
            "ConsistentRead": True,
        }
        with translated_errors():
            pages = self._client.get_paginator("query").paginate(**query)
            items = [decode_item(item) for page in pages for item in page.get("Items", [])]
        session = next((session_record(item) for item in items if item["SK"] == SESSION_SK), None)
        return session, [task_record(item) for item in items if item["SK"].startswith(TASK_PREFIX)]

    def sessions_of(
        self, agent_id: str, limit: int, next_token: str | None, only: SessionFilter = NO_FILTER
    ) -> tuple[list[SessionRecord], str | None]:
        """One page of an agent's sessions, newest first (the AgentSessions index's projection of each).

        A time window is a range of session ids (they begin with their creation time); a status or a workflow is a
        filter, so a page may take several Queries (at most FILTERED_QUERIES; then the token resumes after the last
        session looked at, and the page may be short).
        """
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": AGENT_SESSIONS_INDEX,
            "KeyConditionExpression": "session_agent = :agent",
            "ExpressionAttributeValues": {":agent": s(agent_id)},
            "ScanIndexForward": False,
            "Limit": limit + 1,  # one more than asked tells "a full page" from "more follow"
        }
        _filtered(query, only)
        if next_token is not None:
            after = _session_after(next_token)
            query["ExclusiveStartKey"] = {**session_key(after), "session_agent": s(agent_id), "session_id": s(after)}
        found: list[Item] = []
        last: str | None = None
        for _ in range(FILTERED_QUERIES):
            with translated_errors():
                answer = self._client.query(**query)
            found += [decode_item(item) for item in answer.get("Items", [])]
            examined = answer.get("LastEvaluatedKey")
            last = decode_item(examined)["session_id"] if examined else None
            if len(found) > limit or last is None:
                break
            query["ExclusiveStartKey"] = examined
        page = [session_record(item) for item in found[:limit]]
        if len(found) > limit:
            return page, encode_page_token({"session_id": page[-1].session_id})
        return page, encode_page_token({"session_id": last}) if last is not None else None

    # ------------------------------------------------------------------ the trigger
    def create_session(self, new: NewSession, mark: TaskMark | None = None) -> None:
        """Store the session as waiting (with its first task's mark, when that task waits out a delay first)."""
        item: Item = {
            **session_key(new.session_id),
            "entity": s("session"),
            "session_id": s(new.session_id),
            "session_agent": s(new.agent_id),
            "agent_id": s(new.agent_id),
            "workflow_id": s(new.workflow_id),
            "version": n(new.version),
            "status": s("waiting"),
            "input": s(new.input_json),
            "tasks": s(new.tasks_json),
            "created_at": s(new.created_at),
            "updated_at": s(new.created_at),
            "execution_arn": s(new.execution_arn),
            "triggered_by": s(new.triggered_by),
        }
        if new.priority is not None:
            item["priority"] = n(new.priority)
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        if mark is None:
            with translated_errors():
                self._client.put_item(**put)
            return
        first_mark: dict[str, Any] = {"Update": mark_request(self._table, new.session_id, mark, new.created_at)}
        transaction = _Transaction(
            [cast("TransactWriteItemTypeDef", {"Put": put}), cast("TransactWriteItemTypeDef", first_mark)]
        )
        if self._run(transaction) is not None:
            raise ConditionFailed

    def end_open(self, session_id: str, end: SessionEnd) -> bool:
        """End a session that has not ended yet (its runner did not start, or failed); False if it had ended."""
        return self._update_if(
            session_end_request(
                self._table,
                session_id,
                end,
                "#status IN (:waiting, :processing)",
                waiting="waiting",
                processing="processing",
            )
        )

    def mark_started(self, session_id: str, now: str) -> bool:
        """waiting -> processing once its runner has started; False when its first dispatch (or a cancel) came first."""
        return self._update_if(self._start_request(session_id, now, "#status = :waiting"))

    # ------------------------------------------------------------------ the runner's dispatch
    def dispatch(self, session_id: str, dispatch: Dispatch) -> str:
        """Queue a new attempt on its agent, with the runner's task token.

        Returns "queued", or "session_ended" (cancelled meanwhile: nothing was written). ConditionFailed when the
        task moved since it was read (its attempt is no longer `dispatch.previous_sequence`).
        """
        transaction = _Transaction()
        if dispatch.begins:
            self._begin(transaction, session_id, dispatch.now)
        else:
            self._require_processing(transaction, session_id)
        names = {"#status": "status", "#index": "index", "#id": "id", "#input": "input", "#output": "output"}
        names["#error"] = "error"
        values: dict[str, Any] = {
            ":queued": s("queued"),
            ":token": s(dispatch.token),
            ":seq": n(dispatch.sequence),
            ":now": s(dispatch.now),
            ":agent": s(dispatch.agent_id),
            ":session": s(session_id),
            ":index": n(dispatch.index),
            ":id": s(dispatch.template_id),
            ":action": s(dispatch.action),
            ":input": s(dispatch.input_json),
            ":priority": n(dispatch.priority),
            ":entity": s("task"),
            ":one": n(1),
            ":no_history": {"M": {}},
            ":session_input": s(dispatch.session_input_json),
            ":lease_seconds": n(dispatch.lease_seconds),
            ":as_fallback": {"BOOL": dispatch.fallback_for is not None},
            ":run": s(dispatch.run),
            ":run_attempt": n(dispatch.run_attempt),
            ":route": s(dispatch.route_json),
            ":deadline": s(dispatch.attempt_deadline),
            ":attempt_kind": s(ATTEMPT_DEADLINE),
            ":attempt_position": s(f"{dispatch.attempt_deadline}#{task_id(session_id, dispatch.index)}"),
        }
        queue_set, queue_remove = "agent_tasks = :agent_tasks, agent_tasks_sk = :agent_tasks_sk, ", "#error, "
        if dispatch.refusal_json is None:
            entry = queue_entry(dispatch.agent_id, dispatch.queue_rank, session_id, dispatch.index)
            values.update({f":{name}": value for name, value in entry.items()})
        else:  # an attempt out of every agent's reach, with the error it is about to end with (see TaskRecord.refused)
            queue_set, queue_remove = "#error = :refusal, ", "agent_tasks, agent_tasks_sk, "
            values[":refusal"] = s(dispatch.refusal_json)
        add = "ADD attempts :one"
        if dispatch.fallback_for is not None:
            values[":fallback_for"] = {"SS": [dispatch.fallback_for]}
            add += ", fallback_for :fallback_for"
        if dispatch.fallback_cause_json is not None:
            queue_set += "fallback_cause = :fallback_cause, "
            values[":fallback_cause"] = s(dispatch.fallback_cause_json)
        if dispatch.previous_sequence:
            condition = "dispatch_seq = :previous"
            values[":previous"] = n(dispatch.previous_sequence)
        else:
            condition = "attribute_not_exists(dispatch_seq)"
        transaction.items.append(
            {
                "Update": {
                    "TableName": self._table,
                    "Key": task_key(session_id, dispatch.index),
                    "UpdateExpression": (
                        "SET #status = :queued, task_token = :token, dispatch_seq = :seq, enqueued_at = :now, "
                        "session_input = :session_input, lease_seconds = :lease_seconds, "
                        "queued_as_fallback = :as_fallback, run = :run, run_attempt = :run_attempt, "
                        "route = :route, attempt_deadline = :deadline, "
                        "deadline_kind = :attempt_kind, deadline_at = :attempt_position, "
                        f"{queue_set}"
                        "attempt_started_at = :now, started_at = if_not_exists(started_at, :now), updated_at = :now, "
                        "agent_id = :agent, session_id = :session, #index = :index, #id = :id, #action = :action, "
                        "#input = :input, priority = :priority, entity = :entity, "
                        "history = if_not_exists(history, :no_history) "
                        f"REMOVE {queue_remove}scheduled_for, leased_at, ended_at, duration_ms, #output {add}"
                    ),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {**names, "#action": "action"},
                    "ExpressionAttributeValues": values,
                }
            }
        )
        codes = self._run(transaction)
        if codes is None:
            return "queued"
        if codes[0] == "ConditionalCheckFailed":
            return "session_ended"
        raise ConditionFailed

    def replace_token(self, session_id: str, index: int, sequence: int, token: str) -> bool:
        """A repeated dispatch of the same attempt carries a new token: it is the one the runner waits on now."""
        return self._update_if(
            {
                "TableName": self._table,
                "Key": task_key(session_id, index),
                "UpdateExpression": "SET task_token = :token",
                "ConditionExpression": "dispatch_seq = :seq",
                "ExpressionAttributeValues": {":token": s(token), ":seq": n(sequence)},
            }
        )

    # ------------------------------------------------------------------ agents' results
    def save_result(self, result: SavedResult, ended: AttemptEnd) -> bool:
        """Record the agent's result for its leased attempt, and the attempt's end, and end the lease: one write.

        The lease ends with the result, so the agent's slot is free at once (and its failure streak moves), and the
        attempt is counted in the agent's tallies (opscore.agents.tallies); the session completes in the same write
        when this was its last task. False when the session is no longer
        processing (nothing written); ConditionFailed when the attempt holds no lease any more (it ended, or has a
        result) or its time in the runner has run out.
        """
        transaction = _Transaction()
        if ended.end is not None:
            self._end_session(transaction, result.session_id, ended.end, guard="processing")
        else:
            self._require_processing(transaction, result.session_id)
        update = (
            outcome_update(result.session_id, ended.outcome, result.now)
            .set("result", result.result_json)
            .set("result_seq", result.sequence)
            .set("result_attempt", result.attempt)
            .condition(
                "#status = :leased AND #dispatch_seq = :seq AND attribute_exists(#lease_expires_at) "
                "AND (attribute_not_exists(#attempt_deadline) OR #attempt_deadline > :now)",
                leased="leased",
                seq=result.sequence,
                now=result.now,
            )
        )
        transaction.items.append({"Update": update.request(self._table)})  # type: ignore[typeddict-item]
        transaction.items.append(slot_release(self._table, result.agent_id, result.counted))
        transaction.items += ended_writes(self._table, result.session_id, result.agent_id, ended, result.now)
        return self._run_guarded(transaction)

    # ------------------------------------------------------------------ cancel
    def cancel(self, session_id: str, now: str, by: str) -> bool:
        """waiting|processing -> cancelled; False if the session had already ended."""
        return self._update_if(
            {
                "TableName": self._table,
                "Key": session_key(session_id),
                "UpdateExpression": "SET #status = :cancelled, ended_at = :now, updated_at = :now, cancelled_by = :by",
                "ConditionExpression": "#status IN (:waiting, :processing)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":cancelled": s("cancelled"),
                    ":now": s(now),
                    ":by": s(by),
                    ":waiting": s("waiting"),
                    ":processing": s("processing"),
                },
            }
        )

    def skip_task(self, session_id: str, index: int, status: TaskStatus, now: str) -> None:
        """Close a task the cancel caught open (not leased), unless it moved on meanwhile (then its own end stands).

        The task token stays: a repeated cancel fails it again, in case the first stopped before it could.
        """
        self._update_if(
            {
                "TableName": self._table,
                "Key": task_key(session_id, index),
                "UpdateExpression": (
                    "SET #status = :skipped, ended_at = :now, updated_at = :now "
                    "REMOVE agent_tasks, agent_tasks_sk, deadline_kind, deadline_at"
                ),
                "ConditionExpression": "#status = :was",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":skipped": s("skipped"), ":now": s(now), ":was": s(status)},
            }
        )

    def reschedule(self, session_id: str, index: int, sequence: int, scheduled_for: str) -> bool:
        """Move a retrying task's `scheduled_for` (still retrying after that attempt); False when it moved on."""
        return self._update_if(
            {
                "TableName": self._table,
                "Key": task_key(session_id, index),
                "UpdateExpression": "SET scheduled_for = :when",
                "ConditionExpression": "#status = :retrying AND dispatch_seq = :seq",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":when": s(scheduled_for),
                    ":retrying": s("retrying"),
                    ":seq": n(sequence),
                },
            }
        )

    def _update_if(self, request: dict[str, Any]) -> bool:
        return update_if(self._client, request)

    # ------------------------------------------------------------------ parts of transactions
    def _require_processing(self, transaction: _Transaction, session_id: str) -> None:
        transaction.items.append(
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": session_key(session_id),
                    "ConditionExpression": "#status = :processing",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":processing": s("processing")},
                }
            }
        )

    def _begin(self, transaction: _Transaction, session_id: str, now: str) -> None:
        """waiting -> processing with the first dispatch, should it come before the trigger marked the session started
        (a repeat, or a dispatch after that mark, finds it processing already)."""
        request = self._start_request(session_id, now, "#status IN (:waiting, :processing)")
        transaction.items.append({"Update": cast("UpdateTypeDef", request)})

    def _start_request(self, session_id: str, now: str, condition: str) -> dict[str, Any]:
        """The update that marks a session processing (its start time kept once set), while `condition` holds."""
        return {
            "TableName": self._table,
            "Key": session_key(session_id),
            "UpdateExpression": (
                "SET #status = :processing, started_at = if_not_exists(started_at, :now), updated_at = :now"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":processing": s("processing"), ":waiting": s("waiting"), ":now": s(now)},
        }

    def _end_session(self, transaction: _Transaction, session_id: str, end: SessionEnd, guard: str) -> None:
        """End the session in the transaction, if it still has the `guard` status."""
        request = session_end_request(self._table, session_id, end, "#status = :guard", guard=guard)
        transaction.items.append({"Update": cast("UpdateTypeDef", request)})

    def _run_guarded(self, transaction: _Transaction) -> bool:
        """Run a transaction whose first item guards the session: False when that guard failed (nothing written);
        ConditionFailed when another item's condition did."""
        codes = self._run(transaction)
        if codes is None:
            return True
        if codes[0] == "ConditionalCheckFailed":
            return False
        raise ConditionFailed

    def _run(self, transaction: _Transaction) -> list[str] | None:
        return run_transaction(self._client, transaction.items)


def _filtered(query: dict[str, Any], only: SessionFilter) -> None:
    """The query's key range for a time window, and its filter for a status or a workflow."""
    values = query["ExpressionAttributeValues"]
    if only.since is not None or only.until is not None:
        low = _id_time(only.since) + "0" * ID_RANDOM_DIGITS if only.since is not None else "0"
        high = _id_time(only.until) + "f" * ID_RANDOM_DIGITS if only.until is not None else "g"
        query["KeyConditionExpression"] += " AND session_id BETWEEN :low AND :high"
        values.update({":low": s(low), ":high": s(high)})
    conditions = []
    if only.status is not None:
        conditions.append("#status = :status")
        query["ExpressionAttributeNames"] = {"#status": "status"}
        values[":status"] = s(only.status)
    if only.workflow_id is not None:
        conditions.append("workflow_id = :workflow")
        values[":workflow"] = s(only.workflow_id)
    if conditions:
        query["FilterExpression"] = " AND ".join(conditions)


def _id_time(moment: datetime) -> str:
    """The first digits of the ids of sessions created at `moment` (as new_session_id writes them)."""
    return f"{max(0, int(moment.timestamp() * 1_000_000)):0{ID_TIME_DIGITS}x}"


def _session_after(token: str) -> str:
    """The session a page token says the next page starts after."""
    if SESSION_ID.fullmatch(token):
        return token  # a token issued before page tokens had one codec (a bare session id) still pages
    position = decode_page_token(
        token, lambda key: set(key) == {"session_id"} and SESSION_ID.fullmatch(key["session_id"]) is not None
    )
    return position["session_id"]
