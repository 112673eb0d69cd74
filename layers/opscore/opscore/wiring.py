"""The services a function uses, built once per Lambda container on first use, never at import.

Building lazily keeps cold imports light and lets tests import handlers before any AWS mock has started;
`reset()` drops everything built so far (tests, and the local runtime when it restarts its emulation).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from opscore.settings import settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

    from opscore.keys import ApiKeys
    from opscore.registry import Registry
    from opscore.runner_control import RunnerControl
    from opscore.session_runner import SessionRunner
    from opscore.sessions import Sessions
    from opscore.store.sessions import SessionStore
    from opscore.task_results import TaskResults
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


@cache
def stepfunctions() -> SFNClient:
    from opscore.runner_control import new_client

    return new_client()


@cache
def runner_control() -> RunnerControl:
    from opscore.runner_control import RunnerControl

    return RunnerControl(stepfunctions, settings().state_machine_arn)


@cache
def session_store() -> SessionStore:
    from opscore.store.sessions import SessionStore

    return SessionStore(dynamodb(), settings().table_name)


@cache
def sessions() -> Sessions:
    from opscore.sessions import Sessions

    return Sessions(session_store(), registry(), workflows(), runner_control, utc_now)


@cache
def session_runner() -> SessionRunner:
    from opscore.session_runner import SessionRunner

    return SessionRunner(session_store(), runner_control(), utc_now)


@cache
def task_results() -> TaskResults:
    from opscore.task_results import TaskResults

    return TaskResults(session_store(), runner_control())


def reset() -> None:
    from opscore import idempotency

    built: tuple[Any, ...] = (
        settings,
        dynamodb,
        registry,
        api_keys,
        workflows,
        stepfunctions,
        runner_control,
        session_store,
        sessions,
        session_runner,
        task_results,
    )
    for factory in built:
        factory.cache_clear()
    idempotency.reset()
