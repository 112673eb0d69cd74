"""The agent registry and state API through its Lambda handlers (events from events/, DynamoDB on moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opscore import wiring
from opscore_tools.local.lambdas import LambdaRuntime
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context
from tests.integration.boundary import Answer, always, intercept
from tests.integration.conftest import Invoke

REGISTRATION = {"name": "Research agent", "version": "1.4.0", "capabilities": ["web.fetch"], "max_concurrency": 2}


def ts(seconds: float = 0) -> str:
    """A timestamp `seconds` after a fixed recent moment (the API refuses timestamps far in the future)."""
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def register(call: Invoke, api_event: EventFactory) -> Any:
    def do(agent_id: str = "agent-1", **fields: Any) -> tuple[int, Any]:
        body = {**REGISTRATION, **fields}
        event = api_event("registration/put.json", agent_id=agent_id, body=body, caller=ADMIN_CONTEXT)
        return call("RegistrationFunction", event)

    return do


@pytest.fixture
def report(call: Invoke, api_event: EventFactory) -> Any:
    def do(body: dict[str, Any], agent_id: str = "agent-1", caller: dict[str, str] | None = None) -> tuple[int, Any]:
        event = api_event("state_update/post.json", agent_id=agent_id, body=body, caller=caller or ADMIN_CONTEXT)
        return call("StateUpdateFunction", event)

    return do


@pytest.fixture
def read(call: Invoke, api_event: EventFactory) -> Any:
    def do(agent_id: str = "agent-1") -> tuple[int, Any]:
        return call(
            "AgentReadFunction", api_event("agent_read/get_agent.json", agent_id=agent_id, caller=ADMIN_CONTEXT)
        )

    return do


@pytest.fixture
def history(call: Invoke, api_event: EventFactory) -> Any:
    def do(agent_id: str = "agent-1", **query: str) -> tuple[int, Any]:
        event = api_event("agent_read/get_history.json", agent_id=agent_id, caller=ADMIN_CONTEXT, query=query or None)
        return call("AgentReadFunction", event)

    return do


def test_registration_creates_then_updates_and_put_replaces_the_whole_registration(register: Any, read: Any) -> None:
    status, created = register(endpoint="https://agent.example.com/hook", metadata={"team": "research"})
    assert status == 201
    assert created["agent_id"] == "agent-1"
    assert created["endpoint"] == "https://agent.example.com/hook"
    assert created["current_state"] is None

    status, updated = register(name="Renamed", capabilities=["summarize"])
    assert status == 200
    assert updated["name"] == "Renamed"
    assert updated["capabilities"] == ["summarize"]
    assert updated["endpoint"] is None, "fields left out of a PUT return to their defaults"
    assert updated["metadata"] == {}
    assert updated["registered_at"] == created["registered_at"]

    assert read() == (200, updated)


def test_registration_as_example_event(call: Invoke, api_event: EventFactory) -> None:
    status, body = call("RegistrationFunction", api_event("registration/put.json"))
    assert status == 201
    assert body["max_concurrency"] == 2
    assert body["metadata"] == {"team": "research"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"endpoint": "http://agent.example.com/hook"}, "endpoint"),
        ({"endpoint": "ftp://agent.example.com"}, "endpoint"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": "2"}, "max_concurrency"),
        ({"capabilities": ["a", "a"]}, "capabilities"),
        ({"capabilities": "web.fetch"}, "capabilities"),
        ({"metadata": {"blob": "x" * 9000}}, "metadata"),
        ({"name": ""}, "name"),
        ({"nickname": "typo"}, "nickname"),
    ],
)
def test_bad_registration_is_400_naming_the_field_and_stores_nothing(
    register: Any, read: Any, fields: dict[str, Any], field: str
) -> None:
    status, body = register(**fields)
    assert status == 400
    assert body["error"]["code"] == "validation_error"
    assert field in [problem["field"] for problem in body["error"]["details"]]
    assert read()[0] == 404


def test_plain_http_endpoint_is_accepted_for_loopback_only(register: Any) -> None:
    assert register(endpoint="http://127.0.0.1:8080/hook")[0] == 201
    assert register(endpoint="http://localhost:8080/hook")[0] == 200
    assert register(endpoint="http://[::1]:8080/hook")[0] == 200


def test_unknown_agent_is_404_in_the_error_envelope(read: Any, report: Any, history: Any) -> None:
    status, body = read("nobody")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert body["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert report({"state": "idle", "timestamp": ts()}, agent_id="nobody")[0] == 404
    assert history("nobody")[0] == 404


def test_state_updates_are_versioned_and_shown_on_the_agent(register: Any, report: Any, read: Any) -> None:
    register()
    assert report({"state": "idle", "timestamp": ts(1)}) == (
        200,
        {
            "agent_id": "agent-1",
            "state": "idle",
            "previous_state": None,
            "timestamp": "2026-01-01T00:00:01.000000Z",
            "version": 1,
        },
    )
    status, body = report(
        {
            "state": "error",
            "timestamp": "2026-01-01T02:00:02+02:00",  # the same instant as ts(2), in another zone
            "details": {"task": "t-1"},
            "error": {"type": "TimeoutError", "message": "upstream took too long"},
        }
    )
    assert (status, body["version"], body["timestamp"]) == (200, 2, "2026-01-01T00:00:02.000000Z")
    current = read()[1]["current_state"]
    assert current == {
        "state": "error",
        "timestamp": "2026-01-01T00:00:02.000000Z",
        "details": {"task": "t-1"},
        "error": {"type": "TimeoutError", "message": "upstream took too long"},
        "version": 2,
    }


def test_an_older_update_is_refused_as_stale_and_changes_nothing(
    register: Any, report: Any, read: Any, history: Any
) -> None:
    register()
    report({"state": "busy", "timestamp": ts(10)})
    before = read()[1]

    status, body = report({"state": "idle", "timestamp": ts(5)})
    assert status == 409
    assert body["error"]["code"] == "stale_state"
    assert body["error"]["details"][0]["field"] == "timestamp"
    assert read()[1] == before
    assert len(history()[1]["items"]) == 1


def test_same_timestamp_with_other_content_is_stale(register: Any, report: Any) -> None:
    register()
    assert report({"state": "busy", "timestamp": ts(10)})[0] == 200
    assert report({"state": "idle", "timestamp": ts(10)})[0] == 409
    assert report({"state": "busy", "timestamp": ts(10), "details": {"x": 1}})[0] == 409


def test_a_repeated_update_returns_its_first_version_and_adds_no_history(
    register: Any, report: Any, history: Any
) -> None:
    register()
    update = {"state": "busy", "timestamp": ts(1), "details": {"task": "t-1", "step": 2}}
    first = report(update)
    reordered = {"details": {"step": 2, "task": "t-1"}, "timestamp": ts(1), "state": "busy"}
    assert report(update) == first
    assert report(reordered) == first, "key order inside details is not a difference"
    assert [entry["version"] for entry in history()[1]["items"]] == [1]


def test_a_repeat_of_an_older_accepted_update_still_returns_its_version(register: Any, report: Any) -> None:
    register()
    first = report({"state": "busy", "timestamp": ts(1)})
    report({"state": "idle", "timestamp": ts(2)})
    assert report({"state": "busy", "timestamp": ts(1)}) == first


def test_timestamps_in_the_future_are_refused(register: Any, report: Any) -> None:
    register()
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    status, body = report({"state": "idle", "timestamp": ahead})
    assert status == 400
    assert body["error"]["details"][0]["field"] == "timestamp"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"state": "sleeping", "timestamp": "2026-01-01T00:00:00Z"}, ["state"]),
        ({"state": "idle"}, ["timestamp"]),
        ({"timestamp": "2026-01-01T00:00:00Z"}, ["state"]),
        ({"state": "idle", "timestamp": "2026-01-01T00:00:00"}, ["timestamp"]),
        ({"state": "idle", "timestamp": 1767225600}, ["timestamp"]),
        ({"state": "idle", "timestamp": "2026-01-01T00:00:00Z", "details": []}, ["details"]),
        ({"state": "error", "timestamp": "2026-01-01T00:00:00Z", "error": {"message": "x"}}, ["error.type"]),
        ({"state": 3, "timestamp": "2026-01-01T00:00:00Z", "extra": True}, ["state", "extra"]),
    ],
)
def test_invalid_state_reports_are_400_with_every_wrong_field(
    register: Any, report: Any, read: Any, body: dict[str, Any], fields: list[str]
) -> None:
    register()
    status, response = report(body)
    assert status == 400
    assert response["error"]["code"] == "validation_error"
    assert sorted(problem["field"] for problem in response["error"]["details"]) == sorted(fields)
    assert read()[1]["current_state"] is None


def test_malformed_json_empty_body_wrong_type_and_oversized_bodies(
    register: Any, call: Invoke, api_event: EventFactory
) -> None:
    register()

    def send(**changes: Any) -> tuple[int, Any]:
        return call("StateUpdateFunction", api_event("state_update/post.json", caller=ADMIN_CONTEXT, **changes))

    status, body = send(raw_body='{"state": "idle",')
    assert (status, body["error"]["code"]) == (400, "validation_error")
    assert send(raw_body="")[0] == 400
    assert send(raw_body="[]")[0] == 400
    status, body = send(headers={"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")
    assert send(headers={"Content-Type": "application/json; charset=utf-8"})[0] == 200
    big = {"state": "idle", "timestamp": "2026-01-01T00:00:00Z", "details": {"blob": "x" * 70_000}}
    status, body = send(body=big)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")


def test_invalid_agent_id_in_the_path_is_400(call: Invoke, api_event: EventFactory) -> None:
    for bad in ("-starts-with-dash", "has space", "x" * 129, "semi;colon"):
        status, body = call("AgentReadFunction", api_event("agent_read/get_agent.json", agent_id=bad))
        assert status == 400, bad
        assert body["error"]["details"][0] == {
            "field": "agentId",
            "in": "path",
            "message": "must match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
            "type": "pattern",
        }


def test_an_agent_key_acts_only_for_its_own_agent(
    register: Any, report: Any, call: Invoke, api_event: EventFactory
) -> None:
    assert register("agent-1")[0] == 201
    assert register("agent-2")[0] == 201
    assert report({"state": "idle", "timestamp": ts()}, caller=agent_context("agent-1"))[0] == 200
    status, body = report({"state": "idle", "timestamp": ts()}, agent_id="agent-2", caller=agent_context("agent-1"))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    event = api_event("agent_read/get_agent.json", agent_id="agent-2", caller=agent_context("agent-1"))
    assert call("AgentReadFunction", event)[0] == 403


def test_history_is_newest_first_and_pages_with_next_token(register: Any, report: Any, history: Any) -> None:
    register()
    states = ["initializing", "idle", "busy", "idle", "paused"]
    for second, state in enumerate(states):
        assert report({"state": state, "timestamp": ts(second)})[0] == 200

    seen: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        status, page = history(limit="2", **({"next_token": token} if token else {}))
        assert status == 200
        pages += 1
        seen.extend(page["items"])
        token = page.get("next_token")
        if token is None:
            break
    assert [entry["state"] for entry in seen] == list(reversed(states))
    assert [entry["version"] for entry in seen] == [5, 4, 3, 2, 1]
    assert [entry["previous_state"] for entry in seen] == ["idle", "busy", "idle", "initializing", None]
    assert pages == 3


def test_next_token_is_given_only_when_more_entries_follow(register: Any, report: Any, history: Any) -> None:
    register()
    for second in range(4):
        report({"state": "idle", "timestamp": ts(second)})
    first = history(limit="2")[1]
    second_page = history(limit="2", next_token=first["next_token"])[1]
    assert [entry["version"] for entry in second_page["items"]] == [2, 1]
    assert "next_token" not in second_page
    assert "next_token" not in history(limit="4")[1]


def test_history_refuses_bad_limits_and_tokens(register: Any, report: Any, history: Any) -> None:
    assert register()[0] == 201
    assert register("agent-2")[0] == 201
    for second in range(3):
        report({"state": "idle", "timestamp": ts(second)})
        report({"state": "idle", "timestamp": ts(second)}, agent_id="agent-2")
    for bad in ("0", "101", "ten", "-1", "²", "1.5", ""):
        status, body = history(limit=bad)
        assert (status, body["error"]["details"][0]["field"]) == (400, "limit"), bad
    assert history(next_token="not-a-token")[0] == 400
    other_agents_token = history("agent-2", limit="1")[1]["next_token"]
    status, body = history(next_token=other_agents_token)
    assert (status, body["error"]["details"][0]["field"]) == (400, "next_token")


def test_a_failed_write_stores_nothing_so_its_retry_or_a_newer_update_leaves_no_gap(
    register: Any, report: Any, history: Any
) -> None:
    """The state and its history entry are written together: a failure in between cannot leave one without the other."""
    register()
    report({"state": "idle", "timestamp": ts(1)})
    failures = iter([True, True])

    def failing_twice(request: dict[str, Any]) -> Answer | None:
        failing = next(failures, False)
        return Answer(500, {"Error": {"Code": "InternalServerError", "Message": "boom"}}) if failing else None

    intercept(wiring.dynamodb(), "TransactWriteItems", failing_twice)
    status, body = report({"state": "busy", "timestamp": ts(2)})
    assert (status, body["error"]["code"]) == (503, "service_unavailable"), "DynamoDB's 500: worth a retry"
    assert "Traceback" not in str(body)
    assert report({"state": "busy", "timestamp": ts(2)})[0] == 503

    # the client's retry is applied as if for the first time ...
    assert report({"state": "busy", "timestamp": ts(2)}) == (
        200,
        {
            "agent_id": "agent-1",
            "state": "busy",
            "previous_state": "idle",
            "timestamp": "2026-01-01T00:00:02.000000Z",
            "version": 2,
        },
    )
    # ... and had a newer update come first, the failed one was never applied, so stale is the truth
    assert report({"state": "paused", "timestamp": ts(4)})[1]["version"] == 3
    assert report({"state": "idle", "timestamp": ts(3)})[0] == 409
    items = history()[1]["items"]
    assert [(entry["version"], entry["state"], entry["previous_state"]) for entry in items] == [
        (3, "paused", "busy"),
        (2, "busy", "idle"),
        (1, "idle", None),
    ]


@pytest.mark.parametrize(
    ("rival", "mine", "expected_status", "expected_history", "expected_transactions"),
    [
        # a newer update wins the race: mine reads again and is now stale
        ({"state": "busy", "timestamp": ts(5)}, {"state": "idle", "timestamp": ts(3)}, 409, [(2, "busy")], 1),
        # an older update wins the race: mine reads again, is still newer, and applies on top of it
        (
            {"state": "busy", "timestamp": ts(3)},
            {"state": "idle", "timestamp": ts(5)},
            200,
            [(3, "idle"), (2, "busy")],
            2,
        ),
        # the same update, sent twice at once: the loser finds the winner's history entry and answers its version
        ({"state": "idle", "timestamp": ts(5)}, {"state": "idle", "timestamp": ts(5)}, 200, [(2, "idle")], 1),
    ],
)
def test_an_update_that_loses_a_race_reads_again_and_decides_again(
    register: Any,
    report: Any,
    history: Any,
    rival: dict[str, Any],
    mine: dict[str, Any],
    expected_status: int,
    expected_history: list[tuple[int, str]],
    expected_transactions: int,
) -> None:
    """Between this update's read and its write, another update to the same agent is applied."""
    register()
    report({"state": "initializing", "timestamp": ts(1)})
    transactions = 0

    def rival_lands_first(request: dict[str, Any]) -> Answer | None:
        nonlocal transactions
        transactions += 1
        if transactions == 1:  # the rival lands after my read, just before my transaction reaches DynamoDB
            assert report(rival)[0] == 200
        return None

    intercept(wiring.dynamodb(), "TransactWriteItems", rival_lands_first)
    status, body = report(mine)
    assert status == expected_status, body
    if status == 200:
        assert body["version"] == expected_history[0][0]
    assert transactions == expected_transactions, "a second write only when the update is still newer"
    items = history()[1]["items"]
    assert [(entry["version"], entry["state"]) for entry in items[:-1]] == expected_history
    assert sorted(entry["version"] for entry in items) == list(range(1, len(items) + 1)), "no gap, no double"


