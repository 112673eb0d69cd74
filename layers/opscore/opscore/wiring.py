"""The services a function uses, built once per Lambda container on first use, never at import.

Building lazily keeps cold imports light and lets tests import handlers before any AWS mock has started;
`reset()` drops everything built so far (tests, and the local runtime when it restarts its emulation)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from opscore.core.clock import utc_now
from opscore.core.settings import settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

    from opscore.agents.analytics import AgentAnalytics
    from opscore.agents.registry import Registry
    from opscore.agents.store import AgentStore
    from opscore.aws.stepfunctions import RunnerControl
    from opscore.dispatch.dispatcher import Dispatcher
    from opscore.dispatch.health import AgentHealth
    from opscore.dispatch.queue import TaskQueue
    from opscore.dispatch.results import TaskResults
    from opscore.dispatch.wake import Waker
    from opscore.keys.service import ApiKeys
    from opscore.sessions.machines import RunnerMachines
    from opscore.sessions.runner import SessionRunner
    from opscore.sessions.service import Sessions
    from opscore.sessions.store import SessionStore
    from opscore.workflows.service import Workflows


@cache
def dynamodb() -> DynamoDBClient:
    from opscore.aws.dynamodb import new_client

    return new_client()


@cache
def agent_store() -> AgentStore:
    from opscore.agents.store import AgentStore

    return AgentStore(dynamodb(), settings().table_name)


@cache
def task_queue() -> TaskQueue:
    from opscore.dispatch.queue import TaskQueue

    return TaskQueue(dynamodb(), settings().table_name)


@cache
def registry() -> Registry:
    from opscore.agents.registry import Registry

    return Registry(agent_store(), task_queue(), settings(), utc_now)


@cache
def api_keys() -> ApiKeys:
    from opscore.keys.service import ApiKeys
    from opscore.keys.store import KeyStore
    from opscore.keys.usage import NO_USAGE_KEYS, ApiGatewayUsageKeys, UsageKeys

    configured = settings()
    usage: UsageKeys = NO_USAGE_KEYS
    if configured.usage_plan_name and configured.opscore_per_key_limits == "usage_plan":
        usage = ApiGatewayUsageKeys(apigateway, configured.usage_plan_name, configured.usage_key_namespace)
    return ApiKeys(KeyStore(dynamodb(), configured.table_name), utc_now, usage)


@cache
def apigateway() -> Any:
    import boto3

    return boto3.client("apigateway")


@cache
def workflows() -> Workflows:
    from opscore.workflows.service import Workflows
    from opscore.workflows.store import WorkflowStore

    return Workflows(WorkflowStore(dynamodb(), settings().table_name), utc_now, prepare=_ready_runner)


def _ready_runner(template: Any) -> str:
    return runner_machines().ensure(template)


@cache
def stepfunctions() -> SFNClient:
    from opscore.aws.stepfunctions import new_client

    return new_client()


@cache
def runner_control() -> RunnerControl:
    from opscore.aws.stepfunctions import RunnerControl

    return RunnerControl(stepfunctions)


@cache
def runner_machines() -> RunnerMachines:
    from opscore.sessions.machines import RunnerMachines

    return RunnerMachines(runner_control(), settings())


@cache
def session_store() -> SessionStore:
    from opscore.sessions.store import SessionStore

    return SessionStore(dynamodb(), settings().table_name)


@cache
def sessions() -> Sessions:
    from opscore.sessions.service import Sessions

    return Sessions(
        session_store(), registry(), workflows(), runner_control, runner_machines, agent_health, wake, utc_now
    )


@cache
def agent_health() -> AgentHealth:
    from opscore.dispatch.health import AgentHealth

    return AgentHealth(agent_store(), task_queue(), session_store(), registry(), runner_control(), utc_now)


@cache
def session_runner() -> SessionRunner:
    from opscore.sessions.runner import SessionRunner

    return SessionRunner(session_store(), runner_control(), agent_health(), utc_now)


@cache
def task_results() -> TaskResults:
    from opscore.dispatch.results import TaskResults

    return TaskResults(session_store(), runner_control(), agent_health(), utc_now)


@cache
def dispatcher() -> Dispatcher:
    from opscore.dispatch.dispatcher import Dispatcher

    return Dispatcher(task_queue(), agent_store(), session_store(), task_results(), agent_health(), utc_now)


@cache
def lambda_client() -> Any:
    from opscore.aws.lambdas import new_client

    return new_client()


@cache
def waker() -> Waker:
    from opscore.dispatch.wake import Waker

    return Waker(agent_store(), lambda_client, settings().dispatch_function_arn)


@cache
def agent_analytics() -> AgentAnalytics:
    from opscore.agents.analytics import AgentAnalytics
    from opscore.agents.tallies import TallyStore

    return AgentAnalytics(registry(), TallyStore(dynamodb(), settings().table_name), utc_now)


def wake(agent_id: str) -> bool:
    """Have the agent's queue served (asynchronously, and only for an agent whose channel pushes)."""
    return waker().wake(agent_id)


def reset() -> None:
    from opscore.api import idempotency

    built: tuple[Any, ...] = (
        settings,
        dynamodb,
        agent_store,
        task_queue,
        registry,
        agent_analytics,
        api_keys,
        apigateway,
        workflows,
        stepfunctions,
        runner_control,
        runner_machines,
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
