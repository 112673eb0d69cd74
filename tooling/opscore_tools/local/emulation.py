"""The in-process AWS the local runtime runs on: moto, with the template's tables created from its own definitions."""

from __future__ import annotations

import os
from typing import Any

from opscore_tools.local.runner import (
    MOTO_CONFIG,
    Invoke,
    LambdaInvokeHook,
    count_state_data_in_utf8,
    create_state_machines,
    issue_a_token_per_attempt,
)
from opscore_tools.local.template import REGION, Template

# Credentials that can only ever reach moto: set before any client exists, so nothing can sign a real AWS request.
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


# What the local runtime changes in the functions' behaviour, on purpose: no X-Ray daemon runs locally (Tracer would
# only warn on every segment), webhook agents live on this machine (loopback is refused in AWS), and no API Gateway
# usage plan exists (the local gateway throttles each key itself, opscore_tools.local.gateway.KeyThrottle).
LOCAL_ONLY_ENVIRONMENT = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS": "allow",
    "OPSCORE_PER_KEY_LIMITS": "gateway",
}


def table_definition(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The CreateTable request for a template's AWS::DynamoDB::Table (keys and indexes as the template has them)."""
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if index_kind in properties:
            request[index_kind] = properties[index_kind]
    return request


def create_tables(template: Template) -> None:
    import boto3

    client = boto3.client("dynamodb", region_name=REGION)
    for table in template.tables:
        name = template.table_names[table.logical_id]
        client.create_table(**table_definition(name, table.properties))
        ttl = table.properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )


def function_environment(template: Template) -> dict[str, str]:
    """One process runs every function, so their environments must agree; a clash is a template the runtime refuses."""
    merged: dict[str, str] = {}
    for function in template.functions.values():
        for name, value in function.environment.items():
            if merged.setdefault(name, value) != value:
                raise ValueError(f"functions disagree on {name}: {merged[name]!r} and {value!r}")
    return merged


def create_resources(template: Template, invoke: Invoke) -> LambdaInvokeHook:
    """Inside a running mock: the template's tables and state machines, and Lambda calls routed to `invoke`."""
    create_tables(template)
    issue_a_token_per_attempt()
    count_state_data_in_utf8()
    hook = LambdaInvokeHook(template, invoke)
    hook.install()
    create_state_machines(template)
    return hook


class Emulation:
    """Start moto, the tables and the state machines; stop to throw everything away (nothing is kept between runs)."""

    def __init__(self, template: Template) -> None:
        self._template = template
        self._mock: Any = None
        self.lambda_hook: LambdaInvokeHook | None = None

    def start(self, invoke: Invoke) -> None:
        from moto import mock_aws

        os.environ.update(FAKE_AWS_ENVIRONMENT)
        os.environ.update(function_environment(self._template))
        os.environ.update(LOCAL_ONLY_ENVIRONMENT)
        self._mock = mock_aws(config=MOTO_CONFIG)
        self._mock.start()
        self.lambda_hook = create_resources(self._template, invoke)

    def stop(self) -> None:
        try:
            if self.lambda_hook is not None:
                self.lambda_hook.drain()
                self.lambda_hook = None
        finally:
            # Even when an invocation is still running: a stopped mock must never leave a thread to call real AWS.
            if self._mock is not None:
                self._mock.stop()
                self._mock = None
