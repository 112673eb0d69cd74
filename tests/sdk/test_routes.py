"""Every operation of docs/openapi.yaml has a method on both clients, and every paged one an iterator."""

from __future__ import annotations

import inspect
import re

import pytest
import yaml

from opscore_sdk import AsyncOpsCore, OpsCore
from tests.conftest import REPO

# operationId -> the client's method. A new operation fails the test below until it is given one here and on the
# clients.
METHODS = {
    "health": "health",
    "createKey": "create_key",
    "listKeys": "list_keys",
    "rotateKey": "rotate_key",
    "revokeKey": "revoke_key",
    "createWorkflow": "create_workflow",
    "listWorkflows": "list_workflows",
    "getWorkflow": "get_workflow",
    "registerAgent": "register",
    "getAgent": "get_agent",
    "setState": "report_state",
    "liftQuarantine": "lift_quarantine",
    "listAgents": "list_agents",
    "getAgentStats": "get_agent_stats",
    "getStateHistory": "get_state_history",
    "startSession": "trigger",
    "listSessions": "list_sessions",
    "getSession": "get_session",
    "getSessionTrace": "get_session_trace",
    "getTraceBySession": "get_trace",
    "cancelSession": "cancel",
    "runTask": "run_task",
    "listTasks": "list_tasks",
    "leaseNextTask": "next_task",
    "reportTaskResult": "report_result",
    "taskHeartbeat": "heartbeat",
}
ITERATORS = {
    "listKeys": "iter_keys",
    "listWorkflows": "iter_workflows",
    "listAgents": "iter_agents",
    "getStateHistory": "iter_state_history",
    "listSessions": "iter_sessions",
    "listTasks": "iter_tasks",
}


def _operations() -> dict[str, dict[str, object]]:
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    return {
        operation["operationId"]: operation
        for path in spec["paths"].values()
        for method, operation in path.items()
        if method in {"get", "put", "post", "delete", "patch"}
    }


def _takes_next_token(operation: dict[str, object]) -> bool:
    parameters = operation.get("parameters") or []
    assert isinstance(parameters, list)
    return any(isinstance(p, dict) and p.get("name") == "next_token" for p in parameters)


def test_every_operation_of_the_spec_has_a_method_and_no_method_names_a_gone_one() -> None:
    assert sorted(_operations()) == sorted(METHODS)


@pytest.mark.parametrize("client", [OpsCore, AsyncOpsCore])
def test_each_client_has_every_method_and_takes_a_timeout_on_each(client: type) -> None:
    for operation_id, name in METHODS.items():
        method = getattr(client, name, None)
        assert callable(method), f"{client.__name__} has no {name} for {operation_id}"
        assert "timeout" in inspect.signature(method).parameters, f"{client.__name__}.{name} takes no timeout"
        assert inspect.iscoroutinefunction(method) == (client is AsyncOpsCore)


def test_every_paged_operation_has_an_iterator_on_both_clients() -> None:
    paged = sorted(operation_id for operation_id, operation in _operations().items() if _takes_next_token(operation))
    assert paged == sorted(ITERATORS)
    for name in ITERATORS.values():
        assert callable(getattr(OpsCore, name))
        assert callable(getattr(AsyncOpsCore, name))


def test_both_clients_have_the_same_public_methods_with_the_same_parameters() -> None:
    def public(client: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in vars(client).items()
            if callable(member) and re.match(r"^[a-z]", name) and name != "close"
        }

    assert public(OpsCore) == public(AsyncOpsCore)
