"""template.yaml: what deploys, checked as data (`make test` also runs sam validate --lint and checkov on it: here,
that it does, and what checkov may be told to skip), and the API description that must match it."""

from __future__ import annotations

import json
import re
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
# What each apigateway action may reach: API keys (whose ids API Gateway draws, so no ARN names one in advance), the
# usage-plan listing (to find the plan by name), and only the stack's own per-key plan's keys.
APIGATEWAY_GRANTS = {
    ("apigateway:GET", "/apikeys"),
    ("apigateway:POST", "/apikeys"),
    ("apigateway:DELETE", "/apikeys/*"),
    ("apigateway:GET", "/usageplans"),
    ("apigateway:POST", "/usageplans/${PerKeyUsagePlan}/keys"),
}
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
        policies = role["Properties"].get("Policies", [])
        found += [(name, s) for policy in policies for s in policy["PolicyDocument"]["Statement"]]
    for name, policy in resources(document, "AWS::IAM::Policy").items():
        found += [(name, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
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
            # Only the keys function, on API keys and its own usage plan's keys (each key's per-key limit).
            assert name in {"KeysFunction", "KeysUsagePlanPolicy"}, name
            assert set(resource) == {"Fn::Sub"}, name
            path = resource["Fn::Sub"].removeprefix(APIGATEWAY)
            assert {(action, path) for action in actions} <= APIGATEWAY_GRANTS, name
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
    roles = resources(document, "AWS::IAM::Role")
    assert set(roles) == {"SessionRunnerRole", "ApiGatewayCloudWatchRole"}
    (trust,) = roles["SessionRunnerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
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


# ---------------------------------------------------------------- API access log

# What each access log line must tell: the request, who made it (the key the authorizer resolved), from where, and
# how it ended, also when API Gateway refused it itself (no key, a refused key, a denied route, a throttle).
ACCESS_LOG_FIELDS = {
    "request_id": "$context.requestId",
    "source_ip": "$context.identity.sourceIp",
    "http_method": "$context.httpMethod",
    "resource_path": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "principal_id": "$context.authorizer.principalId",
    "key_id": "$context.authorizer.key_id",
    "agent_id": "$context.authorizer.agent_id",
    "authorizer_error": "$context.authorizer.error",
    "error_type": "$context.error.responseType",
    "error_message": "$context.error.message",
}


def test_the_api_writes_one_json_access_log_line_per_request(document: dict[str, Any]) -> None:
    api = document["Resources"]["OpsCoreApi"]
    setting = api["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    # A line as API Gateway writes it for a throttled request: every variable replaced by its value (a number for
    # the status, which is written unquoted so that queries compare it as one).
    line = re.sub(r"\$context\.[A-Za-z_.]+", "x", setting["Format"].replace("$context.status", "429"))
    fields = json.loads(line)
    assert fields["status"] == 429
    variables = dict(re.findall(r'"(\w+)":"?(\$context\.[A-Za-z_.]+)', setting["Format"]))
    assert variables.items() >= ACCESS_LOG_FIELDS.items()
    assert "userAgent" not in setting["Format"], "a header the client chooses could break the line's JSON"
    group = document["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_account_role_that_lets_api_gateway_log_is_set_before_the_stage_and_outlives_the_stack(
    document: dict[str, Any],
) -> None:
    assert document["Resources"]["OpsCoreApi"]["DependsOn"] == "ApiGatewayAccount"
    account = document["Resources"]["ApiGatewayAccount"]
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    role = document["Resources"]["ApiGatewayCloudWatchRole"]
    assert (role["DeletionPolicy"], role["UpdateReplacePolicy"]) == ("Retain", "Retain")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    assert "Policies" not in role["Properties"]


# ---------------------------------------------------------------- asynchronous invocations


def asynchronously_invoked(document: dict[str, Any]) -> set[str]:
    """Functions Lambda invokes asynchronously: those on a schedule, and those another function invokes (the wakes,
    InvocationType Event); the runners' role invokes the dispatch function synchronously (waitForTaskToken)."""
    found = {
        name
        for name, function in resources(document, "AWS::Serverless::Function").items()
        if any(event["Type"] == "Schedule" for event in function["Properties"].get("Events", {}).values())
    }
    for name, statement in statements(document):
        if statement["Action"] == ["lambda:InvokeFunction"] and name != "SessionRunnerRole":
            found.add(statement["Resource"]["Fn::GetAtt"][0])
    return found


def test_every_asynchronous_invocation_lambda_gives_up_on_lands_in_an_encrypted_queue(document: dict[str, Any]) -> None:
    assert asynchronously_invoked(document) == {"DispatchFunction", "SweepFunction"}
    functions = resources(document, "AWS::Serverless::Function")
    with_queue = {name for name, function in functions.items() if "DeadLetterQueue" in function["Properties"]}
    assert with_queue == asynchronously_invoked(document)
    for name in with_queue:
        assert functions[name]["Properties"]["DeadLetterQueue"] == {
            "Type": "SQS",
            "TargetArn": {"Fn::GetAtt": ["AsyncFailuresQueue", "Arn"]},
        }, name
    queue = document["Resources"]["AsyncFailuresQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == "alias/aws/sqs"
    assert queue["MessageRetentionPeriod"] == 14 * 86_400


def test_an_alarm_goes_off_while_the_queue_holds_a_message(document: dict[str, Any]) -> None:
    alarm = document["Resources"]["AsyncFailuresAlarm"]["Properties"]
    (depth,) = [query["MetricStat"] for query in alarm["Metrics"] if "MetricStat" in query]
    assert depth["Metric"]["Namespace"] == "AWS/SQS"
    assert depth["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert depth["Metric"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["AsyncFailuresQueue", "QueueName"]}}
    ]
    assert depth["Stat"] == "Maximum"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_one_sweep_runs_at_a_time_and_a_missed_tick_is_left_to_the_next(document: dict[str, Any]) -> None:
    sweep = document["Resources"]["SweepFunction"]["Properties"]
    (schedule,) = sweep["Events"].values()
    # It may run longer than its period: without a reserve of one, the next tick would start a second sweep.
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"
    assert sweep["Timeout"] > 60
    assert sweep["ReservedConcurrentExecutions"] == 1
    # A tick throttled behind a running sweep waits longer than a sweep can run, so a slow sweep never fills the queue.
    assert sweep["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    assert sweep["EventInvokeConfig"]["MaximumEventAgeInSeconds"] > sweep["Timeout"]
    others = resources(document, "AWS::Serverless::Function").values()
    assert [f for f in others if "ReservedConcurrentExecutions" in f["Properties"]] == [
        document["Resources"]["SweepFunction"]
    ], "any other reserve takes from the account's unreserved concurrency: say why in docs/security.md"


# ---------------------------------------------------------------- checkov

CHECK_ID = re.compile(r"CKV2?_AWS_\d+")
# What checkov may be told to skip, and where: everything else it finds fails `make test`.
ALLOWED_SKIPS = {
    "CKV_AWS_115": "AWS::Serverless::Function",  # function-level concurrency limit
    "CKV_AWS_116": "AWS::Serverless::Function",  # dead-letter queue
    "CKV_AWS_117": "AWS::Serverless::Function",  # inside a VPC
    "CKV_AWS_173": "AWS::Serverless::Function",  # environment encrypted with a KMS key
    "CKV_AWS_158": "AWS::Logs::LogGroup",  # log group encrypted with a KMS key
    "CKV_AWS_119": "AWS::DynamoDB::Table",  # a customer managed KMS key
    "CKV_AWS_28": "AWS::DynamoDB::Table",  # point-in-time recovery
    "CKV_AWS_120": "AWS::Serverless::Api",  # a stage response cache
}


def checkov_skips(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each resource's suppressions: check id to reason."""
    return {
        name: {skip["id"]: skip["comment"] for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])}
        for name, resource in document["Resources"].items()
    }


def test_every_checkov_suppression_sits_beside_its_resource_with_a_one_line_reason(document: dict[str, Any]) -> None:
    for name, skips in checkov_skips(document).items():
        for check, reason in skips.items():
            assert CHECK_ID.fullmatch(check), name
            assert ALLOWED_SKIPS[check] == document["Resources"][name]["Type"], f"{name} skips {check}"
            assert 20 <= len(reason) <= 200, f"{name} {check}: a reason that says why, in a line"
            assert "\n" not in reason, f"{name} {check}: one line"
    skips = checkov_skips(document)
    # What was fixed stays fixed: access logs, and a queue and a reserve where an asynchronous invocation can fail.
    for name in asynchronously_invoked(document):
        assert "CKV_AWS_116" not in skips[name], name
    assert "CKV_AWS_115" not in skips["SweepFunction"]
    assert "CKV_AWS_76" not in skips["OpsCoreApi"]


def make_rule(target: str) -> tuple[list[str], list[str]]:
    """A Makefile rule's prerequisites and recipe lines."""
    text = (REPO / "Makefile").read_text()
    found = re.search(rf"^{re.escape(target)}:([^\n#]*)(?:##[^\n]*)?\n((?:\t[^\n]*\n)*)", text, re.M)
    assert found, target
    return found[1].split(), [line.strip() for line in found[2].splitlines()]


def test_make_test_runs_checkov_on_the_template_from_its_own_pinned_environment() -> None:
    prerequisites, _ = make_rule("test")
    assert "validate" in prerequisites
    prerequisites, recipe = make_rule("validate")
    assert "$(CHECKOV_VENV)/.installed" in prerequisites
    assert any(line.startswith("$(SAM) validate --lint --template template.yaml") for line in recipe)
    assert any("$(CHECKOV) --file template.yaml --framework cloudformation" in line for line in recipe)
    install_prerequisites, install = make_rule("$(CHECKOV_VENV)/.installed")
    assert install_prerequisites[0] == "requirements-checkov.txt"
    assert any("-r requirements-checkov.txt" in line for line in install)
    lines = (REPO / "requirements-checkov.txt").read_text().splitlines()
    pins = [line for line in lines if line.strip() and not line.startswith("#")]
    assert len(pins) == 1
    assert re.fullmatch(r"checkov==\d+\.\d+\.\d+", pins[0]), "one exact version"


def test_the_keys_function_joins_only_its_own_usage_plan(document: dict[str, Any]) -> None:
    grants = {
        (action, statement["Resource"]["Fn::Sub"].removeprefix(APIGATEWAY))
        for name, statement in statements(document)
        if name in {"KeysFunction", "KeysUsagePlanPolicy"}
        for action in statement["Action"]
        if action.startswith("apigateway:")
    }
    assert grants == APIGATEWAY_GRANTS
    policy = document["Resources"]["KeysUsagePlanPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "KeysFunctionRole"}], "the keys function's generated role"
    assert "Role" not in document["Resources"]["KeysFunction"]["Properties"], "so SAM generates KeysFunctionRole"


def test_the_authorizer_may_write_only_the_attributes_of_a_keys_day_of_use(document: dict[str, Any]) -> None:
    """The authorizer faces the internet: its UpdateItem may set the day of use, never revoke, re-role or extend a
    key. Its allowed attributes are held to the write the library actually sends."""
    from opscore.keys.models import Role
    from opscore.keys.store import KeyStore, StoredKey

    (update,) = [
        statement
        for name, statement in statements(document)
        if name == "AuthorizerFunction" and "dynamodb:UpdateItem" in statement["Action"]
    ]
    assert update["Action"] == ["dynamodb:UpdateItem"]
    allowed = set(update["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"])
    assert update["Condition"]["StringEqualsIfExists"]["dynamodb:ReturnValues"] == ["NONE"]
    assert not allowed & {"revoked_at", "revoked_by", "role", "expires_at", "key_hash", "agent_id"}

    sent: list[dict[str, Any]] = []

    class Recording:
        def update_item(self, **request: Any) -> dict[str, Any]:
            sent.append(request)
            return {}

    key = StoredKey(key_id="0123456789abcdef", key_hash="0" * 64, role=Role.AGENT, agent_id="a1", revoked=False)
    KeyStore(Recording(), "table").record_use(key, "2026-12-01")  # type: ignore[arg-type]
    (request,) = sent
    expressions = request["UpdateExpression"] + " " + request["ConditionExpression"]
    named = set(re.findall(r"(?<![:#\w])([A-Za-z_][A-Za-z0-9_]*)(?=\s*(?:=|<|>|,|\)|$))", expressions))
    named -= {"AND", "OR", "NOT", "SET"}
    assert named | set(request["Key"]) == allowed, "exactly what the day-of-use write names"
    assert "ReturnValues" not in request


def test_a_key_without_its_usage_plan_entry_gets_a_forbidden_envelope_saying_what_to_run(template: Template) -> None:
    """API Gateway refuses a valid key with no API key in the usage plan as INVALID_API_KEY: without its own gateway
    response that would be DEFAULT_4XX's `bad_request` "Forbidden", which the spec's 403 does not allow."""
    from opscore_tools.local.gateway import Gateway

    response = template.gateway_responses["INVALID_API_KEY"]
    assert response.status == 403
    gateway = Gateway(template, runtime=None)  # type: ignore[arg-type]  # renders only, runs no function
    rendered = gateway._gateway_response("INVALID_API_KEY", "req-1", "Forbidden")
    assert rendered.status == 403
    body = json.loads(rendered.body)
    assert body["request_id"] == "req-1"
    assert body["error"]["code"] == "forbidden"
    assert "opscore keys sync-usage --stack" in body["error"]["message"]
