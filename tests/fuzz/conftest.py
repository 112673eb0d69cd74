"""Fuzz tier: schemathesis generates requests from docs/openapi.yaml and sends them to `opscore local`, started for
this tier alone (its data never meets the end-to-end tier's), as an admin and as agents."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import NO_PER_KEY_LIMIT, LocalProcess, start_local

ADMIN_KEY = "fuzz-admin-key-for-the-local-runtime"
# The agents the fuzzer acts as: each run pins its own agent's id in every {agentId}.
OWN_AGENT = "fuzz-own-agent"
OTHER_AGENT = "fuzz-other-agent"


@dataclass(frozen=True)
class Fuzzed:
    base_url: str
    admin_key: str
    agent_keys: dict[str, str]


@pytest.fixture(scope="session")
def fuzzed_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    running: LocalProcess = start_local(
        tmp_path_factory.mktemp("fuzz"), {"OPSCORE_ADMIN_KEY": ADMIN_KEY, **NO_PER_KEY_LIMIT}
    )
    try:
        keys = {agent: _agent_with_key(running.base_url, agent) for agent in (OWN_AGENT, OTHER_AGENT)}
        yield Fuzzed(running.base_url, running.admin_key, keys)
    finally:
        assert running.stop() == 0, "the fuzzed runtime stops cleanly"


def _agent_with_key(base_url: str, agent_id: str) -> str:
    """Register the agent and issue its key, as an operator would (admin calls)."""
    status, _ = _admin_call(base_url, "PUT", f"/agent/{agent_id}", {"name": agent_id, "delivery": "poll"})
    assert status in (200, 201), status
    status, created = _admin_call(base_url, "POST", "/keys", {"agent_id": agent_id})
    assert status == 201, created
    return str(created["api_key"])


def _admin_call(base_url: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        headers = {"X-API-Key": ADMIN_KEY, "Content-Type": "application/json"}
        connection.request(method, parts.path + path, body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        connection.close()


def spec_with_template_inlined(spec_path: Path) -> dict[str, Any]:
    """docs/openapi.yaml with its workflow template schema (a $ref to urn:opscore:schema:workflow-template, which
    schemathesis cannot fetch) copied into components/schemas, so every reference resolves inside one document."""
    import yaml

    spec: dict[str, Any] = yaml.safe_load(spec_path.read_text())
    template = json.loads((spec_path.parent / "workflow-template.schema.json").read_text())
    urn = template.pop("$id")
    template.pop("$schema", None)
    definitions = template.pop("$defs", {})
    schemas = spec["components"]["schemas"]
    schemas["WorkflowTemplateDocument"] = template
    for name, definition in definitions.items():
        schemas[f"WorkflowTemplate{name}"] = definition

    def local(reference: str) -> str:
        reference = reference.removeprefix(urn)
        if reference in ("", "#"):
            return "#/components/schemas/WorkflowTemplateDocument"
        return "#/components/schemas/WorkflowTemplate" + reference.removeprefix("#/$defs/")

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: local(value) if key == "$ref" and not value.startswith("#/components") else rewrite(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    return dict(rewrite(spec))