def test_an_agent_item_without_a_state_version_takes_its_first_state(register: Any, report: Any, aws: Any) -> None:
    """Items written by other tools may lack state_version; version 0 then means none yet."""
    register()
    aws.update_item(
        TableName=wiring.settings().table_name,
        Key={"PK": {"S": "AGENT#agent-1"}, "SK": {"S": "AGENT"}},
        UpdateExpression="REMOVE state_version",
    )
    assert report({"state": "idle", "timestamp": ts(1)})[1]["version"] == 1


def test_repeating_the_current_state_after_its_history_expired_still_answers_its_version(
    register: Any, report: Any, aws: Any
) -> None:
    register()
    first = report({"state": "idle", "timestamp": ts(1), "details": {"q": 1}})
    aws.delete_item(  # what DynamoDB's TTL does to old history entries
        TableName=wiring.settings().table_name,
        Key={"PK": {"S": "AGENT#agent-1"}, "SK": {"S": "STATE#2026-01-01T00:00:01.000000Z"}},
    )
    assert report({"state": "idle", "timestamp": ts(1), "details": {"q": 1}}) == first
    assert report({"state": "busy", "timestamp": ts(1)})[0] == 409


def test_nan_details_and_trailing_newlines_in_ids_are_400(register: Any, call: Invoke, api_event: EventFactory) -> None:
    register()
    event = api_event("state_update/post.json", caller=ADMIN_CONTEXT)
    event["body"] = '{"state": "idle", "timestamp": "2026-01-01T00:00:00Z", "details": {"x": Infinity}}'
    status, body = call("StateUpdateFunction", event)
    assert (status, body["error"]["details"][0]["field"]) == (400, "details")
    event = api_event("agent_read/get_agent.json", caller=ADMIN_CONTEXT)
    event["pathParameters"]["agentId"] = "agent-1\n"
    assert call("AgentReadFunction", event)[0] == 400


