"""Routes declare who may call them: the policy, and the path's ids, are enforced before the route runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from opscore.agents.models import AGENT_ID_PATTERN
from opscore.api.resolver import empty_response
from opscore.api.routes import ADMIN, ANYONE, PATH_AGENT, Api, Request, Route
from opscore.core.contracts import RequestModel
from opscore.core.observability import logger
from tests.conftest import ADMIN_CONTEXT, EventFactory, agent_context

SESSION = "019ab1c2d3e4f5a6b7c8d9e0f1a2b3c4"


class Body(RequestModel):
    name: str


@pytest.fixture
def seen() -> list[Request]:
    return []


@pytest.fixture
def api(seen: list[Request]) -> Api:
    """One route per policy, each recording what it was handed, and reading a body where the real ones do."""
    api = Api()

    @api.get("/health", allow=ANYONE)
    def health(request: Request) -> Response[str]:
        seen.append(request)
        return empty_response(204)

    @api.post("/agent/{agentId}/workflow", allow=ADMIN)
    def trigger(request: Request) -> Response[str]:
        seen.append(request)
        request.body(Body)
        return empty_response(204)

    @api.post("/agent/{agentId}/sessions/{sessionId}/cancel", allow=ADMIN)
    def cancel(request: Request) -> Response[str]:
        seen.append(request)
        return empty_response(204)

    @api.get("/agent/{agentId}/sessions/{sessionId}", allow=PATH_AGENT)
    def get_session(request: Request) -> Response[str]:
        seen.append(request)
        return empty_response(204)

    return api


def answer(api: Api, event: dict[str, Any]) -> tuple[int, Any]:
    response = api.resolve(event, None)  # type: ignore[arg-type]  # no route here reads the Lambda context
    body = response.get("body")
    return response["statusCode"], json.loads(body) if body else None


def trigger_event(api_event: EventFactory, *, caller: dict[str, str], agent_id: str = "agent-1", body: str) -> Any:
    return api_event("session_control/trigger.json", agent_id=agent_id, caller=caller, raw_body=body)


def session_event(api_event: EventFactory, *, caller: dict[str, str], agent_id: str, session_id: str = SESSION) -> Any:
    return api_event("agent_read/get_session.json", caller=caller, path={"agentId": agent_id, "sessionId": session_id})


def test_an_admin_route_refuses_an_agent_key_before_it_reads_the_body(
    api: Api, seen: list[Request], api_event: EventFactory
) -> None:
    # given an agent key, its own agent's path, and a body that is not even JSON
    event = trigger_event(api_event, caller=agent_context("agent-1"), body="{not json")
    # when / then: 403, not 400 -- the route never ran, so the body was never read
    status, body = answer(api, event)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert seen == []


def test_an_admin_route_checks_the_key_before_the_path(api: Api, seen: list[Request], api_event: EventFactory) -> None:
    malformed = trigger_event(api_event, caller=agent_context("agent-1"), agent_id="bad id", body='{"name": "x"}')
    assert answer(api, malformed)[0] == 403
    status, body = answer(api, {**malformed, "requestContext": {**malformed["requestContext"], **_admin()}})
    assert (status, body["error"]["details"]) == (
        400,
        [{"field": "agentId", "in": "path", "message": f"must match {AGENT_ID_PATTERN}", "type": "pattern"}],
    )
    assert seen == []


def test_an_admin_route_hands_the_admin_and_the_checked_ids_over(
    api: Api, seen: list[Request], api_event: EventFactory
) -> None:
    event = api_event("session_control/cancel.json", path={"agentId": "agent-1", "sessionId": SESSION})
    assert answer(api, event)[0] == 204
    (request,) = seen
    assert (request.caller.key_id, request.agent_id, request.session_id) == (
        ADMIN_CONTEXT["key_id"],
        "agent-1",
        SESSION,
    )


def test_a_route_that_needs_a_key_answers_401_without_one(
    api: Api, seen: list[Request], api_event: EventFactory
) -> None:
    for event in (
        trigger_event(api_event, caller={}, body='{"name": "x"}'),
        session_event(api_event, caller={}, agent_id="agent-1"),
    ):
        assert answer(api, event)[0] == 401
    assert seen == []


@pytest.mark.parametrize(
    ("caller", "agent_id", "session_id", "status", "problem_field"),
    [
        (agent_context("agent-1"), "agent-1", SESSION, 204, None),
        (ADMIN_CONTEXT, "agent-1", SESSION, 204, None),
        (agent_context("agent-2"), "agent-1", SESSION, 403, None),
        # the agent id is read, and checked, before the key is weighed against it
        (agent_context("agent-2"), "bad id", SESSION, 400, "agentId"),
        # the other ids only after the key was found good for the agent
        (agent_context("agent-2"), "agent-1", "not-a-session", 403, None),
        (agent_context("agent-1"), "agent-1", "not-a-session", 400, "sessionId"),
    ],
)
def test_a_path_agent_route_takes_the_agents_own_key_or_an_admins(
    api: Api,
    seen: list[Request],
    api_event: EventFactory,
    caller: dict[str, str],
    agent_id: str,
    session_id: str,
    status: int,
    problem_field: str | None,
) -> None:
    answered, body = answer(api, session_event(api_event, caller=caller, agent_id=agent_id, session_id=session_id))
    assert answered == status
    if problem_field is not None:
        assert [(p["field"], p["in"]) for p in body["error"]["details"]] == [(problem_field, "path")]
    assert len(seen) == (1 if status == 204 else 0)


def test_ids_are_the_decoded_path_parameters_and_go_into_the_log_keys(
    api: Api, seen: list[Request], api_event: EventFactory
) -> None:
    # given the path as a client sent it (percent-encoded, what the resolver routes on) and API Gateway's decoded id
    event = session_event(api_event, caller=agent_context("org:a1"), agent_id="org:a1")
    event["path"] = f"/v1/opscore/agent/org%3Aa1/sessions/{SESSION}"
    # when
    assert answer(api, event)[0] == 204
    # then the agent's own key was accepted for it, and the route and the log lines have the decoded id
    assert (seen[0].agent_id, seen[0].session_id) == ("org:a1", SESSION)
    assert logger.get_current_keys()["agent_id"] == "org:a1"
    assert logger.get_current_keys()["session_id"] == SESSION


def test_a_public_route_needs_no_key(api: Api, seen: list[Request], api_event: EventFactory) -> None:
    assert answer(api, api_event("health/get.json", caller={}))[0] == 204
    assert seen[0].ids == {}


def test_declarations_that_cannot_be_enforced_fail_at_import() -> None:
    with pytest.raises(ValueError, match="PATH_AGENT"):
        Route.declare("GET", "/workflows/{workflowId}", PATH_AGENT)
    with pytest.raises(ValueError, match="sessionid"):
        Route.declare("GET", "/agent/{agentId}/sessions/{sessionid}", ADMIN)
    route = Route.declare("GET", "/agent/{agentId}/sessions/{sessionId}", PATH_AGENT)
    assert route.rule == "/v1/opscore/agent/<agentId>/sessions/<sessionId>"
    assert [(parameter.name, parameter.log_key) for parameter in route.ids] == [
        ("agentId", "agent_id"),
        ("sessionId", "session_id"),
    ]


def _admin() -> dict[str, Any]:
    return {"authorizer": ADMIN_CONTEXT}
