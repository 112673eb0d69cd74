"""`opscore keys create|revoke`: an operator bootstraps keys of a deployed stack with their own AWS credentials."""

from __future__ import annotations

import json
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


def test_clear_errors_for_missing_targets_and_bad_requests(aws: Any, cloudformation: Stubber) -> None:
    cloudformation.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id nope does not exist", expected_params={"StackName": "nope"}
    )
    neither = runner.invoke(app, ["keys", "create", "--role", "admin"])
    assert (neither.exit_code, "--stack" in neither.output) == (2, True)
    no_stack = runner.invoke(app, ["keys", "create", "--stack", "nope", "--role", "admin"])
    assert no_stack.exit_code == 1
    assert "nope" in no_stack.output
    agent_without_id = runner.invoke(app, ["keys", "create", "--table", "t", "--role", "agent"])
    assert agent_without_id.exit_code == 2
    unknown = runner.invoke(app, ["keys", "revoke", "00000000000000ff", "--table", wiring.settings().table_name])
    assert (unknown.exit_code, "no API key" in unknown.output) == (1, True)
