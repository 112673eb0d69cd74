"""Reach a deployed Ops-Core stack with the operator's own AWS credentials (boto3's usual configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from opscore.keys.service import ApiKeys

TABLE_OUTPUT = "TableName"
USAGE_PLAN_OUTPUT = "PerKeyUsagePlanName"


@dataclass(frozen=True)
class DeployedStack:
    name: str  # the stack's name as CloudFormation reports it, whether it was found by name or by ARN
    outputs: dict[str, str]


def describe_stack(stack: str, region: str | None = None) -> DeployedStack:
    """A deployed stack (`stack` is its name or its ARN): its own name, and its outputs by key."""
    client = boto3.client("cloudformation", region_name=region)
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        raise LookupError(f"stack {stack}: {error.response['Error'].get('Message', 'not found')}") from None
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}
    return DeployedStack(name=stacks[0]["StackName"], outputs=outputs)


def outputs_of_stack(stack: str, region: str | None = None) -> dict[str, str]:
    """A deployed stack's outputs, by key."""
    return describe_stack(stack, region).outputs


def table_of_stack(stack: str, region: str | None = None) -> str:
    """The table name a deployed stack reports in its `TableName` output."""
    outputs = outputs_of_stack(stack, region)
    if TABLE_OUTPUT not in outputs:
        raise LookupError(f"stack {stack} has no {TABLE_OUTPUT} output; is it an Ops-Core stack?")
    return outputs[TABLE_OUTPUT]


def usage_sync_service(stack: str, region: str | None = None) -> tuple[ApiKeys, str]:
    """The keys of a stack with per-key limits, and the name of its usage plan; LookupError for a stack without one
    (deployed before per-key limits: update it first)."""
    deployed = describe_stack(stack, region)
    if USAGE_PLAN_OUTPUT not in deployed.outputs:
        raise LookupError(
            f"stack {stack} has no {USAGE_PLAN_OUTPUT} output: it has no per-key limits to sync keys into; deploy "
            "this version of Ops-Core to it first"
        )
    return key_service(stack, None, region, deployed), deployed.outputs[USAGE_PLAN_OUTPUT]


def key_service(
    stack: str | None, table: str | None, region: str | None = None, deployed: DeployedStack | None = None
) -> ApiKeys:
    """The keys of a stack's table. With `stack`, new keys also get their API key in the stack's per-key usage plan
    (named by its `PerKeyUsagePlanName` output; a stack deployed before per-key limits has none, and needs none)."""
    from opscore.core.clock import utc_now
    from opscore.keys.service import ApiKeys
    from opscore.keys.store import KeyStore
    from opscore.keys.usage import NO_USAGE_KEYS, ApiGatewayUsageKeys, UsageKeys

    usage: UsageKeys = NO_USAGE_KEYS
    if table is None:
        deployed = deployed or describe_stack(stack or "", region)
        outputs = deployed.outputs
        if TABLE_OUTPUT not in outputs:
            raise LookupError(f"stack {stack} has no {TABLE_OUTPUT} output; is it an Ops-Core stack?")
        table = outputs[TABLE_OUTPUT]
        if USAGE_PLAN_OUTPUT in outputs:
            # API Gateway's management API allows a few calls a second: adaptive retries pace a run of many keys.
            retries = Config(retries={"mode": "adaptive", "max_attempts": 10})
            client = boto3.client("apigateway", region_name=region, config=retries)
            # The namespace is the stack's name as the authorizer reads it (AWS::StackName), never an ARN given here.
            usage = ApiGatewayUsageKeys(lambda: client, outputs[USAGE_PLAN_OUTPUT], deployed.name)
    return ApiKeys(KeyStore(boto3.client("dynamodb", region_name=region), table), utc_now, usage)
