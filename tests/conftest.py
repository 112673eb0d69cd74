"""Fixtures every test tier shares: the template, and API Gateway events built from events/."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from opscore_tools.local.emulation import function_environment
from opscore_tools.local.events import with_path_parameters
from opscore_tools.local.template import Template, load_template

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO / "template.yaml"
EVENTS = REPO / "events"

# Powertools reads its service name and metrics namespace when the logger and metrics are created: take them from the
# template, as Lambda would. Then import them once, before the unit and integration tiers block sockets: with
# OPSCORE_TRACING=sdk the X-Ray SDK (through Tracer) opens its emitter's UDP socket at import.
for _name, _value in function_environment(load_template(TEMPLATE_PATH)).items():
    if _name.startswith("POWERTOOLS_"):
        os.environ.setdefault(_name, _value)
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
import opscore.core.observability  # noqa: E402, F401

# Property tests: few examples, no deadline (the machine is shared), and the same examples on every run so a failure
# reproduces. HYPOTHESIS_PROFILE=explore searches more widely, with fresh examples each run.
settings.register_profile("opscore", max_examples=40, deadline=None, derandomize=True, database=None)
settings.register_profile("explore", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "opscore"))

ADMIN_CONTEXT = {"key_id": "0123456789abcdef", "role": "admin", "principalId": "0123456789abcdef"}


def agent_context(agent_id: str) -> dict[str, str]:
    return {"key_id": "fedcba9876543210", "role": "agent", "agent_id": agent_id, "principalId": "fedcba9876543210"}


_UNSET: Any = object()
EventFactory = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def template() -> Template:
    return load_template(TEMPLATE_PATH)


@pytest.fixture
def api_event() -> EventFactory:
    """An event from events/, with the agent id, body, caller, headers or query changed as a test needs."""

    def build(
        name: str,
        *,
        agent_id: str | None = None,
        body: Any = _UNSET,
        raw_body: str | None = None,
        caller: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        key_id: str | None = None,
        path: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        event = copy.deepcopy(json.loads((EVENTS / name).read_text()))
        if agent_id is not None:
            for holder, key in ((event, "path"), (event["requestContext"], "path")):
                holder[key] = holder[key].replace("/agent/agent-1", f"/agent/{agent_id}")
            event["pathParameters"]["agentId"] = agent_id
        if key_id is not None:
            for holder, key in ((event, "path"), (event["requestContext"], "path")):
                holder[key] = holder[key].rsplit("/", 1)[0] + f"/{key_id}"
            event["pathParameters"]["keyId"] = key_id
        if path is not None:
            with_path_parameters(event, path)
        if body is not _UNSET:
            event["body"] = json.dumps(body)
        if raw_body is not None:
            event["body"] = raw_body
        if caller is not None:
            event["requestContext"]["authorizer"] = caller
        if headers is not None:
            event["headers"] = {**event["headers"], **headers}
        if query is not None:
            event["queryStringParameters"] = query
        return event

    return build
