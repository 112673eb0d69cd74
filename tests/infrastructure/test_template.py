"""template.yaml: what deploys, checked as data (sam validate --lint runs in `make test` as well), and the API
description that must match it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from opscore_tools.local.template import Template, _CfnLoader
from tests.conftest import REPO, TEMPLATE_PATH


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE_PATH.read_text(), Loader=_CfnLoader)  # noqa: S506
    return loaded


def resources(document: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: resource for name, resource in document["Resources"].items() if resource["Type"] == kind}


def test_functions_and_layer_share_runtime_and_architecture(document: dict[str, Any]) -> None:
    globals_ = document["Globals"]["Function"]
    assert (globals_["Runtime"], globals_["Architectures"], globals_["Tracing"]) == ("python3.13", ["arm64"], "Active")
    for function in resources(document, "AWS::Serverless::Function").values():
        assert "Runtime" not in function["Properties"]
        assert "Architectures" not in function["Properties"]
    (layer,) = resources(document, "AWS::Serverless::LayerVersion").values()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_every_function_has_a_log_group_with_retention(document: dict[str, Any]) -> None:
    groups = resources(document, "AWS::Logs::LogGroup").values()
    named = {group["Properties"]["LogGroupName"]["Fn::Sub"] for group in groups}
    for name in resources(document, "AWS::Serverless::Function"):
        assert f"/aws/lambda/${{{name}}}" in named
    assert all(group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for group in groups)


def test_table_is_on_demand_recoverable_encrypted_and_expiring(document: dict[str, Any]) -> None:
    table = resources(document, "AWS::DynamoDB::Table")["OpsCoreTable"]
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["DeletionPolicy"] == "Retain"
    indexes = {index["IndexName"]: index for index in properties["GlobalSecondaryIndexes"]}
    keys = {name: [key["AttributeName"] for key in index["KeySchema"]] for name, index in indexes.items()}
    assert keys == {
        "AgentSessions": ["session_agent", "session_id"],
        "AgentTasks": ["agent_tasks", "agent_tasks_sk"],
        "Deadlines": ["deadline_kind", "deadline_at"],
        "Agents": ["agents_shard", "agents_sk"],
        "Keys": ["keys_list", "keys_sk"],
    }
    assert "key_hash" not in indexes["Keys"]["Projection"]["NonKeyAttributes"], "a listing never reads a key's hash"
    # Every index projects what its readers use, never the whole item (task inputs and histories stay out).
    assert all(index["Projection"]["ProjectionType"] == "INCLUDE" for index in indexes.values())


def test_idempotency_records_expire_in_their_own_table(document: dict[str, Any]) -> None:
    properties = resources(document, "AWS::DynamoDB::Table")["IdempotencyTable"]["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True


TABLE = {"Fn::GetAtt": ["OpsCoreTable", "Arn"]}
KEY_PREFIXES = {"KEY#*", "AGENT#*", "WORKFLOW#*", "WORKFLOWS", "SESSION#*"}
# Step Functions' task-token calls name no resource, so IAM takes no narrower Resource for them.
TOKEN_ACTIONS = {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}


APIGATEWAY = "arn:${AWS::Partition}:apigateway:${AWS::Region}::"
APIGATEWAY_PATHS = ["/apikeys", "/apikeys/*", "/usageplans", "/usageplans/*/keys"]
RUNNER_ARN = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${RunnerNamePrefix}-*"
RUNNER_EXECUTIONS = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${RunnerNamePrefix}-*:*"
# Actions IAM cannot scope to a resource: task tokens, and the log delivery of a state machine being created.
UNSCOPED_ACTIONS = TOKEN_ACTIONS | {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}


def statements(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every policy statement of the functions and of the runners' role, with whose it is."""
    found = [
        (name, statement)
        for name, function in resources(document, "AWS::Serverless::Function").items()
        for policy in function["Properties"].get("Policies", [])
        for statement in policy["Statement"]
    ]
    for name, role in resources(document, "AWS::IAM::Role").items():
        found += [(name, s) for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    return found


def test_policies_are_scoped_to_their_resources_and_key_prefixes(document: dict[str, Any]) -> None:
    for name, statement in statements(document):
        actions = statement["Action"]
        resource = statement["Resource"]
        assert all("*" not in action for action in actions), name
        assert "dynamodb:Scan" not in actions, "every access pattern is a Query or GetItem"
        if resource == TABLE:
            prefixes = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            assert set(prefixes) <= KEY_PREFIXES, name
        elif resource == "*":
            assert set(actions) <= UNSCOPED_ACTIONS, name
        elif actions == ["lambda:InvokeFunction"]:
            # Only the dispatch function is invoked: to serve an agent's queue, or by the runners' Task states.
            invoked = resource if isinstance(resource, list) else [resource]
            assert invoked[0] == {"Fn::GetAtt": ["DispatchFunction", "Arn"]}, name
            assert invoked[1:] in ([], [{"Fn::Sub": "${DispatchFunction.Arn}:*"}]), name
        elif actions == ["iam:PassRole"]:
            # Only the runners' role, and only to Step Functions.
            assert resource == {"Fn::GetAtt": ["SessionRunnerRole", "Arn"]}, name
            assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "states.amazonaws.com"}}, name
        elif any(action.startswith("apigateway:") for action in actions):
            # Only the keys function, on API keys and usage plans' keys (each key's per-key limit).
            assert name == "KeysFunction"
            assert set(actions) <= {"apigateway:GET", "apigateway:POST", "apigateway:DELETE"}
            assert resource == [{"Fn::Sub": APIGATEWAY + path} for path in APIGATEWAY_PATHS], name
        elif any(action.startswith("states:") for action in actions):
            # Session runners and their executions, by this stack's name prefix only.
            assert resource in ({"Fn::Sub": RUNNER_ARN}, {"Fn::Sub": RUNNER_EXECUTIONS}), name
            assert set(actions) <= {"states:CreateStateMachine", "states:StartExecution", "states:StopExecution"}
        else:
            assert all(action.split(":")[0] == "dynamodb" for action in actions), name


