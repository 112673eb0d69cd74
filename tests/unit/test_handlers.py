"""Each handler imported as Lambda imports it (its cold start), held against what template.yaml gives its function:
the settings it requires, and the routes it declares."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
from types import ModuleType
from typing import Any

import pytest
import yaml

from opscore.core.settings import MissingSettings, Variable
from opscore_tools.local.template import Function, Template, _CfnLoader, load_template
from tests.conftest import TEMPLATE_PATH

TEMPLATE = load_template(TEMPLATE_PATH)
FUNCTIONS = sorted(TEMPLATE.functions)
_loaded = itertools.count()


def start(function: Function, monkeypatch: pytest.MonkeyPatch, without: str | None = None) -> ModuleType:
    """Import the function's handler afresh with exactly its template environment (less `without`)."""
    for variable in Variable:
        monkeypatch.delenv(variable, raising=False)
    for name, value in function.environment.items():
        if name != without:
            monkeypatch.setenv(name, value)
    path = function.code_dir / f"{function.module.replace('.', '/')}.py"
    spec = importlib.util.spec_from_file_location(f"cold_start_{function.logical_id}_{next(_loaded)}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def own_environment(logical_id: str) -> set[str]:
    """The variables a function's own Environment sets, beyond the Globals every function gets."""
    document: dict[str, Any] = yaml.load(TEMPLATE_PATH.read_text(), Loader=_CfnLoader)  # noqa: S506
    properties = document["Resources"][logical_id]["Properties"]
    return set(properties.get("Environment", {}).get("Variables", {}))


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_template_gives_each_function_every_variable_its_handler_requires(
    logical_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = TEMPLATE.functions[logical_id]
    required = start(function, monkeypatch).SETTINGS
    assert set(required) <= set(function.environment), f"{logical_id}: template.yaml lacks {required}"
    # and the other way: a variable given to this function alone is there because its handler needs it
    settings_variables = {variable.value for variable in Variable}
    assert own_environment(logical_id) & settings_variables <= set(required)


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_a_function_without_a_variable_it_requires_fails_to_start_naming_it(
    logical_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = TEMPLATE.functions[logical_id]
    for variable in start(function, monkeypatch).SETTINGS:
        with pytest.raises(MissingSettings, match=f"^{variable} is not set for this function$"):
            start(function, monkeypatch, without=variable)


@pytest.mark.parametrize("logical_id", ["SessionControlFunction", "WorkflowsFunction"])
def test_the_functions_that_create_and_start_runners_need_the_runners_settings(
    logical_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = TEMPLATE.functions[logical_id]
    for variable in ("RUNNER_MACHINE_PREFIX", "RUNNER_ROLE_ARN", "RUNNER_LOG_GROUP_ARN", "DISPATCH_FUNCTION_ARN"):
        with pytest.raises(MissingSettings, match=f"{variable} is not set"):
            start(function, monkeypatch, without=variable)


def test_the_session_control_function_needs_the_idempotency_table(monkeypatch: pytest.MonkeyPatch) -> None:
    function = TEMPLATE.functions["SessionControlFunction"]
    with pytest.raises(MissingSettings, match="IDEMPOTENCY_TABLE is not set"):
        start(function, monkeypatch, without="IDEMPOTENCY_TABLE")


def test_a_malformed_value_fails_the_start_as_well(monkeypatch: pytest.MonkeyPatch) -> None:
    function = TEMPLATE.functions["RegistrationFunction"]
    environment = {**function.environment, "HISTORY_RETENTION_DAYS": "a month"}
    with pytest.raises(ValueError, match="history_retention_days"):
        start(dataclasses.replace(function, environment=environment), monkeypatch)


def test_the_health_check_starts_with_no_settings_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    health = start(dataclasses.replace(TEMPLATE.functions["HealthFunction"], environment={}), monkeypatch)
    assert not health.SETTINGS


@pytest.mark.parametrize("logical_id", sorted({route.function for route in TEMPLATE.routes}))
def test_each_handler_declares_exactly_its_template_routes_and_who_may_call_them(
    logical_id: str, template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = start(template.functions[logical_id], monkeypatch).api
    declared = {(route.method, route.rule, route.allow.value != "anyone") for route in api.routes}
    in_template = {
        (route.method, _powertools_rule(route.path), route.authorized)
        for route in template.routes
        if route.function == logical_id
    }
    assert declared == in_template


def _powertools_rule(path: str) -> str:
    return path.replace("{", "<").replace("}", ">")


# Who may call each route: the access matrix of the README and docs/openapi.yaml, one row per route.
ACCESS = {
    ("GET", "/health"): "anyone",
    ("PUT", "/agent/{agentId}"): "path_agent",
    ("POST", "/agent/{agentId}/state"): "path_agent",
    ("DELETE", "/agent/{agentId}/quarantine"): "admin",
    ("GET", "/agent/{agentId}"): "path_agent",
    ("GET", "/agent/{agentId}/state/history"): "path_agent",
    ("GET", "/agent/{agentId}/sessions"): "path_agent",
    ("GET", "/agent/{agentId}/sessions/{sessionId}"): "path_agent",
    ("GET", "/agent/{agentId}/sessions/{sessionId}/trace"): "path_agent",
    ("GET", "/sessions/{sessionId}/trace"): "admin",
    ("GET", "/agent/{agentId}/tasks"): "path_agent",
    ("GET", "/agent/{agentId}/stats"): "path_agent",
    ("GET", "/agents"): "admin",
    ("POST", "/agent/{agentId}/tasks/next"): "path_agent",
    ("POST", "/agent/{agentId}/tasks/{taskId}/result"): "path_agent",
    ("POST", "/agent/{agentId}/tasks/{taskId}/heartbeat"): "path_agent",
    ("POST", "/keys"): "admin",
    ("GET", "/keys"): "admin",
    ("POST", "/keys/{keyId}/rotate"): "admin",
    ("DELETE", "/keys/{keyId}"): "admin",
    ("POST", "/workflows"): "admin",
    ("GET", "/workflows"): "admin",
    ("GET", "/workflows/{workflowId}"): "admin",
    ("POST", "/agent/{agentId}/workflow"): "admin",
    ("POST", "/agent/{agentId}/tasks"): "admin",
    ("POST", "/agent/{agentId}/sessions/{sessionId}/cancel"): "admin",
}


def test_every_route_declares_the_access_the_matrix_gives_it(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared = {}
    for logical_id in sorted({route.function for route in template.routes}):
        for route in start(template.functions[logical_id], monkeypatch).api.routes:
            path = route.rule.removeprefix("/v1/opscore").replace("<", "{").replace(">", "}")
            declared[(route.method, path)] = route.allow.value
    assert declared == ACCESS
    # The authorizer's policy lets an agent key through to any path under /agent/ spelled with a '%' (opscore.api.
    # access): every route there must check the caller itself.
    assert all(allow != "anyone" for (_, path), allow in declared.items() if path.startswith("/agent/"))


@pytest.mark.parametrize("logical_id", sorted({route.function for route in TEMPLATE.routes}))
def test_each_route_takes_a_body_exactly_when_the_openapi_document_gives_it_one(
    logical_id: str, template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = yaml.safe_load((TEMPLATE_PATH.parent / "docs" / "openapi.yaml").read_text())
    api = start(template.functions[logical_id], monkeypatch).api
    declared = {(route.method, route.path): route.body for route in api.routes}
    documented = {
        (method.upper(), path): "requestBody" in operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if (method.upper(), path) in declared
    }
    assert declared == documented, "a route without a requestBody must refuse a body (Api.post(..., body=False))"
