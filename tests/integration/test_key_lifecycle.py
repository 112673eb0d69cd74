"""API keys over their life, through the keys function and the authorizer (DynamoDB on moto): expiry, the listing,
rotation, the day of last use, and each key's API key in the per-key usage plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import ANY, Stubber

from opscore import wiring
from opscore.core.errors import ServiceUnavailable, Throttled
from opscore.keys.usage import ApiGatewayUsageKeys, usage_identifier
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.conftest import Clock, Invoke, Lines
from tests.integration.faults import NO_ANSWER, inject, writing

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev"
LISTED = {
    "key_id",
    "role",
    "agent_id",
    "created_at",
    "created_by",
    "expires_at",
    "last_used_on",
    "revoked_at",
    "rotated_from",
}


@pytest.fixture
def authorize(aws: Any, runtime: LambdaRuntime, api_event: EventFactory) -> Any:
    """The authorizer's answer for a key (raises 'Unauthorized' when it refuses)."""

    def run(api_key: str) -> dict[str, Any]:
        event = api_event("authorizer/request.json")
        event["headers"] = {"X-API-Key": api_key}
        event["methodArn"] = f"{ARN}/GET/v1/opscore/agents"
        result: dict[str, Any] = runtime.invoke("AuthorizerFunction", event)
        return result

    return run


def create(call: Invoke, api_event: EventFactory, body: dict[str, Any]) -> tuple[int, Any]:
    return call("KeysFunction", api_event("keys/create_agent_key.json", body=body))


def listing(call: Invoke, api_event: EventFactory, **query: str) -> tuple[int, Any]:
    return call("KeysFunction", api_event("keys/list.json", query=query))


def rotate(call: Invoke, api_event: EventFactory, key_id: str, body: Any = None) -> tuple[int, Any]:
    event = api_event("keys/rotate.json", path={"keyId": key_id})
    event["body"] = None if body is None else json.dumps(body)
    return call("KeysFunction", event)


def moment(clock: Clock, **delta: float) -> str:
    return (clock.now() + timedelta(**delta)).isoformat()


def test_an_expiring_key_works_until_it_expires_then_is_refused_like_an_unknown_one(
    call: Invoke, api_event: EventFactory, authorize: Any, clock: Clock
) -> None:
    status, created = create(call, api_event, {"agent_id": "agent-1", "expires_at": moment(clock, seconds=1)})
    assert status == 201, created
    assert created["expires_at"].endswith("Z")
    assert authorize(created["api_key"])["context"]["key_id"] == created["key_id"]
    clock.advance(1)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(created["api_key"])


@pytest.mark.parametrize("expires_at", ["2020-01-01T00:00:00Z", "2030-01-01", "soon", 1893456000, ""])
def test_an_expiry_in_the_past_or_not_rfc3339_is_a_400_naming_it_and_stores_nothing(
    call: Invoke, api_event: EventFactory, expires_at: Any
) -> None:
    before = listing(call, api_event)[1]["items"]
    status, body = create(call, api_event, {"agent_id": "agent-1", "expires_at": expires_at})
    assert (status, body["error"]["details"][0]["field"]) == (400, "expires_at")
    assert listing(call, api_event)[1]["items"] == before


