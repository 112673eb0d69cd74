"""`opscore keys create|list|revoke|rotate --stack/--table`: an operator manages the keys of a deployed stack with
their own AWS credentials (the first admin key among them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from opscore import wiring
from opscore_tools import stack
from opscore_tools.cli import app

runner = CliRunner()


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    """DescribeStacks answered by a Stubber (one exact call, including its error); DynamoDB stays on moto."""
    client = boto3.client("cloudformation")
    stubber = Stubber(client)
    real_client = boto3.client
    monkeypatch.setattr(
        stack.boto3,
        "client",
        lambda service, **kw: client if service == "cloudformation" else real_client(service, **kw),
    )
    stubber.activate()
    return stubber


def make_stack(stubber: Stubber, table_name: str) -> None:
    """A stack that reports its table the way template.yaml's TableName output does."""
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "opscore-prod",
                    "CreationTime": "2026-11-01T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": [{"OutputKey": "TableName", "OutputValue": table_name}],
                }
            ]
        },
        {"StackName": "opscore-prod"},
    )


def test_create_an_admin_key_in_a_stacks_table_then_revoke_it(aws: Any, cloudformation: Stubber) -> None:
    table = wiring.settings().table_name
    make_stack(cloudformation, table)

    created = runner.invoke(app, ["keys", "create", "--stack", "opscore-prod", "--role", "admin"])
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    principal = wiring.api_keys().authenticate(key["api_key"])
    assert principal is not None
    assert principal.role.value == "admin"

    revoked = runner.invoke(app, ["keys", "revoke", key["key_id"], "--table", table])
    assert revoked.exit_code == 0, revoked.output
    assert wiring.api_keys().authenticate(key["api_key"]) is None


