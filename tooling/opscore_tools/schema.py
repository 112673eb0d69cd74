"""Write docs/workflow-template.schema.json from the template model: `python -m opscore_tools.schema` (make schema)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from opscore.workflows.templates import WorkflowTemplate

SCHEMA_ID = "urn:opscore:schema:workflow-template"


# A value in a task's input taken from elsewhere when the task is queued (opscore.workflows.references). The input
# stays any object: the reference's shape is described here, and checked when the template is stored.
PATH_PATTERN = r"^(input|tasks\.[a-z0-9][a-z0-9_-]{0,63}\.output|failed\.error)(\.[A-Za-z0-9_-]+)*$|^failed\.task$"
REFERENCE_SCHEMA: dict[str, Any] = {
    "title": "Reference",
    "description": (
        "Replaced, when the task is queued, by the value at the first path that has one, else by `default`; with "
        "neither, the attempt fails with OpsCore.InputMissing (its retries and fallback apply). Paths: input.KEY... "
        "(the session's input), tasks.ID.output.KEY... (a task that runs before this one; a number picks a list's "
        "item), failed.error.type, failed.error.message and failed.task (in a fallback: the task it stands in for)."
    ),
    "type": "object",
    "properties": {
        "$from": {
            "anyOf": [
                {"type": "string", "pattern": PATH_PATTERN},
                {"type": "array", "items": {"type": "string", "pattern": PATH_PATTERN}, "minItems": 1},
            ]
        },
        "default": {"description": "The value when no path has one (any JSON value without a reference, as it is)."},
    },
    "required": ["$from"],
    "additionalProperties": False,
    "examples": [
        {"$from": "tasks.fetch.output.body"},
        {"$from": ["tasks.fetch.output.title", "input.title"], "default": None},
    ],
}


def workflow_template_schema() -> dict[str, Any]:
    schema = WorkflowTemplate.model_json_schema(mode="validation")
    schema["$defs"]["Reference"] = REFERENCE_SCHEMA
    task_input = schema["$defs"]["TaskTemplate"]["properties"]["input"]
    task_input["additionalProperties"] = {"$ref": "#/$defs/ReferenceOrValue"}
    task_input["not"] = {"required": ["$from"]}  # a reference stands for a value inside the input, not the input
    schema["$defs"]["ReferenceOrValue"] = {
        "description": "Any JSON value; an object with the key `$from`, at any depth, is a Reference.",
        "anyOf": [
            {"$ref": "#/$defs/Reference"},
            {
                "type": "object",
                "not": {"required": ["$from"]},
                "additionalProperties": {"$ref": "#/$defs/ReferenceOrValue"},
            },
            {"type": "array", "items": {"$ref": "#/$defs/ReferenceOrValue"}},
            {"type": ["string", "number", "boolean", "null"]},
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Ops-Core workflow template",
        "description": (
            "A workflow template, posted to POST /v1/opscore/workflows as JSON or YAML. Besides this schema: task ids "
            "are unique, a fallback names a task of the same template, fallbacks never lead back to their task, "
            "at least one task is not fallback_only, and a reference reads only a task that can run before its own."
        ),
        **{key: value for key, value in schema.items() if key != "title"},
    }


def render() -> str:
    return json.dumps(workflow_template_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/workflow-template.schema.json")
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