def test_an_update_that_keeps_losing_races_is_a_409_to_retry(register: Any, report: Any, history: Any) -> None:
    register()
    report({"state": "initializing", "timestamp": ts(1)})
    lost = Answer.error(
        "TransactionCanceledException",
        "another writer's condition held",
        CancellationReasons=[{"Code": "ConditionalCheckFailed"}, {"Code": "None"}],
    )
    attempts = 0

    def always_losing(request: dict[str, Any]) -> Answer:
        nonlocal attempts
        attempts += 1
        return lost

    losing = intercept(wiring.dynamodb(), "TransactWriteItems", always_losing)
    status, body = report({"state": "idle", "timestamp": ts(2)})
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert attempts > 1, "it read again and tried again before giving up"
    losing.remove()
    assert [entry["version"] for entry in history()[1]["items"]] == [1], "nothing was written"
    assert report({"state": "idle", "timestamp": ts(2)})[1]["version"] == 2, "the same update, sent again, applies"


def test_transaction_cancellation_reasons_map_to_statuses(register: Any, report: Any) -> None:
    register()
    throttled = Answer.error(
        "TransactionCanceledException",
        "cancelled",
        CancellationReasons=[{"Code": "ThrottlingError"}, {"Code": "None"}],
    )
    intercept(wiring.dynamodb(), "TransactWriteItems", always(throttled))
    status, body = report({"state": "idle", "timestamp": ts(1)})
    assert (status, body["error"]["code"]) == (429, "throttled")


