"""API contracts of stored workflows: a created version, a version, the catalogue."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from opscore.core.contracts import ResponseModel


class WorkflowCreated(ResponseModel):
    workflow_id: str
    version: int


class WorkflowVersion(ResponseModel):
    workflow_id: str
    version: int
    created_at: str
    template: dict[str, Any] = Field(description="The template as stored, defaults filled in.")


class WorkflowSummary(ResponseModel):
    workflow_id: str
    latest_version: int
    description: str | None
    updated_at: str


class WorkflowPage(ResponseModel):
    items: list[WorkflowSummary]
    next_token: str | None = Field(
        default=None, exclude_if=lambda token: token is None, description="Present when more workflows follow."
    )
