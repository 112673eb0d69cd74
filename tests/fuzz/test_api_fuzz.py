"""Every route of docs/openapi.yaml, fuzzed over HTTP against `opscore local`: no 5xx, every answer's status, content
type and body as the document says, every request the document allows accepted and every one it forbids refused. The
routes are read from the document, so a new route is fuzzed the day it is documented."""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from opscore.agents.models import AGENT_ID_PATTERN
from tests.conftest import REPO
from tests.fuzz.conftest import OTHER_AGENT, OWN_AGENT, Fuzzed, spec_with_template_inlined

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]

# Rules docs/openapi.yaml states in words because no JSON Schema can hold them (they depend on the server's state or
# clock, or compare two values), so schemathesis generates requests that break them and takes them for valid. Such a
# request refused 400 is excused from `positive_data_acceptance` only when every problem the answer names matches one
# of these (where, field, type, message): any other problem in the same answer still fails the run, and every other
# check still runs on it.
RULES_NO_SCHEMA_HOLDS = [
    # A page token is opaque: only one the listing itself returned is valid.
    ("query", r"next_token", r"invalid", r"not a valid page token"),
    # Two parameters compared: a window whose start is after its end.
    ("query", r"since", r"invalid", r"must not be after until"),
    # Moments: an expiry in the future (and, its offset applied, from 1970 to 9998); a state report's timestamp in
    # the window docs/openapi.yaml says JSON Schema cannot state (from 1970 in UTC, at most the clock skew ahead).
    ("body", r"expires_at|old_key_expires_at", r"invalid", r"must be after now"),
    ("body", r"expires_at|old_key_expires_at", r"value_error", r"Value error, \w+ must be a real date-time .*"),
    ("body", r"timestamp", r"future_timestamp", r"must not be more than \d+s ahead of the server clock.*"),
    ("body", r"timestamp", r"value_error", r"Value error, timestamp must not be before 1970-01-01T00:00:00Z"),
    # Two fields compared: a task's heartbeat below its timeout (templates, inline templates, ad-hoc tasks).
    (
        "body",
        r"(template\.)?(tasks\.\d+\.)?heartbeat_seconds",
        r"value_error",
        r"Value error, heartbeat_seconds must be less than timeout_seconds",
    ),
    # What the workflow template schema's description lists "besides this schema", rules over the whole task list:
    # unique task ids, a fallback or reference names a task of the template that can run before, no fallback cycle,
    # some task not fallback_only (schemathesis takes the document's example reference, `tasks.fetch...`, as valid).
    ("body", r"(template\.)?tasks(\..+)?", r"duplicate|unknown_task|not_before|cycle|nothing_to_run", r".+"),
]


def refused_only_for_rules_no_schema_holds(response: Any) -> bool:
    if response.status_code != 400:
        return False
    details = response.json().get("error", {}).get("details") or []
    return bool(details) and all(
        any(
            problem["in"] == where
            and re.fullmatch(field, problem["field"])
            and re.fullmatch(kind, problem["type"])
            and re.fullmatch(message, problem["message"])
            for where, field, kind, message in RULES_NO_SCHEMA_HOLDS
        )
        for problem in details
    )


def call_and_check(case: schemathesis.Case, base_url: str, key: str) -> Any:
    headers = {"X-API-Key": key}
    response = case.call(base_url=base_url, headers=headers)
    excluded = [positive_data_acceptance] if refused_only_for_rules_no_schema_holds(response) else []
    case.validate_response(response, checks=CHECKS, excluded_checks=excluded, headers=headers)
    return response


SPEC = spec_with_template_inlined(REPO / "docs" / "openapi.yaml")
AGENT_ROUTES = r"^/agent/\{agentId\}"

schema = schemathesis.openapi.from_dict(SPEC)
agent_routes = schema.include(path_regex=AGENT_ROUTES)
# On another agent's routes every answer is a refusal whatever the request holds: the coverage phase's hundreds of
# boundary values would only be refused again, so this run is the examples and the random cases.
other_agents_routes = schemathesis.openapi.from_dict(SPEC).include(path_regex=AGENT_ROUTES)
other_agents_routes.config.phases.update(phases=["examples", "fuzzing"])

FUZZ = settings(
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def pin_agent(case: schemathesis.Case, agent_id: str) -> None:
    """Put `agent_id` in the path, unless the case's point is an agentId the document forbids (a negative case):
    that one is sent as generated, to be refused, rather than replaced by a valid id and taken for accepted."""
    generated = (case.path_parameters or {}).get("agentId")
    if isinstance(generated, str) and not re.fullmatch(AGENT_ID_PATTERN, generated):
        return
    case.path_parameters = {**(case.path_parameters or {}), "agentId": agent_id}


@schema.parametrize()
@FUZZ
def test_as_admin(case: schemathesis.Case, fuzzed_runtime: Fuzzed) -> None:
    call_and_check(case, fuzzed_runtime.base_url, fuzzed_runtime.admin_key)


@agent_routes.parametrize()
@FUZZ
def test_as_an_agent_on_its_own_routes(case: schemathesis.Case, fuzzed_runtime: Fuzzed) -> None:
    pin_agent(case, OWN_AGENT)
    call_and_check(case, fuzzed_runtime.base_url, fuzzed_runtime.agent_keys[OWN_AGENT])


@other_agents_routes.parametrize()
@settings(FUZZ, max_examples=20)
def test_as_an_agent_on_another_agents_routes(case: schemathesis.Case, fuzzed_runtime: Fuzzed) -> None:
    case.path_parameters = {**(case.path_parameters or {}), "agentId": OTHER_AGENT}
    response = call_and_check(case, fuzzed_runtime.base_url, fuzzed_runtime.agent_keys[OWN_AGENT])
    if response.request.headers.get("X-API-Key") == fuzzed_runtime.agent_keys[OWN_AGENT]:
        # refused (403), or no such route for any key (404): never served
        assert response.status_code in (403, 404), (response.status_code, response.text)
    else:
        # schemathesis sent this case without the key (its check of the security scheme)
        assert response.status_code == 401, (response.status_code, response.text)
