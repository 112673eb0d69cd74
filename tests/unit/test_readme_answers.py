"""How the README tour test reads the README and compares answers (tests/e2e/test_readme_tour.py runs the tour).

The comparison must be strict where the README is: a renamed or missing field, another literal, another status or
error code, a timestamp of another format, one id standing for two all fail; `...` is the only looseness.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from opscore_tools.cli import app
from tests.conftest import REPO
from tests.e2e.conftest import Contract
from tests.e2e.readme_tour import Answer, Block, Call, Comparison, Readme, judge, parse_pattern, pollable, steps

LEASE: dict[str, Any] = {
    "task_id": "6618956917b9a2412ef600daf4422824-000",
    "session_id": "6618956917b9a2412ef600daf4422824",
    "action": "web.fetch",
    "priority": 5,
    "attempt": 1,
    "lease_expires_at": "2026-12-01T02:33:32.156896Z",
}
LEASE_SHOWN = (
    '{"task_id":"0644e2a7c1d3f5b0e3c1a9f4d2b7e8c6-000","session_id":"0644e2a7c1d3f5b0e3c1a9f4d2b7e8c6",'
    ' "action":"web.fetch","priority":5,"attempt":1,"lease_expires_at":"2026-11-24T10:01:00.000000Z"}'
)
ERROR: dict[str, Any] = {
    "error": {
        "code": "validation_error",
        "message": "the request body is not valid",
        "details": [{"field": "state", "in": "body"}, {"field": "timestamp", "in": "body"}],
    },
    "request_id": "613790f1-8b2e-43e1-b8c5-c5d7bb26952d",
}
ERROR_SHOWN = '{"error": {"code": "validation_error", ..., "details": [{"field": "state", ...}, ...]}, ...}'


def answer(text: str, status: int | None = None) -> Answer:
    return Answer(1, text, parse_pattern(text), status)


def call(body: Any, status: int = 200) -> list[Call]:
    return [Call(status, "POST", "http://127.0.0.1/v1/opscore/x", body)]


@pytest.mark.parametrize(
    ("shown", "body", "status"),
    [
        pytest.param(LEASE_SHOWN, LEASE, 200, id="the same shape, ids and timestamps by format"),
        pytest.param(ERROR_SHOWN, ERROR, 400, id="... for more keys and items"),
        pytest.param('{"items": [{"priority": 8, ...}, ...]}', {"items": [{"priority": 8, "a": 1}, {}]}, 200, id="[]"),
        pytest.param('{"id": "...-000", "at": ..., "x": "..."}', {"id": "f-000", "at": [3], "x": ""}, 201, id="..."),
    ],
)
def test_answers_of_the_readmes_shape_pass(shown: str, body: Any, status: int) -> None:
    assert judge(answer(shown), 0, call(body, status), Comparison()) is None


def _with(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, **changes}


@pytest.mark.parametrize(
    ("shown", "status", "body", "answered", "problem"),
    [
        (LEASE_SHOWN, None, {**LEASE, "lease_expiry": LEASE["lease_expires_at"]}, 200, "also answered"),
        (LEASE_SHOWN, None, {k: v for k, v in LEASE.items() if k != "attempt"}, 200, "did not answer"),
        (LEASE_SHOWN, None, _with(LEASE, priority=7), 200, "shows 5"),
        (LEASE_SHOWN, None, _with(LEASE, priority="5"), 200, "shows 5"),
        (LEASE_SHOWN, None, _with(LEASE, action="web.get"), 200, "web.fetch"),
        (LEASE_SHOWN, None, _with(LEASE, lease_expires_at="2026-12-01T02:33:32Z"), 200, "does not have"),
        (LEASE_SHOWN, None, _with(LEASE, session_id="0" * 32), 200, "as elsewhere"),
        (LEASE_SHOWN, 202, LEASE, 200, "status 202"),
        (LEASE_SHOWN, None, None, 204, "answered none"),
        (ERROR_SHOWN, None, ERROR, 200, "an error"),
        (ERROR_SHOWN, None, {**ERROR, "error": {**ERROR["error"], "code": "invalid"}}, 400, "validation_error"),
        (ERROR_SHOWN, None, {**ERROR, "error": {**ERROR["error"], "details": []}}, 400, "no item"),
        ('{"items": [{"id": 1}]}', None, {"items": [{"id": 1}, {"id": 2}]}, 200, "2"),
    ],
    ids=[
        "a renamed field",
        "a missing field",
        "another priority",
        "a number as a string",
        "another action",
        "a timestamp of another format",
        "one id shown, two answered",
        "another status",
        "a 204 for a body",
        "an error answered 200",
        "another error code",
        "a detail missing",
        "more items than shown",
    ],
)
def test_answers_that_differ_from_the_readme_fail(
    shown: str, status: int | None, body: Any, answered: int, problem: str
) -> None:
    found = judge(answer(shown, status), 0, call(body, answered), Comparison())
    assert found is not None
    assert problem in found


def test_a_step_without_an_answer_must_succeed() -> None:
    assert judge(None, 0, call({"ok": True}, 201), Comparison()) is None
    assert judge(None, 0, call({"error": {}}, 404), Comparison()) is not None
    assert judge(None, 1, [], Comparison()) is not None


def test_only_reads_and_empty_leases_are_asked_again() -> None:
    shown = answer('{"a": 1}')
    assert pollable(shown, [Call(200, "GET", "u", {})])
    assert pollable(shown, [Call(204, "POST", "u", None)])
    assert not pollable(shown, [Call(200, "POST", "u", {})])
    assert not pollable(None, [Call(200, "GET", "u", {})])


def test_the_readme_is_read_as_the_tour_runs_it() -> None:
    readme = Readme.read(REPO / "README.md")
    tour = [step for block in readme.tour_blocks() for step in steps(block)]
    assert tour, "the README has a tour"
    assert "triage.yaml" in readme.files(), "the tour posts triage.yaml, which the README shows"
    answered = [step.answer.line for step in tour if step.answer is not None]
    assert answered == readme.answer_lines(), "every answer shown is an answer the tour checks"
    assert not [step.line for step in tour if re.search(r"<\w+>", step.command)], "no placeholder a reader cannot run"


# The route table of the README's "The API (v1)" against docs/openapi.yaml: the same routes, and the answer keys a
# row shows (`-> 201 {"key_id", ...}`) are the properties of the documented answer (all of them, unless `...`).
ROUTE_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/\S*)` \|[^|]*\|(.*)\|\s*$")
ROW_ANSWER = re.compile(r"-> (?:(\d{3}) )?`\{([^`]*)\}`")


def _spec() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text()))


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (`#/components/...`) to the node they name."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _routes() -> list[tuple[str, str, str]]:
    return [
        (row.group(1), row.group(2), row.group(3))
        for line in (REPO / "README.md").read_text().splitlines()
        if (row := ROUTE_ROW.match(line))
    ]


def test_the_readmes_route_table_is_the_specs() -> None:
    spec = _spec()
    table = {(method, path) for method, path, _ in _routes()}
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert table == documented, f"only in the README: {table - documented}; only in the spec: {documented - table}"


@pytest.mark.parametrize(
    ("method", "path", "what"),
    [pytest.param(*route, id=f"{route[0]} {route[1]}") for route in _routes() if ROW_ANSWER.search(route[2])],
)
def test_the_answer_keys_in_the_readmes_route_table_are_the_specs(method: str, path: str, what: str) -> None:
    spec = _spec()
    shown = ROW_ANSWER.search(what)
    assert shown is not None
    status, inner = shown.group(1) or "200", shown.group(2)
    response = _resolve(spec, spec["paths"][path][method.lower()]["responses"][status])
    schema = _resolve(spec, response["content"]["application/json"]["schema"])
    keys, properties = set(re.findall(r'"(\w+)"', inner)), set(schema["properties"])
    assert keys <= properties, f"{method} {path} {status}: the spec does not document {keys - properties}"
    if "..." not in inner:
        assert keys == properties, f"{method} {path} {status}: the README omits {properties - keys}"


def test_the_specs_request_examples_are_valid_requests() -> None:
    contract = Contract(REPO / "docs" / "openapi.yaml")
    examples = [
        (f"#/paths/{path.replace('/', '~1')}/{method}/requestBody/content/{media.replace('/', '~1')}", example)
        for path, operations in contract.spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
        for media, content in operation["requestBody"]["content"].items()
        for example in content.get("examples", {}).values()
    ]
    assert examples, "the spec shows request examples"
    for pointer, example in examples:
        contract.validate(example["value"], f"{pointer}/schema")


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(block, id=f"README line {block.first_line}")
        for block in Readme.read(REPO / "README.md").blocks
        if block.language in {"yaml", "json"} and re.search(r"^\"?tasks\"?:", "\n".join(block.lines), re.MULTILINE)
    ],
)
def test_every_template_the_readme_shows_is_one_the_api_accepts(block: Block, tmp_path: Path) -> None:
    """The templates shown but not posted by the tour are still checked, as the API checks them (`opscore asl`)."""
    template = tmp_path / f"template.{block.language}"
    template.write_text("\n".join(block.lines) + "\n")
    result = CliRunner().invoke(app, ["asl", str(template)])
    assert result.exit_code == 0, result.output