def test_create_an_agent_key_by_table_name(aws: Any) -> None:
    result = runner.invoke(app, ["keys", "create", "--table", wiring.settings().table_name, "--agent-id", "agent-7"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["agent_id"] == "agent-7"


def test_clear_errors_for_missing_targets_and_bad_requests(
    aws: Any, cloudformation: Stubber, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloudformation.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id nope does not exist", expected_params={"StackName": "nope"}
    )
    monkeypatch.chdir(tmp_path)  # a checkout with no local runtime running
    for name in ("OPSCORE_URL", "OPSCORE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    neither = runner.invoke(app, ["keys", "create", "--role", "admin"])
    assert (neither.exit_code, "--stack" in neither.output) == (1, True), "no API to reach, and no stack named"
    both = runner.invoke(app, ["keys", "list", "--stack", "s", "--table", "t"])
    assert both.exit_code == 2
    url_and_table = runner.invoke(app, ["keys", "list", "--table", "t", "--url", "http://127.0.0.1:1"])
    assert url_and_table.exit_code == 2
    no_stack = runner.invoke(app, ["keys", "create", "--stack", "nope", "--role", "admin"])
    assert no_stack.exit_code == 1
    assert "nope" in no_stack.output
    agent_without_id = runner.invoke(app, ["keys", "create", "--table", "t", "--role", "agent"])
    assert agent_without_id.exit_code == 2
    unknown = runner.invoke(app, ["keys", "revoke", "00000000000000ff", "--table", wiring.settings().table_name])
    assert (unknown.exit_code, "no API key" in unknown.output) == (1, True)


def test_list_and_rotate_in_a_stacks_table(aws: Any, cloudformation: Stubber) -> None:
    table = wiring.settings().table_name
    created = json.loads(runner.invoke(app, ["keys", "create", "--table", table, "--agent-id", "a7"]).stdout)
    expiring = runner.invoke(app, ["keys", "create", "--table", table, "--role", "admin", "--expires-in", "1d"])
    assert expiring.exit_code == 0, expiring.output
    assert json.loads(expiring.stdout)["expires_at"] is not None

    rotated = runner.invoke(app, ["keys", "rotate", created["key_id"], "--table", table, "--old-key-expires-in", "1h"])
    assert rotated.exit_code == 0, rotated.output
    new = json.loads(rotated.stdout)
    assert (new["rotated_from"], new["agent_id"]) == (created["key_id"], "a7")
    assert wiring.api_keys().authenticate(new["api_key"]) is not None
    assert wiring.api_keys().authenticate(created["api_key"]) is not None, "within its grace period"

    listed = runner.invoke(app, ["keys", "list", "--table", table, "--agent-id", "a7", "--json"])
    assert listed.exit_code == 0, listed.output
    items = json.loads(listed.stdout)
    assert [item["key_id"] for item in items] == [created["key_id"], new["key_id"]]
    assert items[0]["expires_at"] is not None
    assert created["api_key"] not in listed.stdout
    shown = runner.invoke(app, ["keys", "list", "--table", table])
    assert shown.exit_code == 0
    assert created["key_id"] in shown.stdout
    assert "3 keys" in shown.stdout

    runner.invoke(app, ["keys", "revoke", created["key_id"], "--table", table])
    again = runner.invoke(app, ["keys", "rotate", created["key_id"], "--table", table])
    assert (again.exit_code, "revoked" in again.output) == (1, True)
    bad = runner.invoke(
        app, ["keys", "rotate", new["key_id"], "--table", table, "--expires-at", "2020-01-01T00:00:00Z"]
    )
    assert (bad.exit_code, "expires_at" in bad.output) == (2, True)


class Captured:
    """Matches any parameter value in a Stubber's expected_params, and keeps it."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __eq__(self, other: object) -> bool:
        self.values.append(other)
        return True

    __hash__ = None  # type: ignore[assignment]


STACK_ARN = "arn:aws:cloudformation:us-east-1:123456789012:stack/opscore-prod/5f1e2d3c-0000-4000-8000-000000000000"


@pytest.mark.parametrize("given", ["opscore-prod", STACK_ARN])
def test_a_key_made_with_stack_gets_its_api_key_in_the_stacks_usage_plan(
    aws: Any, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    from botocore.stub import ANY

    from opscore.keys.usage import usage_identifier

    table = wiring.settings().table_name
    cloudformation, apigateway = boto3.client("cloudformation"), boto3.client("apigateway")
    real_client = boto3.client
    clients = {"cloudformation": cloudformation, "apigateway": apigateway}
    monkeypatch.setattr(
        stack.boto3,
        "client",
        lambda service, **kw: clients[service] if service in clients else real_client(service, **kw),
    )
    outputs = [
        {"OutputKey": "TableName", "OutputValue": table},
        {"OutputKey": "PerKeyUsagePlanName", "OutputValue": "opscore-prod-per-key"},
    ]
    described = {
        "Stacks": [
            {
                "StackName": "opscore-prod",
                "CreationTime": "2026-11-01T00:00:00Z",
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": outputs,
            }
        ]
    }
    with Stubber(cloudformation) as stacks, Stubber(apigateway) as gateway:
        stacks.add_response("describe_stacks", described, {"StackName": given})
        value = Captured()
        gateway.add_response(
            "create_api_key", {"id": "k1"}, {"name": ANY, "value": value, "enabled": True, "description": ANY}
        )
        gateway.add_response("get_usage_plans", {"items": [{"id": "p1", "name": "opscore-prod-per-key"}]}, {})
        gateway.add_response(
            "create_usage_plan_key", {"id": "k1"}, {"usagePlanId": "p1", "keyId": "k1", "keyType": "API_KEY"}
        )
        created = runner.invoke(app, ["keys", "create", "--stack", given, "--agent-id", "a9"])
        assert created.exit_code == 0, created.output
        gateway.assert_no_pending_responses()
    key = json.loads(created.stdout)
    assert wiring.api_keys().authenticate(key["api_key"]) is not None
    # The value the authorizer names (its namespace is AWS::StackName), whether the stack was given by name or ARN.
    assert value.values == [usage_identifier("opscore-prod", key["key_id"])]


def described_stack(outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "opscore-prod",
                "CreationTime": "2026-11-01T00:00:00Z",
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": name, "OutputValue": value} for name, value in outputs.items()],
            }
        ]
    }


def test_a_key_made_with_table_alone_is_made_with_a_warning_that_the_stack_will_refuse_it(aws: Any) -> None:
    table = wiring.settings().table_name
    created = runner.invoke(app, ["keys", "create", "--table", table, "--agent-id", "a1"])
    assert created.exit_code == 0, created.output
    assert "sync-usage" in created.stderr
    assert "403" in created.stderr
    rotated = runner.invoke(app, ["keys", "rotate", json.loads(created.stdout)["key_id"], "--table", table])
    assert (rotated.exit_code, "sync-usage" in rotated.stderr) == (0, True)


def test_sync_usage_gives_every_working_key_its_api_key_without_changing_a_secret(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.stub import ANY

    from opscore.keys.usage import usage_identifier

    table = wiring.settings().table_name
    made = [
        json.loads(runner.invoke(app, ["keys", "create", "--table", table, *args]).stdout)
        for args in (["--role", "admin"], ["--agent-id", "a1"], ["--agent-id", "a2"])
    ]
    runner.invoke(app, ["keys", "revoke", made[2]["key_id"], "--table", table])
    # A key stored before the Keys index existed is found too (the migration does not read the index).
    key = {"PK": {"S": f"KEY#{made[1]['key_id']}"}, "SK": {"S": "KEY"}}
    aws.update_item(TableName=table, Key=key, UpdateExpression="REMOVE keys_list, keys_sk")

    cloudformation, apigateway = boto3.client("cloudformation"), boto3.client("apigateway")
    real_client = boto3.client
    clients = {"cloudformation": cloudformation, "apigateway": apigateway}
    monkeypatch.setattr(stack.boto3, "client", lambda service, **kw: clients.get(service) or real_client(service, **kw))
    outputs = {"TableName": table, "PerKeyUsagePlanName": "opscore-prod-per-key"}
    values = Captured()
    with Stubber(cloudformation) as stacks, Stubber(apigateway) as gateway:
        stacks.add_response("describe_stacks", described_stack(outputs), {"StackName": "opscore-prod"})
        for n in range(2):
            gateway.add_response(
                "create_api_key", {"id": f"k{n}"}, {"name": ANY, "value": values, "enabled": True, "description": ANY}
            )
            if n == 0:
                gateway.add_response("get_usage_plans", {"items": [{"id": "p1", "name": "opscore-prod-per-key"}]}, {})
            gateway.add_response(
                "create_usage_plan_key", {"id": f"k{n}"}, {"usagePlanId": "p1", "keyId": f"k{n}", "keyType": "API_KEY"}
            )
        synced = runner.invoke(app, ["keys", "sync-usage", "--stack", "opscore-prod"])
        assert synced.exit_code == 0, synced.output
        gateway.assert_no_pending_responses()
    assert sorted(values.values) == sorted(usage_identifier("opscore-prod", k["key_id"]) for k in made[:2])
    assert "2 keys in usage plan opscore-prod-per-key; 1 revoked or expired skipped" in synced.stdout
    for working in made[:2]:
        assert wiring.api_keys().authenticate(working["api_key"]) is not None, "the same secret works on"


def test_sync_usage_needs_a_stack_with_per_key_limits(aws: Any, cloudformation: Stubber) -> None:
    outputs = {"TableName": wiring.settings().table_name}
    cloudformation.add_response("describe_stacks", described_stack(outputs), {"StackName": "opscore-prod"})
    refused = runner.invoke(app, ["keys", "sync-usage", "--stack", "opscore-prod"])
    assert (refused.exit_code, "PerKeyUsagePlanName" in refused.output) == (1, True)
    missing = runner.invoke(app, ["keys", "sync-usage"])
    assert missing.exit_code == 2, "--stack is required"