def test_session_runners_are_generated_not_declared_and_run_as_one_narrow_role(document: dict[str, Any]) -> None:
    assert resources(document, "AWS::Serverless::StateMachine") == {}
    assert resources(document, "AWS::StepFunctions::StateMachine") == {}
    assert sorted(path.name for path in (REPO / "statemachines").iterdir()) == ["README.md"]
    (role,) = resources(document, "AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"] == {"Fn::Sub": RUNNER_ARN}
    granted = {action for _name, s in statements(document) if _name == "SessionRunnerRole" for action in s["Action"]}
    assert granted - UNSCOPED_ACTIONS == {"lambda:InvokeFunction", "dynamodb:UpdateItem"}
    prefix = document["Parameters"]["RunnerNamePrefix"]
    assert prefix["AllowedPattern"] == "^[A-Za-z0-9_-]{1,24}$", "a name of 80 characters leaves room for the hash"


def test_no_key_or_secret_is_baked_into_parameters_or_outputs(document: dict[str, Any]) -> None:
    text = yaml.safe_dump({"Parameters": document["Parameters"], "Outputs": document["Outputs"]}).lower()
    assert "opsk_" not in text
    assert "apikey" not in text.replace("-", "").replace("_", "")


def test_every_route_except_health_needs_the_authorizer(template: Template) -> None:
    assert {(route.method, route.path) for route in template.routes if not route.authorized} == {
        ("GET", "/v1/opscore/health")
    }
    assert template.authorizer is not None
    assert template.authorizer.identity_headers == ("X-API-Key",)
    assert all(route.path.startswith("/v1/opscore/") for route in template.routes)


def test_every_function_has_a_handler_module_and_sample_events(template: Template) -> None:
    for function in template.functions.values():
        assert (function.code_dir / f"{function.module}.py").is_file()
        folder = REPO / "events" / function.code_dir.name
        assert list(folder.glob("*.json")), f"events/{function.code_dir.name}/ has no sample event"


def test_openapi_describes_exactly_the_templates_routes(template: Template) -> None:
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    documented = {
        (method.upper(), "/v1/opscore" + path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "put", "post", "delete", "patch")
    }
    served = {(route.method, route.path) for route in template.routes}
    assert documented == served
    public = {
        (method.upper(), "/v1/opscore" + path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and operation.get("security") == []
    }
    assert public == {(route.method, route.path) for route in template.routes if not route.authorized}


def test_every_function_follows_the_stacks_tracing_mode(document: dict[str, Any], template: Template) -> None:
    variables = document["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["OPSCORE_TRACING"] == {"Ref": "TracingMode"}
    assert document["Parameters"]["TracingMode"]["AllowedValues"] == ["service", "sdk"]
    assert {function.environment["OPSCORE_TRACING"] for function in template.functions.values()} == {"service"}


def test_each_key_is_limited_by_a_usage_plan_the_authorizer_names_it_in(document: dict[str, Any]) -> None:
    api = document["Resources"]["OpsCoreApi"]["Properties"]
    assert api["ApiKeySourceType"] == "AUTHORIZER", "clients never send an API Gateway API key"
    assert api["Auth"]["ApiKeyRequired"] is True
    (plan,) = resources(document, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {
        "RateLimit": {"Ref": "PerKeyRateLimit"},
        "BurstLimit": {"Ref": "PerKeyBurstLimit"},
    }
    assert plan["Properties"]["UsagePlanName"] == {"Fn::Sub": "${AWS::StackName}-per-key"}
    keys = document["Resources"]["KeysFunction"]["Properties"]["Environment"]["Variables"]
    assert keys["USAGE_PLAN_NAME"] == plan["Properties"]["UsagePlanName"]
    assert document["Outputs"]["PerKeyUsagePlanName"]["Value"] == plan["Properties"]["UsagePlanName"]
    health = document["Resources"]["HealthFunction"]["Properties"]["Events"]["Health"]["Properties"]["Auth"]
    assert health == {"Authorizer": "NONE", "ApiKeyRequired": False}
    parameters = document["Parameters"]
    assert parameters["PerKeyRateLimit"]["Default"] < parameters["ThrottlingRateLimit"]["Default"]


def test_the_authorizer_cache_ttl_is_a_parameter(document: dict[str, Any]) -> None:
    api = document["Resources"]["OpsCoreApi"]["Properties"]
    identity = api["Auth"]["Authorizers"]["ApiKeyAuthorizer"]["Identity"]
    assert identity["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheTtlSeconds"}
    ttl = document["Parameters"]["AuthorizerCacheTtlSeconds"]
    assert (ttl["Default"], ttl["MinValue"], ttl["MaxValue"]) == (60, 0, 3600)
