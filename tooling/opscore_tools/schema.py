"""Write docs/workflow-template.schema.json from the template model: `python -m opscore_tools.schema` (make schema)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from opscore.workflows.templates import WorkflowTemplate

SCHEMA_ID = "urn:opscore:schema:workflow-template"


def workflow_template_schema() -> dict[str, Any]:
    schema = WorkflowTemplate.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Ops-Core workflow template",
        "description": (
            "A workflow template, posted to POST /v1/opscore/workflows as JSON or YAML. Besides this schema: task ids "
            "are unique, a fallback names a task of the same template, fallbacks never lead back to their task, and "
            "at least one task is not fallback_only."
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