def test_the_listing_shows_every_key_without_secrets_by_principal_paged_and_filtered(
    call: Invoke, api_event: EventFactory
) -> None:
    made = [create(call, api_event, body)[1] for body in ({"agent_id": "b"}, {"role": "admin"}, {"agent_id": "a"})]
    made.append(create(call, api_event, {"agent_id": "b"})[1])
    status, page = listing(call, api_event)
    assert status == 200
    items = page["items"]
    assert all(set(item) == LISTED for item in items)
    assert not {made_key["api_key"] for made_key in made} & {str(value) for item in items for value in item.values()}
    # admin keys first, then by agent, each principal's oldest first
    principals = [(item["role"], item["agent_id"]) for item in items]
    assert principals == [("admin", None), ("agent", "a"), ("agent", "b"), ("agent", "b")]
    assert [item["key_id"] for item in items if item["agent_id"] == "b"] == [made[0]["key_id"], made[3]["key_id"]]
    assert all(item["created_by"] == ADMIN_CONTEXT["key_id"] for item in items)

    seen: list[str] = []
    query: dict[str, str] = {"limit": "1"}
    while True:
        status, page = listing(call, api_event, **query)
        assert status == 200
        seen += [item["key_id"] for item in page["items"]]
        if "next_token" not in page:
            break
        query["next_token"] = page["next_token"]
    assert seen == [item["key_id"] for item in items], "every key once, in order"

    only_b = listing(call, api_event, agent_id="b")[1]["items"]
    assert [item["key_id"] for item in only_b] == [made[0]["key_id"], made[3]["key_id"]]
    assert listing(call, api_event, agent_id="nobody")[1] == {"items": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"agent_id": "bad id"}, "agent_id"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"next_token": "not-a-token"}, "next_token"),
        ({"role": "admin"}, "role"),
    ],
)
def test_bad_listing_queries_are_400s_naming_the_parameter(
    call: Invoke, api_event: EventFactory, query: dict[str, str], field: str
) -> None:
    status, body = listing(call, api_event, **query)
    assert (status, body["error"]["details"][0]["field"]) == (400, field)


def test_a_page_token_of_another_agents_listing_is_refused(call: Invoke, api_event: EventFactory) -> None:
    for _ in range(2):
        create(call, api_event, {"agent_id": "a"})
    token = listing(call, api_event, agent_id="a", limit="1")[1]["next_token"]
    status, body = listing(call, api_event, agent_id="b", next_token=token)
    assert (status, body["error"]["details"][0]["field"]) == (400, "next_token")


def test_agents_may_not_list_or_rotate_keys(call: Invoke, api_event: EventFactory) -> None:
    listed = call("KeysFunction", api_event("keys/list.json", caller=agent_context("agent-1")))
    assert listed[0] == 403
    rotated = call("KeysFunction", api_event("keys/rotate.json", caller=agent_context("agent-1")))
    assert rotated[0] == 403


def test_rotation_gives_the_same_principal_a_new_key_and_the_old_one_a_grace_period(
    call: Invoke, api_event: EventFactory, authorize: Any, clock: Clock
) -> None:
    _, old = create(call, api_event, {"agent_id": "agent-1"})
    status, new = rotate(call, api_event, old["key_id"], {"old_key_expires_at": moment(clock, minutes=5)})
    assert status == 201, new
    assert (new["role"], new["agent_id"], new["rotated_from"]) == ("agent", "agent-1", old["key_id"])
    assert authorize(new["api_key"])["context"] == {"key_id": new["key_id"], "role": "agent", "agent_id": "agent-1"}
    assert authorize(old["api_key"])["context"]["key_id"] == old["key_id"], "the old key works on meanwhile"
    listed = {item["key_id"]: item for item in listing(call, api_event, agent_id="agent-1")[1]["items"]}
    assert listed[new["key_id"]]["rotated_from"] == old["key_id"]
    assert listed[old["key_id"]]["expires_at"] is not None
    clock.advance(300)
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(old["api_key"])
    assert authorize(new["api_key"])["context"]["key_id"] == new["key_id"]


def test_rotating_without_a_body_keeps_the_old_key_until_it_is_revoked(
    call: Invoke, api_event: EventFactory, authorize: Any
) -> None:
    _, old = create(call, api_event, {"role": "admin"})
    status, new = rotate(call, api_event, old["key_id"])
    assert (status, new["role"], new["agent_id"], new["expires_at"]) == (201, "admin", None, None)
    authorize(old["api_key"])
    assert call("KeysFunction", api_event("keys/revoke.json", key_id=old["key_id"]))[0] == 204
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(old["api_key"])
    authorize(new["api_key"])


