"""The authorizer's policy, evaluated the way API Gateway evaluates it."""

from __future__ import annotations

import pytest

from opscore.api.access import authorizer_response, principal_from_authorizer_context
from opscore.keys.models import Principal, Role
from opscore_tools.local.gateway import policy_allows

METHOD_ARN = "arn:aws:execute-api:us-east-1:111122223333:abc123/prod/GET/v1/opscore/agent/org:a1"
BASE = "arn:aws:execute-api:us-east-1:111122223333:abc123/prod"


def allowed(principal: Principal, method: str, path: str) -> bool:
    return policy_allows(authorizer_response(principal, METHOD_ARN)["policyDocument"], f"{BASE}/{method}{path}")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/opscore/agent/org:a1", True),
        ("GET", "/v1/opscore/agent/org%3Aa1", True),
        ("POST", "/v1/opscore/agent/org%3Aa1/state", True),
        # Other spellings of its own id: too many to list, so any path under /agent/ with a '%' passes the policy...
        ("GET", "/v1/opscore/agent/org%3aa1", True),
        ("GET", "/v1/opscore/agent/%6Frg:a1/sessions", True),
        ("DELETE", "/v1/opscore/agent/org%3Aa1/quarantine", True),
        # ...even when it names another agent: the route's check, on the decoded id, refuses that one (403).
        ("GET", "/v1/opscore/agent/org%3Aa10", True),
        ("GET", "/v1/opscore/agent/other%2Dagent", True),
        ("GET", "/v1/opscore/agent/other/sessions/%30", True),
        ("GET", "/v1/opscore/keys%2F", False),
        ("PATCH", "/v1/opscore/agent/org%3Aa1", False),
        ("PUT", "/v1/opscore/agent/org:a1", True),
        ("POST", "/v1/opscore/agent/org:a1/state", True),
        ("GET", "/v1/opscore/agent/org:a1/state/history", True),
        ("GET", "/v1/opscore/agent/org:a10", False),
        ("GET", "/v1/opscore/agent/Org:a1", False),  # ids are case-sensitive
        ("GET", "/v1/opscore/agent/org:a1x/state", False),
        ("GET", "/v1/opscore/agent/other/v1/opscore/agent/org:a1", False),
        ("POST", "/v1/opscore/keys", False),
        ("GET", "/v1/opscore/health", False),
    ],
)
def test_an_agent_key_reaches_only_its_own_agent(method: str, path: str, expected: bool) -> None:
    assert allowed(Principal(key_id="k", role=Role.AGENT, agent_id="org:a1"), method, path) is expected


def test_an_admin_key_reaches_everything_in_its_stage_only() -> None:
    admin = Principal(key_id="k", role=Role.ADMIN)
    assert allowed(admin, "DELETE", "/v1/opscore/keys/0123456789abcdef")
    policy = authorizer_response(admin, METHOD_ARN)["policyDocument"]
    assert not policy_allows(policy, METHOD_ARN.replace("/prod/", "/dev/"))


def test_context_round_trip() -> None:
    for principal in (Principal(key_id="k1", role=Role.ADMIN), Principal(key_id="k2", role=Role.AGENT, agent_id="a")):
        context = authorizer_response(principal, METHOD_ARN)["context"]
        assert all(isinstance(value, str) for value in context.values()), "API Gateway context values are scalars"
        assert principal_from_authorizer_context(context) == principal
    assert principal_from_authorizer_context(None) is None
    assert principal_from_authorizer_context({"role": "admin"}) is None


def test_a_malformed_method_arn_is_an_error() -> None:
    with pytest.raises(ValueError, match="method ARN"):
        authorizer_response(Principal(key_id="k", role=Role.ADMIN), "not-an-arn")
