"""The services a function uses, built once per Lambda container on first use, never at import.

Building lazily keeps cold imports light and lets tests import handlers before any AWS mock has started;
`reset()` drops everything built so far (tests, and the local runtime when it restarts its emulation).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

from opscore.settings import settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from opscore.keys import ApiKeys
    from opscore.registry import Registry
    from opscore.workflows import Workflows


def utc_now() -> datetime:
    return datetime.now(UTC)


@cache
def dynamodb() -> DynamoDBClient:
    from opscore.store.dynamo import new_client

    return new_client()


@cache
def registry() -> Registry:
    from opscore.registry import Registry
    from opscore.store.agents import AgentStore

    return Registry(AgentStore(dynamodb(), settings().table_name), settings(), utc_now)


@cache
def api_keys() -> ApiKeys:
    from opscore.keys import ApiKeys
    from opscore.store.keys import KeyStore

    return ApiKeys(KeyStore(dynamodb(), settings().table_name), utc_now)


@cache
def workflows() -> Workflows:
    from opscore.store.workflows import WorkflowStore
    from opscore.workflows import Workflows

    return Workflows(WorkflowStore(dynamodb(), settings().table_name), utc_now)


def reset() -> None:
    for built in (settings, dynamodb, registry, api_keys, workflows):
        built.cache_clear()