def test_revoked_expired_and_unknown_keys_are_not_rotated(call: Invoke, api_event: EventFactory, clock: Clock) -> None:
    _, revoked = create(call, api_event, {"agent_id": "agent-1"})
    call("KeysFunction", api_event("keys/revoke.json", key_id=revoked["key_id"]))
    _, expiring = create(call, api_event, {"agent_id": "agent-1", "expires_at": moment(clock, seconds=2)})
    clock.advance(2)
    before = listing(call, api_event)[1]["items"]
    for key_id in (revoked["key_id"], expiring["key_id"]):
        status, body = rotate(call, api_event, key_id)
        assert (status, body["error"]["code"]) == (409, "key_inactive")
    assert rotate(call, api_event, "00000000000000ff")[0] == 404
    status, body = rotate(call, api_event, "not-hex")
    assert (status, body["error"]["details"][0]["field"]) == (400, "keyId")
    _, live = create(call, api_event, {"agent_id": "agent-1"})
    status, body = rotate(call, api_event, live["key_id"], {"old_key_expires_at": "2020-01-01T00:00:00Z"})
    assert (status, body["error"]["details"][0]["field"]) == (400, "old_key_expires_at")
    status, body = rotate(call, api_event, live["key_id"], {"grace": "1h"})
    assert (status, body["error"]["details"][0]["field"]) == (400, "grace")
    after = [item for item in listing(call, api_event)[1]["items"] if item["key_id"] != live["key_id"]]
    assert after == before, "nothing changed"


