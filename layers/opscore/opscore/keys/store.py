"""API keys in the Ops-Core table: `PK=KEY#<key id> SK=KEY`, holding the key's SHA-256, never the key itself.

The key id is the first 16 hex digits of that SHA-256, so the authorizer finds a key with one GetItem computed from
the presented key alone, and an operator can revoke it by id without ever seeing the key again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opscore.aws.dynamodb import ConditionFailed, translated_errors
from opscore.aws.items import Item, decode_item, s
from opscore.keys.models import Role

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    key_hash: str
    role: Role
    agent_id: str | None
    revoked: bool


def key_item_key(key_id: str) -> Item:
    return {"PK": s(f"KEY#{key_id}"), "SK": s("KEY")}


class KeyStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put_new(self, key: StoredKey, created_at: str, created_by: str) -> bool:
        """Store a key unless its id is taken; returns False when it is (the caller draws another key)."""
        item: Item = {
            **key_item_key(key.key_id),
            "entity": s("api_key"),
            "key_id": s(key.key_id),
            "key_hash": s(key.key_hash),
            "role": s(key.role.value),
            "created_at": s(created_at),
            "created_by": s(created_by),
        }
        if key.agent_id is not None:
            item["agent_id"] = s(key.agent_id)
        try:
            with translated_errors():
                self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(PK)")
        except ConditionFailed:
            return False
        return True

    def get(self, key_id: str) -> StoredKey | None:
        # Strongly consistent, so a revoked key stops working with the very next request.
        with translated_errors():
            response = self._client.get_item(TableName=self._table, Key=key_item_key(key_id), ConsistentRead=True)
        item = response.get("Item")
        if not item:
            return None
        attributes = decode_item(item)
        return StoredKey(
            key_id=attributes.get("key_id") or key_id,
            key_hash=attributes.get("key_hash", ""),
            role=Role(attributes.get("role") or Role.AGENT.value),
            agent_id=attributes.get("agent_id"),
            revoked="revoked_at" in attributes,
        )

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
