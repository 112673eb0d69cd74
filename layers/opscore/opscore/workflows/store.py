"""Workflow templates in the Ops-Core table.

Items:
- `PK=WORKFLOW#<name> SK=V#<10-digit version>`: one immutable version (the canonical template JSON and its hash);
- `PK=WORKFLOW#<name> SK=HASH#<sha256>`: which version holds that exact template, so posting it again finds it;
- `PK=WORKFLOWS SK=WORKFLOW#<name>`: the catalogue entry (latest version, description), so listing every workflow
  is a Query of one partition, never a Scan. Workflows are created rarely, so one partition is no hot spot.
A new version writes all three in one transaction, conditioned on the latest version read before it.
"""

from typing import TYPE_CHECKING, Any, NamedTuple

from opscore.aws.dynamodb import translated_errors
from opscore.aws.items import Attributes, decode_item, n, s
from opscore.aws.pages import query_prefix_page

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CATALOGUE_PK = "WORKFLOWS"
CATALOGUE_PREFIX = "WORKFLOW#"
VERSION_PREFIX = "V#"


class StoredWorkflow(NamedTuple):
    workflow_id: str
    version: int
    template_json: str
    content_hash: str
    created_at: str


class CatalogueEntry(NamedTuple):
    workflow_id: str
    latest_version: int
    description: str | None
    updated_at: str


def _partition(workflow_id: str) -> str:
    return f"WORKFLOW#{workflow_id}"


def _version_sk(version: int) -> str:
    return f"{VERSION_PREFIX}{version:010d}"


class WorkflowStore:
    def __init__(self, client: "DynamoDBClient", table_name: str) -> None:
        self._client = client
        self._table = table_name

    def version_with_hash(self, workflow_id: str, content_hash: str) -> int | None:
        with translated_errors():
            response = self._client.get_item(
                TableName=self._table,
                Key={"PK": s(_partition(workflow_id)), "SK": s(f"HASH#{content_hash}")},
                ConsistentRead=True,
            )
        item = response.get("Item")
        return decode_item(item).get("version") if item else None

    def latest_version(self, workflow_id: str) -> int:
        """The newest version number, 0 when the workflow does not exist yet."""
        with translated_errors():
            response = self._client.get_item(
                TableName=self._table,
                Key={"PK": s(CATALOGUE_PK), "SK": s(CATALOGUE_PREFIX + workflow_id)},
                ConsistentRead=True,
            )
        item = response.get("Item")
        return decode_item(item).get("latest_version", 0) if item else 0

    def put_version(
        self, stored: StoredWorkflow, description: str | None, created_by: str, expected_latest: int
    ) -> None:
        """Store a new version, its hash index and the catalogue entry together; ConditionFailed if another won."""
        partition = s(_partition(stored.workflow_id))
        catalogue_values: dict[str, Any] = {
            ":workflow_id": s(stored.workflow_id),
            ":version": n(stored.version),
            ":expected": n(expected_latest),
            ":now": s(stored.created_at),
            ":entity": s("workflow"),
        }
        assignments = "workflow_id = :workflow_id, latest_version = :version, updated_at = :now, entity = :entity"
        if description is not None:
            catalogue_values[":description"] = s(description)
            update = f"SET {assignments}, description = :description"
        else:
            update = f"SET {assignments} REMOVE description"
        with translated_errors():
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "PK": partition,
                                "SK": s(_version_sk(stored.version)),
                                "entity": s("workflow_version"),
                                "workflow_id": s(stored.workflow_id),
                                "version": n(stored.version),
                                "template": s(stored.template_json),
                                "content_hash": s(stored.content_hash),
                                "created_at": s(stored.created_at),
                                "created_by": s(created_by),
                            },
                            "ConditionExpression": "attribute_not_exists(SK)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "PK": partition,
                                "SK": s(f"HASH#{stored.content_hash}"),
                                "entity": s("workflow_hash"),
                                "version": n(stored.version),
                            },
                            "ConditionExpression": "attribute_not_exists(SK)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"PK": s(CATALOGUE_PK), "SK": s(CATALOGUE_PREFIX + stored.workflow_id)},
                            "UpdateExpression": update,
                            "ConditionExpression": "attribute_not_exists(SK) OR latest_version = :expected",
                            "ExpressionAttributeValues": catalogue_values,
                        }
                    },
                ]
            )

    def get_version(self, workflow_id: str, version: int | None) -> StoredWorkflow | None:
        """One version, or the newest when `version` is None."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "ExpressionAttributeValues": {":pk": s(_partition(workflow_id))},
            "ConsistentRead": True,
            "Limit": 1,
        }
        if version is None:
            query["KeyConditionExpression"] = "PK = :pk AND begins_with(SK, :prefix)"
            query["ExpressionAttributeValues"][":prefix"] = s(VERSION_PREFIX)
            query["ScanIndexForward"] = False
        else:
            query["KeyConditionExpression"] = "PK = :pk AND SK = :sk"
            query["ExpressionAttributeValues"][":sk"] = s(_version_sk(version))
        with translated_errors():
            items = self._client.query(**query).get("Items", [])
        if not items:
            return None
        attributes = decode_item(items[0])
        return StoredWorkflow(
            workflow_id=attributes.get("workflow_id") or workflow_id,
            version=attributes.get("version", 0),
            template_json=attributes.get("template") or "{}",
            content_hash=attributes.get("content_hash", ""),
            created_at=attributes.get("created_at", ""),
        )

    def list_catalogue(self, limit: int, next_token: str | None) -> tuple[list[CatalogueEntry], str | None]:
        page, token = query_prefix_page(
            self._client,
            self._table,
            partition=CATALOGUE_PK,
            sort_prefix=CATALOGUE_PREFIX,
            limit=limit,
            next_token=next_token,
        )
        return [_catalogue_entry(decode_item(item)) for item in page], token


def _catalogue_entry(attributes: Attributes) -> CatalogueEntry:
    return CatalogueEntry(
        workflow_id=attributes.get("workflow_id", ""),
        latest_version=attributes.get("latest_version", 0),
        description=attributes.get("description"),
        updated_at=attributes.get("updated_at", ""),
    )