def test_a_keys_day_of_last_use_is_written_once_a_day(
    call: Invoke, api_event: EventFactory, authorize: Any, clock: Clock, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, created = create(call, api_event, {"agent_id": "agent-1"})
    writes: list[str] = []
    real_update = aws.update_item

    def counted(**request: Any) -> Any:
        writes.append(request["Key"]["PK"]["S"])
        return real_update(**request)

    monkeypatch.setattr(wiring.dynamodb(), "update_item", counted)
    for _ in range(3):
        authorize(created["api_key"])
    assert writes == [f"KEY#{created['key_id']}"], "one write, on the day's first use"
    listed = listing(call, api_event, agent_id="agent-1")[1]["items"][0]
    assert listed["last_used_on"] == clock.now().date().isoformat()
    clock.advance(86_400)
    authorize(created["api_key"])
    authorize(created["api_key"])
    assert len(writes) == 2
    assert listing(call, api_event, agent_id="agent-1")[1]["items"][0]["last_used_on"] == clock.now().date().isoformat()


def test_a_key_stored_before_the_index_is_listed_after_its_first_use(
    call: Invoke, api_event: EventFactory, authorize: Any, aws: Any
) -> None:
    _, created = create(call, api_event, {"agent_id": "old-agent"})
    table = wiring.settings().table_name
    key = {"PK": {"S": f"KEY#{created['key_id']}"}, "SK": {"S": "KEY"}}
    aws.update_item(TableName=table, Key=key, UpdateExpression="REMOVE keys_list, keys_sk")
    assert listing(call, api_event, agent_id="old-agent")[1]["items"] == []
    authorize(created["api_key"])
    assert [item["key_id"] for item in listing(call, api_event, agent_id="old-agent")[1]["items"]] == [
        created["key_id"]
    ]


def test_the_authorizer_names_each_keys_usage_identifier(call: Invoke, api_event: EventFactory, authorize: Any) -> None:
    _, created = create(call, api_event, {"agent_id": "agent-1"})
    answer = authorize(created["api_key"])
    assert answer["usageIdentifierKey"] == usage_identifier(wiring.settings().usage_key_namespace, created["key_id"])
    assert created["api_key"] not in answer["usageIdentifierKey"]


def test_in_aws_each_key_gets_an_api_key_in_the_usage_plan_and_revoking_deletes_it(aws: Any) -> None:
    """The API Gateway calls, exactly (moto's API Gateway needs a package the project does not install)."""
    client = boto3.client("apigateway")
    stubber = Stubber(client)
    value = usage_identifier("opscore-prod", "0123456789abcdef")
    stubber.add_response(
        "create_api_key",
        {"id": "k1", "name": value},
        {"name": value, "value": value, "enabled": True, "description": ANY},
    )
    stubber.add_response(
        "get_usage_plans", {"items": [{"id": "other", "name": "x"}, {"id": "p1", "name": "opscore-prod-per-key"}]}, {}
    )
    stubber.add_response(
        "create_usage_plan_key", {"id": "k1"}, {"usagePlanId": "p1", "keyId": "k1", "keyType": "API_KEY"}
    )
    # a retry after a failure half-way: the API key exists, and is already in the plan
    stubber.add_client_error("create_api_key", "ConflictException", "exists")
    stubber.add_response(
        "get_api_keys",
        {"items": [{"id": "k1", "name": value}]},
        {"nameQuery": value, "includeValues": False, "limit": 500},
    )
    stubber.add_client_error("create_usage_plan_key", "ConflictException", "already in the plan")
    stubber.add_response(
        "get_api_keys",
        {"items": [{"id": "k1", "name": value}]},
        {"nameQuery": value, "includeValues": False, "limit": 500},
    )
    stubber.add_response("delete_api_key", {}, {"apiKey": "k1"})
    stubber.add_client_error("create_api_key", "TooManyRequestsException", "slow down")
    usage = ApiGatewayUsageKeys(lambda: client, "opscore-prod-per-key", "opscore-prod")
    with stubber:
        usage.attach("0123456789abcdef")
        usage.attach("0123456789abcdef")
        usage.detach("0123456789abcdef")
        from opscore.core.errors import Throttled

        with pytest.raises(Throttled):
            usage.attach("0123456789abcdef")
    stubber.assert_no_pending_responses()


def test_a_key_whose_usage_key_cannot_be_made_is_not_stored(
    call: Invoke, api_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failing:
        def attach(self, key_id: str) -> None:
            from opscore.core.errors import Throttled

            raise Throttled("API Gateway is throttling key changes; retry shortly")

        def detach(self, key_id: str) -> None:
            raise AssertionError("nothing to detach")

    keys = wiring.api_keys()
    monkeypatch.setattr(keys, "_usage", Failing())
    before = listing(call, api_event)[1]["items"]
    status, body = create(call, api_event, {"agent_id": "agent-1"})
    assert (status, body["error"]["code"]) == (429, "throttled")
    assert listing(call, api_event)[1]["items"] == before


def test_expiry_is_a_string_the_tables_ttl_never_reads(call: Invoke, api_event: EventFactory, aws: Any) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _, created = create(call, api_event, {"agent_id": "agent-1", "expires_at": later})
    item = aws.get_item(
        TableName=wiring.settings().table_name, Key={"PK": {"S": f"KEY#{created['key_id']}"}, "SK": {"S": "KEY"}}
    )["Item"]
    assert set(item["expires_at"]) == {"S"}, "DynamoDB's TTL deletes only items whose expires_at is a number"
    assert created["api_key"] not in str(item)


@pytest.mark.parametrize("fault", ["InternalServerError", NO_ANSWER, "AccessDeniedException", "ThrottlingException"])
def test_a_valid_key_is_accepted_when_its_day_of_use_cannot_be_written(
    call: Invoke, api_event: EventFactory, authorize: Any, lines: Lines, fault: str
) -> None:
    _, created = create(call, api_event, {"agent_id": "agent-1"})
    injected = inject("dynamodb", "UpdateItem", fault, when=writing("last_used_on"))
    answer = authorize(created["api_key"])
    assert injected.count == 1, "the day-of-use write was attempted, and failed"
    assert answer["context"]["key_id"] == created["key_id"], "bookkeeping never refuses a valid key"
    logged = [line for line in lines.objects() if line.get("event") == "key_use_not_recorded"]
    assert [line["key_id"] for line in logged] == [created["key_id"]]
    assert listing(call, api_event, agent_id="agent-1")[1]["items"][0]["last_used_on"] is None
    authorize(created["api_key"])  # the next use writes the day
    assert listing(call, api_event, agent_id="agent-1")[1]["items"][0]["last_used_on"] is not None


class RecordingUsage:
    """Per-key API keys as calls, with a detach that fails when told to."""

    def __init__(self, detach_fails: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.detach_fails = detach_fails

    def attach(self, key_id: str) -> None:
        self.calls.append(("attach", key_id))

    def detach(self, key_id: str) -> None:
        self.calls.append(("detach", key_id))
        if self.detach_fails is not None:
            raise self.detach_fails


def revoke(call: Invoke, api_event: EventFactory, key_id: str) -> tuple[int, Any]:
    return call("KeysFunction", api_event("keys/revoke.json", key_id=key_id))


@pytest.mark.parametrize(
    "failure",
    [
        Throttled("API Gateway is throttling key changes; retry shortly"),
        ClientError({"Error": {"Code": "InternalFailure", "Message": "injected"}}, "DeleteApiKey"),
        ReadTimeoutError(endpoint_url="https://apigateway.injected"),
    ],
    ids=["throttled", "failed", "no-answer"],
)
def test_a_revocation_stands_when_its_api_key_cannot_be_deleted(
    call: Invoke,
    api_event: EventFactory,
    authorize: Any,
    lines: Lines,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:
    _, created = create(call, api_event, {"agent_id": "agent-1"})
    usage = RecordingUsage(detach_fails=failure)
    monkeypatch.setattr(wiring.api_keys(), "_usage", usage)
    status, body = revoke(call, api_event, created["key_id"])
    assert (status, body) == (204, None), "the revocation is stored: that is what refuses the key"
    assert usage.calls == [("detach", created["key_id"])]
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(created["api_key"])
    logged = [line for line in lines.objects() if line.get("event") == "usage_key_not_deleted"]
    assert [line["key_id"] for line in logged] == [created["key_id"]]


def test_a_key_that_cannot_be_stored_leaves_no_api_key_behind(
    call: Invoke, api_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, old = create(call, api_event, {"agent_id": "agent-1"})
    usage = RecordingUsage()
    monkeypatch.setattr(wiring.api_keys(), "_usage", usage)
    before = listing(call, api_event)[1]["items"]

    inject("dynamodb", "PutItem", "InternalServerError", when=writing('"api_key"'))
    status, body = create(call, api_event, {"agent_id": "agent-1"})
    assert (status, body["error"]["code"]) == (503, "service_unavailable")
    (attached,) = [key_id for action, key_id in usage.calls if action == "attach"]
    assert usage.calls == [("attach", attached), ("detach", attached)]

    usage.calls.clear()
    inject("dynamodb", "TransactWriteItems", "InternalServerError")
    status, body = rotate(call, api_event, old["key_id"])
    assert (status, body["error"]["code"]) == (503, "service_unavailable")
    (attached,) = [key_id for action, key_id in usage.calls if action == "attach"]
    assert usage.calls == [("attach", attached), ("detach", attached)]
    assert listing(call, api_event)[1]["items"] == before, "nothing stored"


def test_api_gateways_key_quota_is_a_409_naming_it_and_stores_nothing(
    call: Invoke, api_event: EventFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, old = create(call, api_event, {"agent_id": "agent-1"})
    client = boto3.client("apigateway")
    monkeypatch.setattr(wiring.api_keys(), "_usage", ApiGatewayUsageKeys(lambda: client, "plan", "opscore-prod"))
    before = listing(call, api_event)[1]["items"]
    with Stubber(client) as stubber:
        for _ in range(2):
            stubber.add_client_error("create_api_key", "LimitExceededException", "API key limit exceeded")
        status, body = create(call, api_event, {"agent_id": "agent-1"})
        assert (status, body["error"]["code"]) == (409, "key_quota_reached"), body
        assert "quota" in body["error"]["message"]
        assert "10,000" in body["error"]["message"]
        status, body = rotate(call, api_event, old["key_id"])
        assert (status, body["error"]["code"]) == (409, "key_quota_reached"), body
        stubber.assert_no_pending_responses()
    assert listing(call, api_event)[1]["items"] == before


def test_an_api_key_that_exists_but_cannot_be_found_is_a_503_not_a_500(aws: Any) -> None:
    client = boto3.client("apigateway")
    value = usage_identifier("opscore-prod", "0123456789abcdef")
    usage = ApiGatewayUsageKeys(lambda: client, "opscore-prod-per-key", "opscore-prod")
    with Stubber(client) as stubber:
        stubber.add_client_error("create_api_key", "ConflictException", "exists")
        stubber.add_response("get_api_keys", {"items": []}, {"nameQuery": value, "includeValues": False, "limit": 500})
        with pytest.raises(ServiceUnavailable, match=value):
            usage.attach("0123456789abcdef")
        stubber.assert_no_pending_responses()
