"""Every route of docs/openapi.yaml, fuzzed over HTTP against `opscore local`: no 5xx, and every answer's status,
content type and body as the document says. The routes are read from the document, so a new route is fuzzed the
day it is documented."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REPO
from tests.fuzz.conftest import OTHER_AGENT, OWN_AGENT, Fuzzed, spec_with_template_inlined

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

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


@schema.parametrize()
@FUZZ
def test_as_admin(case: schemathesis.Case, fuzzed_runtime: Fuzzed) -> None:
    case.call_and_validate(
        base_url=fuzzed_runtime.base_url, headers={"X-API-Key": fuzzed_runtime.admin_key}, checks=CHECKS
    )


@agent_routes.parametrize()
@FUZZ
def test_as_an_agent_on_its_own_routes(case: schemathesis.Case, fuzzed_runtime: Fuzzed) -> None:
    case.path_parameters = {**(case.path_parameters or {}), "agentId": OWN_AGENT}
    case.call_and_validate(
        base_url=fuzzed_runtime.base_url, headers={"X-API-Key": fuzzed_runtime.agent_keys[OWN_AGENT]}, checks=CHECKS
    )


@other_agents_routes.parametrize()
@settings(FUZZ, max_examples=20)
def test_as_an_agent_on_another_agents_routes(case: schemathesis.Case, fuzzed_runtime: Fuzzed) -> None:
    case.path_parameters = {**(case.path_parameters or {}), "agentId": OTHER_AGENT}
    response = case.call_and_validate(
        base_url=fuzzed_runtime.base_url, headers={"X-API-Key": fuzzed_runtime.agent_keys[OWN_AGENT]}, checks=CHECKS
    )
    if response.request.headers.get("X-API-Key") == fuzzed_runtime.agent_keys[OWN_AGENT]:
        # refused (403), or no such route for any key (404): never served
        assert response.status_code in (403, 404), (response.status_code, response.text)
    else:
        # schemathesis sent this case without the key (its check of the security scheme)
        assert response.status_code == 401, (response.status_code, response.text)
