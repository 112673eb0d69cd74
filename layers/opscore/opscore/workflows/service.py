"""createWorkflow and its reads: versioned, immutable workflow templates.

Posting a template stores it as the workflow's next version, unless that exact template (compared with defaults
filled in, key order ignored) is already one of its versions: then that version is the answer and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from opscore.aws.dynamodb import ConditionFailed
from opscore.core.clock import format_timestamp
from opscore.core.errors import Conflict, NotFound
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import attempts
from opscore.workflows.models import WorkflowCreated, WorkflowPage, WorkflowSummary, WorkflowVersion
from opscore.workflows.store import StoredWorkflow, WorkflowStore
from opscore.workflows.templates import WorkflowTemplate, check_template

MAX_WRITE_ATTEMPTS = 5


@dataclass(frozen=True)
class CreateResult:
    created: WorkflowCreated
    new_version: bool


class Workflows:
    def __init__(
        self,
        store: WorkflowStore,
        now: Callable[[], datetime],
        prepare: Callable[[WorkflowTemplate], object] = lambda _template: None,
    ) -> None:
        self._store = store
        self._now = now
        # Readies what a new version runs on (its session runner) before the version is stored: a version that
        # exists can be triggered.
        self._prepare = prepare

    def create(self, template: WorkflowTemplate, created_by: str) -> CreateResult:
        check_template(template)
        content_hash = template.content_hash()
        for _ in attempts(MAX_WRITE_ATTEMPTS):
            existing = self._store.version_with_hash(template.name, content_hash)
            if existing is not None:
                return CreateResult(WorkflowCreated(workflow_id=template.name, version=existing), new_version=False)
            latest = self._store.latest_version(template.name)
            self._prepare(template)
            stored = StoredWorkflow(
                workflow_id=template.name,
                version=latest + 1,
                template_json=template.canonical(),
                content_hash=content_hash,
                created_at=format_timestamp(self._now()),
            )
            try:
                self._store.put_version(stored, template.description, created_by, expected_latest=latest)
            except ConditionFailed:
                continue  # another version (or this same template) was stored since the reads: look again
            logger.info(
                "workflow version created",
                extra={
                    "event": "workflow_version_created",
                    "workflow_id": stored.workflow_id,
                    "version": stored.version,
                    "tasks": len(template.tasks),
                },
            )
            metrics.add_metric(name="WorkflowVersionsCreated", unit=MetricUnit.Count, value=1)
            return CreateResult(
                WorkflowCreated(workflow_id=stored.workflow_id, version=stored.version), new_version=True
            )
        raise Conflict(f"workflow {template.name} is changing too fast to add this version now; send it again")

    def get(self, workflow_id: str, version: int | None) -> WorkflowVersion:
        stored = self._store.get_version(workflow_id, version)
        if stored is None:
            which = f"version {version} of workflow {workflow_id}" if version is not None else f"workflow {workflow_id}"
            raise NotFound(f"there is no {which}")
        return WorkflowVersion(
            workflow_id=stored.workflow_id,
            version=stored.version,
            created_at=stored.created_at,
            template=json.loads(stored.template_json),
        )

    def list(self, limit: int, next_token: str | None) -> WorkflowPage:
        entries, token = self._store.list_catalogue(limit, next_token)
        items = [
            WorkflowSummary(
                workflow_id=entry.workflow_id,
                latest_version=entry.latest_version,
                description=entry.description,
                updated_at=entry.updated_at,
            )
            for entry in entries
        ]
        return WorkflowPage(items=items, next_token=token)
