"""docs/workflow-template.schema.json is generated from the template model, never edited by hand."""

from __future__ import annotations

from tests.conftest import REPO


def test_the_published_workflow_template_schema_is_the_models() -> None:
    from opscore_tools.schema import render

    published = (REPO / "docs" / "workflow-template.schema.json").read_text()
    assert published == render(), "docs/workflow-template.schema.json is stale: run `make schema`"
