"""API keys through the keys function, and the authorizer that resolves them (DynamoDB on moto)."""

from __future__ import annotations

from typing import Any

import pytest

from opscore import wiring
from opscore.keys.models import Role
from opscore_tools.local.gateway import policy_allows
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Invoke

ARN = "arn:aws:execute-api:eu-west-1:111122223333:abc123/prod"


@pytest.fixture
def authorize(aws: Any, runtime: LambdaRuntime, api_event: EventFactory) -> Any:
    """Run the authorizer for a key against a method and path; returns its response (raises when it refuses)."""

    def run(api_key: str | None, method: str = "GET", path: str = "/v1/opscore/agent/agent-1") -> dict[str, Any]:
        event = api_event("authorizer/request.json")
        event["headers"] = {"X-API-Key": api_key} if api_key is not None else {}
        event["methodArn"] = f"{ARN}/{method}{path}"
        result: dict[str, Any] = runtime.invoke("AuthorizerFunction", event)
        return result

    return run


@pytest.fixture
def admin_key(aws: Any) -> str:
    key = "operator-chosen-admin-key"
    wiring.api_keys().install(key, Role.ADMIN, None, created_by="test")
    return key


def create_key(
    call: Invoke, api_event: EventFactory, body: dict[str, Any], caller: dict[str, str] | None = None
) -> Any:
    return call("KeysFunction", api_event("keys/create_agent_key.json", body=body, caller=caller or ADMIN_CONTEXT))


def test_an_agent_key_is_shown_once_and_authorizes_only_its_agents_routes(
    call: Invoke, api_event: EventFactory, authorize: Any, aws: Any
) -> None:
    status, created = create_key(call, api_event, {"agent_id": "agent-1"})
    assert status == 201
    assert set(created) == {"key_id", "api_key", "role", "agent_id", "expires_at", "rotated_from"}
    assert (created["role"], created["agent_id"]) == ("agent", "agent-1")
    assert created["api_key"].startswith("opsk_")

    stored = aws.scan(TableName=wiring.settings().table_name)["Items"]
    assert created["key_id"] in str(stored), "the key is stored"
    assert created["api_key"] not in str(stored), "only the hash of a key is stored, anywhere in the table"

    response = authorize(created["api_key"])
    assert response["context"] == {"key_id": created["key_id"], "role": "agent", "agent_id": "agent-1"}
    policy = response["policyDocument"]
    for method, path, allowed in [
        ("GET", "/v1/opscore/agent/agent-1", True),
        ("POST", "/v1/opscore/agent/agent-1/state", True),
        ("GET", "/v1/opscore/agent/agent-1/state/history", True),
        ("GET", "/v1/opscore/agent/agent-10", False),
        ("GET", "/v1/opscore/agent/agent-2/state/history", False),
        ("POST", "/v1/opscore/keys", False),
        ("DELETE", "/v1/opscore/keys/0123456789abcdef", False),
    ]:
        assert policy_allows(policy, f"{ARN}/{method}{path}") is allowed, (method, path)


def test_an_admin_key_authorizes_every_route(call: Invoke, api_event: EventFactory, authorize: Any) -> None:
    status, created = create_key(call, api_event, {"role": "admin"})
    assert (status, created["role"], created["agent_id"]) == (201, "admin", None)
    policy = authorize(created["api_key"])["policyDocument"]
    assert policy_allows(policy, f"{ARN}/POST/v1/opscore/keys")
    assert policy_allows(policy, f"{ARN}/GET/v1/opscore/agent/anyone/state/history")


def test_unknown_missing_and_revoked_keys_are_unauthorized(
    call: Invoke, api_event: EventFactory, authorize: Any, admin_key: str
) -> None:
    assert authorize(admin_key)["context"]["role"] == "admin"
    for bad in (None, "", "opsk_never-issued", "x" * 10_000):
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            authorize(bad)

    _, created = create_key(call, api_event, {"agent_id": "agent-1"})
    authorize(created["api_key"])
    status, body = call("KeysFunction", api_event("keys/revoke.json", key_id=created["key_id"]))
    assert (status, body) == (204, None)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(created["api_key"])
    assert call("KeysFunction", api_event("keys/revoke.json", key_id=created["key_id"]))[0] == 204, "idempotent"


def test_revoking_unknown_or_malformed_key_ids(call: Invoke, api_event: EventFactory) -> None:
    status, body = call("KeysFunction", api_event("keys/revoke.json", key_id="00000000000000ff"))
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = call("KeysFunction", api_event("keys/revoke.json", key_id="not-hex"))
    assert (status, body["error"]["details"][0]["field"]) == (400, "keyId")


@pytest.mark.parametrize(
    "body",
    [{}, {"role": "admin", "agent_id": "agent-1"}, {"role": "agent"}, {"role": "root"}, {"agent_id": "bad id"}],
)
def test_bad_key_requests_are_400(call: Invoke, api_event: EventFactory, body: dict[str, Any]) -> None:
    status, response = create_key(call, api_event, body)
    assert (status, response["error"]["code"]) == (400, "validation_error")


def test_agent_keys_cannot_manage_keys(call: Invoke, api_event: EventFactory) -> None:
    status, body = create_key(call, api_event, {"role": "admin"}, caller=agent_context("agent-1"))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    event = api_event("keys/revoke.json", caller=agent_context("agent-1"))
    assert call("KeysFunction", event)[0] == 403


def test_installing_the_same_bootstrap_key_twice_is_harmless(aws: Any, admin_key: str) -> None:
    again = wiring.api_keys().install(admin_key, Role.ADMIN, None, created_by="test")
    assert wiring.api_keys().authenticate(admin_key) is not None
    assert again.key_id == wiring.api_keys().authenticate(admin_key).key_id  # type: ignore[union-attr]


def test_health_needs_no_key(runtime: LambdaRuntime, api_event: EventFactory) -> None:
    response = runtime.invoke("HealthFunction", api_event("health/get.json"))
    assert response["statusCode"] == 200
    assert response["body"] == '{"status":"ok","version":"0.1.0"}'


def test_example_events_run_against_their_functions(call: Invoke, api_event: EventFactory) -> None:
    """Every sample in events/ is accepted by its function (what `sam local invoke -e` would do)."""
    assert call("RegistrationFunction", api_event("registration/put.json"))[0] == 201
    assert call("StateUpdateFunction", api_event("state_update/post.json"))[0] == 200
    assert call("AgentReadFunction", api_event("agent_read/get_agent.json"))[0] == 200
    assert call("AgentReadFunction", api_event("agent_read/get_history.json"))[0] == 200
    assert call("KeysFunction", api_event("keys/create_agent_key.json"))[0] == 201
    assert call("KeysFunction", api_event("keys/create_admin_key.json"))[0] == 201
    assert call("KeysFunction", api_event("keys/revoke.json"))[0] == 404  # the sample names a key never issued
    assert call("KeysFunction", api_event("keys/list.json"))[0] == 200
    assert call("KeysFunction", api_event("keys/rotate.json"))[0] == 404  # the sample names a key never issued
