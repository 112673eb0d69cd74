"""The local runtime (opscore_tools.local): it reads template.yaml as SAM would, routes and authorizes like API
Gateway, and finds the function a Lambda invocation names."""

from __future__ import annotations

from pathlib import Path

import pytest

from opscore_tools.local.gateway import policy_allows
from opscore_tools.local.runner import function_name
from opscore_tools.local.template import Template, TemplateError, load_template
from tests.conftest import TEMPLATE_PATH

BASE = "arn:aws:execute-api:us-east-1:111122223333:abc123/prod"


def test_routes_match_paths_like_api_gateway(template: Template) -> None:
    by_path = {route.path: route for route in template.routes}
    agent = by_path["/v1/opscore/agent/{agentId}"]
    assert agent.match("/v1/opscore/agent/org:a-1.x") == {"agentId": "org:a-1.x"}
    assert agent.match("/v1/opscore/agent/a/state") is None
    assert agent.match("/v1/opscore/agent/") is None


def test_template_loader_refuses_what_it_cannot_resolve(tmp_path: Path) -> None:
    bad = TEMPLATE_PATH.read_text().replace("TABLE_NAME: !Ref OpsCoreTable", "TABLE_NAME: !ImportValue shared-table")
    (tmp_path / "template.yaml").write_text(bad)
    with pytest.raises(Exception, match="cannot resolve"):
        load_template(tmp_path / "template.yaml")


def test_the_local_runtime_resolves_what_the_runners_are_created_with(template: Template) -> None:
    assert template.state_machines == [], "session runners are generated per workflow, not declared"
    environment = template.functions["SessionControlFunction"].environment
    assert environment["RUNNER_MACHINE_PREFIX"] == "arn:aws:states:us-east-1:123456789012:stateMachine:opscore"
    assert environment["RUNNER_ROLE_ARN"] == "arn:aws:iam::123456789012:role/opscore-local-SessionRunnerRole"
    assert environment["RUNNER_LOG_GROUP_ARN"].startswith("arn:aws:logs:us-east-1:123456789012:log-group:")
    assert environment["DISPATCH_FUNCTION_ARN"] == "arn:aws:lambda:us-east-1:123456789012:function:DispatchFunction"
    assert environment["IDEMPOTENCY_TABLE"] == "opscore-local-IdempotencyTable"
    assert (
        template.functions["WorkflowsFunction"].environment["RUNNER_MACHINE_PREFIX"]
        == (environment["RUNNER_MACHINE_PREFIX"])
    )


def test_the_local_runtime_runs_the_sweep_on_the_templates_schedule(template: Template, tmp_path: Path) -> None:
    assert [(schedule.function, schedule.every_seconds) for schedule in template.schedules] == [("SweepFunction", 60)]
    cron = (TEMPLATE_PATH.read_text()).replace("rate(1 minute)", "cron(0 * * * ? *)")
    (tmp_path / "template.yaml").write_text(cron)
    with pytest.raises(TemplateError, match="rate"):
        load_template(tmp_path / "template.yaml")


def test_deny_wins_over_allow() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": f"{BASE}/*"},
            {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": f"{BASE}/POST/*"},
        ]
    }
    assert policy_allows(policy, f"{BASE}/GET/v1/opscore/health")
    assert not policy_allows(policy, f"{BASE}/POST/v1/opscore/keys")


def test_the_local_lambda_hook_finds_the_function_by_name_or_arn() -> None:
    arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3ADispatchFunction"
    assert function_name(f"/2015-03-31/functions/{arn}/invocations") == "DispatchFunction"
    assert function_name("/2015-03-31/functions/DispatchFunction/invocations") == "DispatchFunction"
