"""Generate the Python SDK's models (sdk/python/opscore_sdk/models.py) from docs/openapi.yaml: `make sdk-models`.

datamodel-code-generator reads the OpenAPI document; the document refers to the workflow template's own schema
by its `$id` (urn:opscore:schema:workflow-template), which no generator can fetch. So the spec is first made
self-contained, deterministically: the template schema's `$defs` and the template itself are copied into
`components/schemas` (as TaskTemplate, RetryPolicy, ..., and WorkflowTemplate) and each urn reference pointed at
its copy. The template schema (written by pydantic) spells an optional value `anyOf: [{type: T, ...}, {type: null}]`,
which the generator turns into a root model whose default (null) does not fit its type: each such pair is
rewritten as the equivalent `type: [T, "null"]` with the same constraints. Every schema an answer may carry loses
its `additionalProperties: false`, so that the SDK ignores a field a newer Ops-Core adds rather than refusing the
whole answer; request bodies no answer carries keep it. The generator then runs with fixed
options and a fixed header (no timestamp), so the same spec always gives the same file, which the drift test checks.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "docs" / "openapi.yaml"
TEMPLATE_SCHEMA = REPO / "docs" / "workflow-template.schema.json"
OUTPUT = REPO / "sdk" / "python" / "opscore_sdk" / "models.py"
TEMPLATE_URN = "urn:opscore:schema:workflow-template"
TEMPLATE_NAME = "WorkflowTemplate"
HEADER = (
    "# Generated from docs/openapi.yaml by datamodel-code-generator: do not edit. Regenerate with `make sdk-models`\n"
    "# (python -m opscore_tools.sdk_models); tests/sdk/test_models_drift.py fails when this file is out of date."
)
OPTIONS = [
    "--input-file-type=openapi",
    "--output-model-type=pydantic_v2.BaseModel",
    "--target-python-version=3.12",
    "--use-standard-collections",
    "--use-union-operator",
    "--use-annotated",
    "--field-constraints",
    "--use-schema-description",
    "--use-field-description",
    "--use-double-quotes",
    "--enum-field-as-literal=all",
    "--collapse-root-models",
    "--disable-timestamp",
    "--formatters",
    "ruff-format",
    "ruff-check",
]


def self_contained_spec() -> dict[str, Any]:
    """docs/openapi.yaml with the workflow template schema copied in and every urn reference pointed at the copy."""
    spec = yaml.safe_load(SPEC.read_text())
    template = json.loads(TEMPLATE_SCHEMA.read_text())
    definitions = template.pop("$defs", {})
    for name in ("$id", "$schema"):
        template.pop(name, None)
    schemas = spec["components"]["schemas"]
    for name, definition in definitions.items():
        schemas.setdefault(name, definition)
    schemas[TEMPLATE_NAME] = template
    contained: dict[str, Any] = _rewrite_refs(spec)
    # Schemas only answers carry take new fields; one a request body carries too (a workflow template, its retry
    # policy) keeps refusing them, so that a misspelt field fails before it is sent rather than vanishing.
    for name in sorted(_reached(contained, "responses") - _reached(contained, "requestBody", "requestBodies")):
        _open_to_new_fields(contained["components"]["schemas"][name])
    return contained


def _reached(spec: dict[str, Any], part: str, components: str | None = None) -> set[str]:
    """The component schemas that one part of the operations (`responses`, `requestBody`) refers to, with the
    shared components of that kind, and the schemas they refer to in turn."""
    schemas = spec["components"]["schemas"]
    pending = _references(
        [
            operation.get(part, {})
            for item in spec["paths"].values()
            for operation in item.values()
            if isinstance(operation, dict)
        ]
        + [spec["components"].get(components or part, {})]
    )
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in found and name in schemas:
            found.add(name)
            pending |= _references(schemas[name])
    return found


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(item) for item in node))
    return set()


def _open_to_new_fields(node: Any) -> None:
    """Drop `additionalProperties: false` from a schema and the objects inside it, so that its model ignores a field
    a newer Ops-Core adds to an answer instead of refusing the answer (pydantic's default). Request bodies that no
    answer carries keep it: a misspelt field there fails before it is sent."""
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            del node["additionalProperties"]
        for value in node.values():
            _open_to_new_fields(value)
    elif isinstance(node, list):
        for item in node:
            _open_to_new_fields(item)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        rewritten = _nullable_as_type_list({key: _rewrite_refs(value) for key, value in node.items()})
        reference = rewritten.get("$ref")
        if isinstance(reference, str):
            rewritten["$ref"] = _local_ref(reference)
        return rewritten
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return copy.copy(node)


def _nullable_as_type_list(schema: dict[str, Any]) -> dict[str, Any]:
    """`{anyOf: [{type: T, ...constraints}, {type: null}], ...}` as `{type: [T, "null"], ...constraints, ...}`."""
    options = schema.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and options[1] == {"type": "null"}):
        return schema
    value = options[0]
    if not (isinstance(value, dict) and isinstance(value.get("type"), str)):
        return schema
    merged = {key: item for key, item in schema.items() if key != "anyOf"}
    for key, item in value.items():
        if key == "description" and "description" in merged:
            continue  # the property's own description says more than its value type's
        merged[key] = [item, "null"] if key == "type" else item
    return merged


def _local_ref(reference: str) -> str:
    if reference == TEMPLATE_URN:
        return f"#/components/schemas/{TEMPLATE_NAME}"
    if reference.startswith(f"{TEMPLATE_URN}#/$defs/"):
        return "#/components/schemas/" + reference.rsplit("/", 1)[1]
    if reference.startswith("#/$defs/"):  # a reference inside the template schema, to one of its own $defs
        return "#/components/schemas/" + reference.rsplit("/", 1)[1]
    return reference


def generate() -> str:
    """The models module's source, as the generator writes it for the current spec."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "openapi.json"
        target = Path(folder) / "models.py"
        source.write_text(json.dumps(self_contained_spec(), indent=1, sort_keys=True))
        executable = Path(sys.executable).with_name("datamodel-codegen")
        subprocess.run(  # noqa: S603 - the pinned generator, with arguments built here
            [
                str(executable),
                "--input",
                str(source),
                "--output",
                str(target),
                "--custom-file-header",
                HEADER,
                *OPTIONS,
            ],
            check=True,
            cwd=folder,
        )
        return target.read_text()


def main() -> None:
    OUTPUT.write_text(generate())
    print(f"wrote {OUTPUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
