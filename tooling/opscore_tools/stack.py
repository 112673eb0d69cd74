"""Reach a deployed Ops-Core stack with the operator's own AWS credentials (boto3's usual configuration)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from opscore.keys.service import ApiKeys

TABLE_OUTPUT = "TableName"


def table_of_stack(stack: str, region: str | None = None) -> str:
    """The table name a deployed stack reports in its `TableName` output."""
    client = boto3.client("cloudformation", region_name=region)
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise LookupError(f"stack {stack}: {error.response['Error'].get('Message', 'not found')}") from None
    for output in stacks[0].get("Outputs", []):
        if output.get("OutputKey") == TABLE_OUTPUT:
            return output["OutputValue"]
    raise LookupError(f"stack {stack} has no {TABLE_OUTPUT} output; is it an Ops-Core stack?")


def key_service(stack: str | None, table: str | None, region: str | None = None) -> ApiKeys:
    from opscore.core.clock import utc_now
    from opscore.keys.service import ApiKeys
    from opscore.keys.store import KeyStore

    table_name = table or table_of_stack(stack or "", region)
    return ApiKeys(KeyStore(boto3.client("dynamodb", region_name=region), table_name), utc_now)
