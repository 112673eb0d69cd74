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

    from opscore.agent_health import AgentHealth
    from opscore.dispatcher import Dispatcher
    from opscore.keys import ApiKeys
    from opscore.registry import Registry
    from opscore.runner_control import RunnerControl
    from opscore.session_runner import SessionRunner
    from opscore.sessions import Sessions
    from opscore.store.agents import AgentStore
    from opscore.store.queue import TaskQueue
    from opscore.store.sessions import SessionStore
    from opscore.task_results import TaskResults
    from opscore.wake import Waker
    from opscore.workflows import Workflows


def utc_now() -> datetime:
    return datetime.now(UTC)


@cache
def dynamodb() -> DynamoDBClient:
    from opscore.store.dynamo import new_client

    return new_client()


@cache
def agent_store() -> AgentStore:
    from opscore.store.agents import AgentStore

    return AgentStore(dynamodb(), settings().table_name)


@cache
def task_queue() -> TaskQueue:
    from opscore.store.queue import TaskQueue

    return TaskQueue(dynamodb(), settings().table_name)


@cache
def registry() -> Registry:
    from opscore.registry import Registry

    return Registry(agent_store(), task_queue(), settings(), utc_now)


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

    return Sessions(session_store(), registry(), workflows(), runner_control, agent_health, wake, utc_now)


@cache
def agent_health() -> AgentHealth:
    from opscore.agent_health import AgentHealth

    return AgentHealth(agent_store(), task_queue(), session_store(), registry(), runner_control(), utc_now)


@cache
def session_runner() -> SessionRunner:
    from opscore.session_runner import SessionRunner

    return SessionRunner(session_store(), runner_control(), agent_health(), wake, utc_now)


@cache
def task_results() -> TaskResults:
    from opscore.task_results import TaskResults

    return TaskResults(session_store(), runner_control(), agent_health(), utc_now)


@cache
def dispatcher() -> Dispatcher:
    from opscore.dispatcher import Dispatcher

    return Dispatcher(task_queue(), agent_store(), session_store(), task_results(), agent_health(), utc_now)


@cache
def lambda_client() -> Any:
    from opscore.wake import new_client

    return new_client()


@cache
def waker() -> Waker:
    from opscore.wake import Waker

    return Waker(agent_store(), lambda_client, settings().dispatch_function_arn)


def wake(agent_id: str) -> bool:
    """Have the agent's queue served (asynchronously, and only for an agent whose channel pushes)."""
    return waker().wake(agent_id)


def reset() -> None:
    from opscore import idempotency

    built: tuple[Any, ...] = (
        settings,
        dynamodb,
        agent_store,
        task_queue,
        registry,
        api_keys,
        workflows,
        stepfunctions,
        runner_control,
        session_store,
        sessions,
        session_runner,
        task_results,
        agent_health,
        dispatcher,
        lambda_client,
        waker,
    )
    for factory in built:
        factory.cache_clear()
    idempotency.reset()