def test_percent_encoded_agent_ids_name_the_same_agent(call: Invoke, api_event: EventFactory, register: Any) -> None:
    """API Gateway passes `path` as sent and `pathParameters` decoded (encodeURIComponent turns ':' into %3A)."""
    assert register("org:a1")[0] == 201
    event = api_event("agent_read/get_agent.json", agent_id="org:a1", caller=agent_context("org:a1"))
    event["path"] = event["path"].replace("org:a1", "org%3Aa1")
    status, body = call("AgentReadFunction", event)
    assert (status, body["agent_id"]) == (200, "org:a1")


def test_throttling_is_429_with_retry_after(register: Any, runtime: LambdaRuntime, api_event: EventFactory) -> None:
    register()
    slow = Answer.error("ProvisionedThroughputExceededException", "slow")
    intercept(wiring.dynamodb(), "GetItem", always(slow))
    response = runtime.invoke("AgentReadFunction", api_event("agent_read/get_agent.json", caller=ADMIN_CONTEXT))
    assert (response["statusCode"], json.loads(response["body"])["error"]["code"]) == (429, "throttled")
    assert response["multiValueHeaders"]["Retry-After"] == ["1"]


def test_state_history_reads_a_time_window_and_refuses_a_bad_one(register: Any, report: Any, history: Any) -> None:
    register()
    for seconds, state in ((0, "idle"), (60, "busy"), (120, "idle"), (180, "busy")):
        assert report({"state": state, "timestamp": ts(seconds)})[0] == 200

    status, page = history(since=ts(60), until=ts(120))
    assert status == 200, page
    assert [entry["timestamp"] for entry in page["items"]] == [
        ts(120).replace("Z", ".000000Z"),
        ts(60).replace("Z", ".000000Z"),
    ]
    status, page = history(since=ts(61), limit="1")
    assert [entry["state"] for entry in page["items"]] == ["busy"]
    status, rest = history(since=ts(61), limit="1", next_token=page["next_token"])
    assert ([entry["state"] for entry in rest["items"]], "next_token" in rest) == (["idle"], False)
    assert len(history(until=ts(0))[1]["items"]) == 1

    for query, field in (({"since": "yesterday"}, "since"), ({"since": ts(120), "until": ts(60)}, "since")):
        status, body = history(**query)
        assert (status, body["error"]["details"][0]["field"], body["error"]["details"][0]["in"]) == (
            400,
            field,
            "query",
        )


@pytest.mark.parametrize(
    "endpoint",
    ["https://10.0.0.1/", "https://127.0.0.1/hook", "https://[::1]/", "https://169.254.169.254/", "https://localhost/"],
)
def test_a_deployed_stack_refuses_a_private_webhook_endpoint_at_registration(
    register: Any, read: Any, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.delenv("OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS")  # as in AWS, where delivery refuses them too
    status, body = register(delivery="webhook", endpoint=endpoint, webhook_secret="s" * 16)
    assert (status, body["error"]["details"][0]["field"], body["error"]["details"][0]["type"]) == (
        400,
        "endpoint",
        "private_endpoint",
    )
    assert read()[0] == 404
    assert register(delivery="webhook", endpoint="https://agent.example.com/hook", webhook_secret="s" * 16)[0] == 201


def test_the_local_runtime_keeps_registering_loopback_webhook_receivers(register: Any) -> None:
    # OPSCORE_WEBHOOK_PRIVATE_ENDPOINTS=allow, as the local runtime and the tests set it: the same opt-in as delivery.
    assert register(delivery="webhook", endpoint="http://127.0.0.1:8080/hook", webhook_secret="s" * 16)[0] == 201
