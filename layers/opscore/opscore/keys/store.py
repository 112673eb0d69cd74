"""API keys in the Ops-Core table: `PK=KEY#<key id> SK=KEY`, holding the key's SHA-256, never the key itself.

The key id is the first 16 hex digits of that SHA-256, so the authorizer finds a key with one GetItem computed from
the presented key alone, and an operator can revoke it by id without ever seeing the key again.

Every key item is also in the Keys index (`keys_list=KEYS`, `keys_sk=<admin | agent#<agent id>>#<created_at>#<key
id>`), which GET /keys pages through with a Query: one partition, since keys change rarely (created, rotated,
revoked, and used at most one write a day each). The index projects what a listing shows, never `key_hash`. A key
stored before the index existed is put into it by its first use (the authorizer's daily `last_used_on` write).

`expires_at` is a string (`format_timestamp`'s form): the table's TTL reads only numbers, so it never deletes a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opscore.aws.dynamodb import ConditionFailed, run_transaction, translated_errors
from opscore.aws.items import Attributes, Item, decode_item, s
from opscore.aws.pages import decode_page_token, encode_page_token
from opscore.keys.models import KeyInfo, Role

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEYS_INDEX = "Keys"
KEYS_LIST = "KEYS"
# Sort keys of the Keys index sort between these (ids and timestamps hold neither character).
AFTER, PAST = " ", "~"


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    key_hash: str
    role: Role
    agent_id: str | None
    revoked: bool
    expires_at: str | None = None  # format_timestamp's form, so string order is time order
    last_used_on: str | None = None  # YYYY-MM-DD (UTC)
    created_at: str | None = None
    rotated_from: str | None = None


def key_item_key(key_id: str) -> Item:
    return {"PK": s(f"KEY#{key_id}"), "SK": s("KEY")}


def scope_of(agent_id: str | None) -> str:
    """The Keys index's sort-key prefix of a principal: `admin`, or `agent#<id>` (agent ids hold no '#')."""
    return "admin" if agent_id is None else f"agent#{agent_id}"


def keys_sort_key(agent_id: str | None, created_at: str, key_id: str) -> str:
    return f"{scope_of(agent_id)}#{created_at}#{key_id}"


class KeyStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _new_item(self, key: StoredKey, created_at: str, created_by: str) -> Item:
        item: Item = {
            **key_item_key(key.key_id),
            "entity": s("api_key"),
            "key_id": s(key.key_id),
            "key_hash": s(key.key_hash),
            "role": s(key.role.value),
            "created_at": s(created_at),
            "created_by": s(created_by),
            "keys_list": s(KEYS_LIST),
            "keys_sk": s(keys_sort_key(key.agent_id, created_at, key.key_id)),
        }
        optional = {"agent_id": key.agent_id, "expires_at": key.expires_at, "rotated_from": key.rotated_from}
        item.update({name: s(value) for name, value in optional.items() if value is not None})
        return item

    def put_new(self, key: StoredKey, created_at: str, created_by: str) -> bool:
        """Store a key unless its id is taken; returns False when it is (the caller draws another key)."""
        try:
            with translated_errors():
                self._client.put_item(
                    TableName=self._table,
                    Item=self._new_item(key, created_at, created_by),
                    ConditionExpression="attribute_not_exists(PK)",
                )
        except ConditionFailed:
            return False
        return True

    def put_rotated(
        self, new: StoredKey, created_at: str, created_by: str, old: StoredKey, old_expires_at: str | None
    ) -> bool:
        """Store `new` and, in the same transaction, set `old`'s expiry to `old_expires_at` (when given), only if the
        old key is still as it was read: there, not revoked, its expiry unchanged. False when it no longer is (or the
        new id is taken)."""
        old_unchanged = "attribute_exists(PK) AND attribute_not_exists(revoked_at) AND "
        values: dict[str, Any] = {}
        if old.expires_at is None:
            old_unchanged += "attribute_not_exists(expires_at)"
        else:
            old_unchanged += "expires_at = :read"
            values[":read"] = s(old.expires_at)
        check: dict[str, Any] = {"TableName": self._table, "Key": key_item_key(old.key_id)}
        check["ConditionExpression"] = old_unchanged
        if values:
            check["ExpressionAttributeValues"] = values
        if old_expires_at is not None:
            check["UpdateExpression"] = "SET expires_at = :grace"
            check["ExpressionAttributeValues"] = {**values, ":grace": s(old_expires_at)}
        put: dict[str, Any] = {
            "TableName": self._table,
            "Item": self._new_item(new, created_at, created_by),
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        action = "Update" if old_expires_at is not None else "ConditionCheck"
        items: list[Any] = [{"Put": put}, {action: check}]
        with translated_errors():
            failed = run_transaction(self._client, items)
        return failed is None

    def get(self, key_id: str) -> StoredKey | None:
        # Strongly consistent, so a revoked key stops working with the very next request.
        with translated_errors():
            response = self._client.get_item(TableName=self._table, Key=key_item_key(key_id), ConsistentRead=True)
        item = response.get("Item")
        if not item:
            return None
        return _stored_key(decode_item(item), key_id)

    def revoke(self, key_id: str, now: str, revoked_by: str) -> bool:
        """Mark the key revoked (idempotently); returns False when no such key exists."""
        try:
            with translated_errors():
                self._client.update_item(
                    TableName=self._table,
                    Key=key_item_key(key_id),
                    UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :now), revoked_by = "
                    "if_not_exists(revoked_by, :by)",
                    ConditionExpression="attribute_exists(PK)",
                    ExpressionAttributeValues={":now": s(now), ":by": s(revoked_by)},
                )
        except ConditionFailed:
            return False
        return True

    def record_use(self, key: StoredKey, day: str) -> bool:
        """Set `last_used_on` to `day` unless it already is that day or later (at most one write a key a day), and
        put a key stored before the Keys index existed into it. False when nothing was written."""
        created_at = key.created_at or ""
        try:
            with translated_errors():
                self._client.update_item(
                    TableName=self._table,
                    Key=key_item_key(key.key_id),
                    UpdateExpression="SET last_used_on = :day, keys_list = if_not_exists(keys_list, :list), "
                    "keys_sk = if_not_exists(keys_sk, :sk)",
                    ConditionExpression="attribute_exists(PK) AND "
                    "(attribute_not_exists(last_used_on) OR last_used_on < :day)",
                    ExpressionAttributeValues={
                        ":day": s(day),
                        ":list": s(KEYS_LIST),
                        ":sk": s(keys_sort_key(key.agent_id, created_at, key.key_id)),
                    },
                )
        except ConditionFailed:
            return False
        return True

    def every_key(self) -> Iterator[StoredKey]:
        """Every key item, revoked and expired ones too, a page at a time: a paginated Scan of the whole table,
        filtered on `entity = api_key`.

        Only for a one-off operator migration (`opscore keys sync-usage`), run with the operator's own credentials,
        never by a function (no function's IAM policy grants Scan): it reads every item of the table once, which on a
        table of any size costs more than any request path may, but a migration must also find keys the Keys index
        does not hold yet (those stored before it, which join it only at their first use)."""
        paginator = self._client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self._table,
            FilterExpression="entity = :entity",
            ExpressionAttributeValues={":entity": s("api_key")},
        )
        with translated_errors():
            for page in pages:
                for item in page.get("Items", []):
                    attributes = decode_item(item)
                    yield _stored_key(attributes, attributes.get("key_id") or attributes["PK"].removeprefix("KEY#"))

    def list_page(self, agent_id: str | None, limit: int, next_token: str | None) -> tuple[list[KeyInfo], str | None]:
        """A page of keys, admin keys first then by agent, each principal's oldest first; only `agent_id`'s when
        given. One Query of the Keys index (eventually consistent); the token is the last sort key shown."""
        prefix = "" if agent_id is None else scope_of(agent_id) + "#"
        low, high = prefix or AFTER, prefix + PAST
        if next_token is not None:
            # Only a position inside this listing's range [prefix, prefix + PAST): a forged one above it would make
            # the BETWEEN's lower bound exceed its upper bound, which DynamoDB refuses (ValidationException, a 500).
            after = decode_page_token(
                next_token, lambda key: set(key) == {"keys_sk"} and prefix <= key["keys_sk"] < high
            )["keys_sk"]
            low = max(low, after + AFTER)
        with translated_errors():
            answer = self._client.query(
                TableName=self._table,
                IndexName=KEYS_INDEX,
                KeyConditionExpression="keys_list = :list AND keys_sk BETWEEN :low AND :high",
                ExpressionAttributeValues={":list": s(KEYS_LIST), ":low": s(low), ":high": s(high)},
                Limit=limit + 1,  # one more than shown: whether more follow
            )
        found = [decode_item(item) for item in answer.get("Items", [])]
        page = found[:limit]
        more = len(found) > limit or (bool(page) and "LastEvaluatedKey" in answer)
        token = encode_page_token({"keys_sk": page[-1]["keys_sk"]}) if more else None
        return [_key_info(attributes) for attributes in page], token


def _stored_key(attributes: Attributes, key_id: str) -> StoredKey:
    return StoredKey(
        key_id=attributes.get("key_id") or key_id,
        key_hash=attributes.get("key_hash", ""),
        role=Role(attributes.get("role") or Role.AGENT.value),
        agent_id=attributes.get("agent_id"),
        revoked="revoked_at" in attributes,
        expires_at=attributes.get("expires_at"),
        last_used_on=attributes.get("last_used_on"),
        created_at=attributes.get("created_at"),
        rotated_from=attributes.get("rotated_from"),
    )


def _key_info(attributes: Attributes) -> KeyInfo:
    return KeyInfo(
        key_id=attributes["key_id"],
        role=Role(attributes.get("role") or Role.AGENT.value),
        agent_id=attributes.get("agent_id"),
        created_at=attributes.get("created_at"),
        created_by=attributes.get("created_by"),
        expires_at=attributes.get("expires_at"),
        last_used_on=attributes.get("last_used_on"),
        revoked_at=attributes.get("revoked_at"),
        rotated_from=attributes.get("rotated_from"),
    )
