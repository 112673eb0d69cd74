"""startSession, the session reads, and cancel.

A trigger resolves the workflow version, builds the session plan, stores the session as `waiting` and starts the
runner's execution (named after the session). Everything after that is recorded by the runner; the reads here show
it without asking Step Functions."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opscore.agents.registry import Registry
from opscore.aws.dynamodb import Item, get_n, get_s
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import NotFound
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.dispatch.queue import TaskRef
from opscore.sessions.errors import SESSION_CANCELLED_ERROR, SessionEnded
from opscore.sessions.models import (
    AdHocTask,
    AttemptRecord,
    Problem,
    SessionPage,
    SessionStarted,
    SessionStatus,
    SessionSummary,
    SessionView,
    TaskStarted,
    TaskStatus,
    TaskView,
    TriggerRequest,
    task_id,
)
from opscore.sessions.plan import build_plan
from opscore.sessions.store import NewSession, SessionEnd, SessionStore, decode
from opscore.workflows.service import Workflows
from opscore.workflows.templates import WorkflowTemplate, check_template

if TYPE_CHECKING:
    from opscore.dispatch.health import AgentHealth


AD_HOC_WORKFLOW = "ad-hoc"


def new_session_id(now: datetime) -> str:
    """32 hex digits: the creation time in microseconds (13), then 76 random bits (19). Ids sort by age."""
    return f"{int(now.timestamp() * 1_000_000):013x}{secrets.token_hex(10)[:19]}"


class Sessions:
    def __init__(  # noqa: PLR0917 - the services a session touches
        self,
        store: SessionStore,
        registry: Registry,
        workflows: Workflows,
        runner: Callable[[], RunnerControl],
        health: Callable[[], AgentHealth],
        wake: Callable[[str], object],
        now: Callable[[], datetime],
    ) -> None:
        # The runner's client and agent health are built on first use: the read routes never need them.
        self._store = store
        self._registry = registry
        self._workflows = workflows
        self._runner = runner
        self._health = health
        self._wake = wake  # serves an agent's queue when a cancel frees its slot
        self._now = now

    def trigger(self, agent_id: str, request: TriggerRequest, triggered_by: str) -> SessionStarted:
        self._require_agent(agent_id)
        template, version = self._resolve(request, triggered_by)
        return self._start(agent_id, template, version, request.input, request.priority, triggered_by)

    def run_task(self, agent_id: str, task: AdHocTask, triggered_by: str) -> TaskStarted:
        """An ad-hoc task: a session of its own (workflow `ad-hoc`, version 0: no stored workflow has it)."""
        self._require_agent(agent_id)
        template = WorkflowTemplate(name=AD_HOC_WORKFLOW, tasks=[task])
        started = self._start(agent_id, template, 0, {}, None, triggered_by)
        return TaskStarted(**started.model_dump(), task_id=task_id(started.session_id, 0))

    def _require_agent(self, agent_id: str) -> None:
        if self._registry.agent_item(agent_id) is None:  # before anything is stored
            raise NotFound(f"agent {agent_id} is not registered")

    def _start(  # noqa: PLR0917 - what one session is started from
        self,
        agent_id: str,
        template: WorkflowTemplate,
        version: int,
        session_input: dict[str, Any],
        priority: int | None,
        triggered_by: str,
    ) -> SessionStarted:
        plan = build_plan(template, version, session_input, priority)
        now = self._now()
        session_id = new_session_id(now)
        tasks = [{"id": task.id, "action": task.action, "fallback_only": task.fallback_only} for task in plan.tasks]
        self._store.create_session(
            NewSession(
                session_id=session_id,
                agent_id=agent_id,
                workflow_id=template.name,
                version=version,
                priority=priority,
                input_json=canonical_json(session_input),
                tasks_json=canonical_json(tasks),
                created_at=format_timestamp(now),
                execution_arn=self._runner().execution_arn(session_id),
                triggered_by=triggered_by,
            )
        )
        runner_input = {"session_id": session_id, "agent_id": agent_id, "plan": plan.model_dump(mode="json")}
        try:
            self._runner().start(session_id, runner_input)
        except Exception as error:
            problem = Problem(type="runner_not_started", message=f"the session runner did not start: {error}")
            self._store.end_open(
                session_id,
                SessionEnd(status="error", ended_at=format_timestamp(self._now()), error_json=_json(problem)),
            )
            raise
        logger.info(
            "session started",
            extra={"session_id": session_id, "agent_id": agent_id, "workflow_id": template.name, "version": version},
        )
        metrics.add_metric(name="SessionsStarted", unit=MetricUnit.Count, value=1)
        return SessionStarted(
            session_id=session_id, status=SessionStatus.WAITING, workflow_id=template.name, version=version
        )

    def get(self, agent_id: str, session_id: str) -> SessionView:
        session, tasks = self._store.session_with_tasks(session_id)
        session = _owned(session, agent_id, session_id)
        return session_view(session, tasks)

    def list(self, agent_id: str, limit: int, next_token: str | None) -> SessionPage:
        self._require_agent(agent_id)
        items, token = self._store.sessions_of(agent_id, limit, next_token)
        return SessionPage(items=[session_summary(item) for item in items], next_token=token)

    def cancel(self, agent_id: str, session_id: str, cancelled_by: str) -> SessionView:
        session = self._store.get_session(session_id)
        session = _owned(session, agent_id, session_id)
        now = format_timestamp(self._now())
        cancelled_now = self._store.cancel(session_id, now, cancelled_by)
        if not cancelled_now:
            status = get_s(self._store.get_session(session_id) or {}, "status")
            if status != SessionStatus.CANCELLED:
                raise SessionEnded(f"session {session_id} has already ended ({status})")
        # The session is cancelled from here on, and every runner write is guarded by its status. Closing what was
        # open and stopping the execution is repeated by a repeated cancel, so a cancel cut short is finished.
        try:
            self._close_open_tasks(session_id, agent_id, now)
        finally:
            self._runner().stop(get_s(session, "execution_arn") or "", cause=f"cancelled by key {cancelled_by}")
        if cancelled_now:
            logger.info(
                "session cancelled",
                extra={"session_id": session_id, "agent_id": agent_id, "old_status": get_s(session, "status")},
            )
            metrics.add_metric(name="SessionsCancelled", unit=MetricUnit.Count, value=1)
        return self.get(agent_id, session_id)

    def _close_open_tasks(self, session_id: str, agent_id: str, now: str) -> None:
        # Twice: an agent may lease a task between this read and its skip; the second pass ends that lease.
        for _ in range(2):
            _, tasks = self._store.session_with_tasks(session_id)
            self._close(session_id, agent_id, tasks, now)

    def _close(self, session_id: str, agent_id: str, tasks: Sequence[Item], now: str) -> None:
        for task in tasks:
            status = get_s(task, "status")
            index = get_n(task, "index") or 0
            if status == TaskStatus.LEASED:
                # The agent's slot comes back with the lease; the cancel is not the agent's failure.
                ref = TaskRef(session_id, index, get_n(task, "dispatch_seq") or 0)
                if self._health().end_lease(agent_id, ref, status=TaskStatus.SKIPPED, error=None, counted=None):
                    self._store.skip_task(session_id, index, TaskStatus.SKIPPED, now)  # stamps its end
                    self._wake(agent_id)
            elif status is not None and TaskStatus(status).open:
                self._store.skip_task(session_id, index, status, now)
            elif status != TaskStatus.SKIPPED:
                continue
            token = get_s(task, "task_token")
            if token is not None:
                # End the runner's wait now: it records nothing more (the session is cancelled) and finishes.
                self._runner().fail(token, SESSION_CANCELLED_ERROR, "the session was cancelled")

    def _resolve(self, request: TriggerRequest, triggered_by: str) -> tuple[WorkflowTemplate, int]:
        if request.template is not None:
            check_template(request.template, prefix="template.")
            created = self._workflows.create(request.template, created_by=triggered_by).created
            return request.template, created.version
        assert request.workflow_id is not None  # the model allows only one of the two
        stored = self._workflows.get(request.workflow_id, request.version)
        return WorkflowTemplate.model_validate(stored.template), stored.version


def _owned(session: Item | None, agent_id: str, session_id: str) -> Item:
    """The session if it is this agent's; another agent's session is answered as missing."""
    if session is None or get_s(session, "agent_id") != agent_id:
        raise NotFound(f"agent {agent_id} has no session {session_id}")
    return session


def _json(model: Problem) -> str:
    return canonical_json(model.model_dump(mode="json"))


def _problem(value: str | None) -> Problem | None:
    decoded = decode(value)
    return Problem.model_validate(decoded) if decoded else None


def session_summary(item: Item) -> SessionSummary:
    return SessionSummary(
        session_id=get_s(item, "session_id") or "",
        agent_id=get_s(item, "agent_id") or "",
        workflow_id=get_s(item, "workflow_id") or "",
        version=get_n(item, "version") or 0,
        status=SessionStatus(get_s(item, "status") or "waiting"),
        priority=get_n(item, "priority"),
        created_at=get_s(item, "created_at") or "",
        started_at=get_s(item, "started_at"),
        ended_at=get_s(item, "ended_at"),
        error=_problem(get_s(item, "error")),
    )


def session_view(session: Item, task_items: list[Item]) -> SessionView:
    summary = session_summary(session)
    by_index = {get_n(item, "index"): item for item in task_items}
    tasks = [
        _task_view(summary.session_id, index, entry, by_index.get(index), summary.status.ended)
        for index, entry in enumerate(json.loads(get_s(session, "tasks") or "[]"))
    ]
    return SessionView(**summary.model_dump(), input=decode(get_s(session, "input")) or {}, tasks=tasks)


def _task_view(session_id: str, index: int, entry: dict[str, object], item: Item | None, ended: bool) -> TaskView:
    if item is None:
        item = {}
    status = get_s(item, "status")
    if status is None:
        status = TaskStatus.SKIPPED if ended else TaskStatus.PENDING
    history_map = item.get("history", {}).get("M", {})
    history = [
        AttemptRecord.model_validate_json(history_map[key]["S"])
        for key in sorted(history_map, key=int)
        if "S" in history_map[key]
    ]
    return TaskView(
        task_id=task_id(session_id, index),
        id=str(entry["id"]),
        action=str(entry["action"]),
        status=TaskStatus(status),
        attempts=get_n(item, "attempts") or 0,
        priority=get_n(item, "priority"),
        input=decode(get_s(item, "input")),
        started_at=get_s(item, "started_at"),
        ended_at=get_s(item, "ended_at"),
        duration_ms=get_n(item, "duration_ms"),
        scheduled_for=get_s(item, "scheduled_for"),
        output=decode(get_s(item, "output")),
        error=_problem(get_s(item, "error")),
        fallback_only=bool(entry.get("fallback_only")),
        fallback_for=sorted(item.get("fallback_for", {}).get("SS", [])),
        history=history,
    )
