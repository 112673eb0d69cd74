"""startSession, the session reads, and cancel.

A trigger resolves the workflow version, stores the session as `waiting`, starts an execution of the version's
runner (named after the session) with each task's input and priority settled, and marks the session `processing`.
Everything after that is recorded as it happens (see opscore.sessions.attempts); the reads here show it without
asking Step Functions."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opscore.agents.registry import Registry, quarantine_view
from opscore.aws.stepfunctions import EXECUTION_INPUT_LIMIT_BYTES, RunnerControl, execution_arn, execution_input
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import FieldProblem, NotFound, PayloadTooLarge, ValidationFailed
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.sessions.errors import SESSION_CANCELLED_ERROR, SessionEnded
from opscore.sessions.models import (
    AdHocTask,
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
from opscore.sessions.plan import first_mark, task_priorities
from opscore.sessions.records import SessionRecord, TaskRecord, TemplateTask
from opscore.sessions.store import NO_FILTER, SessionFilter, SessionStore
from opscore.sessions.trace import SessionTrace, log_span, session_span, session_trace
from opscore.sessions.writes import NewSession, SessionEnd
from opscore.workflows.references import input_problems
from opscore.workflows.service import Workflows
from opscore.workflows.templates import WorkflowTemplate, check_template

if TYPE_CHECKING:
    from opscore.agents.records import AgentRecord
    from opscore.dispatch.health import AgentHealth
    from opscore.sessions.machines import RunnerMachines


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
        machines: Callable[[], RunnerMachines],
        health: Callable[[], AgentHealth],
        wake: Callable[[str], object],
        now: Callable[[], datetime],
    ) -> None:
        # The runner's client and agent health are built on first use: the read routes never need them.
        self._store = store
        self._registry = registry
        self._workflows = workflows
        self._runner = runner
        self._machines = machines
        self._health = health
        self._wake = wake  # serves an agent's queue when a cancel frees its slot
        self._now = now

    def trigger(self, agent_id: str, request: TriggerRequest, triggered_by: str) -> SessionStarted:
        agent = self._registry.require(agent_id)  # before anything is stored
        if request.template is not None:  # refused before it is stored as a version
            refuse_undeclared(agent, request.template, lambda index: f"template.tasks.{index}.action")
        template, version = self._resolve(request, triggered_by)
        if request.template is None:
            refuse_undeclared(agent, template, lambda index: f"tasks.{index}.action")
        started = self._start(agent_id, template, version, request.input, request.priority, triggered_by)
        return self._warned(started, agent)

    def run_task(self, agent_id: str, task: AdHocTask, triggered_by: str) -> TaskStarted:
        """An ad-hoc task: a session of its own (workflow `ad-hoc`, version 0: no stored workflow has it)."""
        agent = self._registry.require(agent_id)  # before anything is stored
        template = WorkflowTemplate(name=AD_HOC_WORKFLOW, tasks=[task])
        refuse_undeclared(agent, template, lambda _index: "action")
        refuse_references(task)
        started = self._warned(self._start(agent_id, template, 0, {}, None, triggered_by), agent)
        return TaskStarted(**dict(started), task_id=task_id(started.session_id, 0))

    def _warned(self, started: SessionStarted, agent: AgentRecord) -> SessionStarted:
        """A session for a quarantined agent is accepted, and its answer says so (since when and why)."""
        quarantine = quarantine_view(agent, format_timestamp(self._now()))
        if quarantine is not None:
            logger.warning(
                "session started for a quarantined agent",
                extra={
                    "event": "session_for_quarantined_agent",
                    "agent_id": agent.agent_id,
                    "session_id": started.session_id,
                    "since": quarantine.since,
                },
            )
        return started.model_copy(update={"quarantine": quarantine})

    def _start(  # noqa: PLR0917 - what one session is started from
        self,
        agent_id: str,
        template: WorkflowTemplate,
        version: int,
        session_input: dict[str, Any],
        priority: int | None,
        triggered_by: str,
    ) -> SessionStarted:
        now = self._now()
        session_id = new_session_id(now)
        runner_input = {
            "session_id": session_id,
            "agent_id": agent_id,
            "input": session_input,
            "tasks": [
                {"input": task.input, "priority": task_priority}
                for task, task_priority in zip(template.tasks, task_priorities(template, priority), strict=True)
            ],
        }
        refuse_oversized(runner_input)  # before anything is created or stored
        machines = self._machines()
        machine_arn = machines.arn(template)
        tasks = [{"id": task.id, "action": task.action, "fallback_only": task.fallback_only} for task in template.tasks]
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
                execution_arn=execution_arn(machine_arn, session_id),
                triggered_by=triggered_by,
            ),
            first_mark(template, now),
        )
        try:
            machines.start(template, machine_arn, session_id, runner_input)
        except Exception as error:
            problem = Problem(type="runner_not_started", message=f"the session runner did not start: {error}")
            self._store.end_open(
                session_id,
                SessionEnd(
                    status=SessionStatus.ERROR, ended_at=format_timestamp(self._now()), error_json=_json(problem)
                ),
            )
            raise
        self._mark_started(session_id)
        logger.info(
            "session started",
            extra={
                "event": "session_started",
                "session_id": session_id,
                "agent_id": agent_id,
                "workflow_id": template.name,
                "version": version,
            },
        )
        metrics.add_metric(name="SessionsStarted", unit=MetricUnit.Count, value=1)
        return SessionStarted(
            session_id=session_id, status=SessionStatus.WAITING, workflow_id=template.name, version=version
        )

    def _mark_started(self, session_id: str) -> None:
        """Processing from the moment its runner runs (its first task may wait out a delay first).

        Deliberately broad: the session runs whatever this write does (its first dispatch marks it too, should it come
        first), and an error here would answer the trigger with one for a session that runs, inviting a second."""
        try:
            self._store.mark_started(session_id, format_timestamp(self._now()))
        except Exception:
            logger.warning(
                "session not marked processing; its first dispatch marks it",
                exc_info=True,
                extra={"event": "session_mark_deferred"},
            )

    def get(self, agent_id: str, session_id: str) -> SessionView:
        session, tasks = self._store.session_with_tasks(session_id)
        return session_view(_owned(session, agent_id, session_id), tasks)

    def trace(self, agent_id: str, session_id: str) -> SessionTrace:
        """The session as spans (opscore.sessions.trace), read as the session itself is: that agent's, or missing."""
        session, tasks = self._store.session_with_tasks(session_id)
        return session_trace(_owned(session, agent_id, session_id), tasks)

    def trace_of(self, session_id: str) -> SessionTrace:
        """The same trace found by the session id alone (an admin's read: whichever agent ran it)."""
        session, tasks = self._store.session_with_tasks(session_id)
        if session is None:
            raise NotFound(f"no session {session_id}")
        return session_trace(session, tasks)

    def list(self, agent_id: str, limit: int, next_token: str | None, only: SessionFilter = NO_FILTER) -> SessionPage:
        self._registry.require(agent_id)
        items, token = self._store.sessions_of(agent_id, limit, next_token, only)
        return SessionPage(items=[session_summary(record) for record in items], next_token=token)

    def cancel(self, agent_id: str, session_id: str, cancelled_by: str) -> SessionView:
        session = self._store.get_session(session_id)
        session = _owned(session, agent_id, session_id)
        now = format_timestamp(self._now())
        cancelled_now = self._store.cancel(session_id, now, cancelled_by)
        if not cancelled_now:
            now_stored = self._store.get_session(session_id)
            status = now_stored.status if now_stored is not None else None
            if status is not SessionStatus.CANCELLED:
                raise SessionEnded(f"session {session_id} has already ended ({status})")
        # The session is cancelled from here on: every dispatch and result is guarded by its status. Closing what was
        # open and stopping the execution is repeated by a repeated cancel, so a cancel cut short is finished.
        try:
            self._close_open_tasks(session_id, agent_id, now)
        finally:
            self._stop(session.execution_arn, cancelled_by)
        if cancelled_now:
            logger.info(
                "session cancelled",
                extra={
                    "event": "session_ended",
                    "session_id": session_id,
                    "agent_id": agent_id,
                    "old": session.status.value,
                    "new": "cancelled",
                    "by": cancelled_by,
                },
            )
            log_span(session_span(session._replace(status=SessionStatus.CANCELLED, ended_at=now)))
            metrics.add_metric(name="SessionsCancelled", unit=MetricUnit.Count, value=1)
        return self.get(agent_id, session_id)

    def _stop(self, execution_arn: str, cancelled_by: str) -> None:
        """Stop the session's execution, if Step Functions lets us now.

        Deliberately broad: the cancel is recorded, and it holds without the stop. An execution that goes on ends at
        its next dispatch (which finds the session cancelled and ends the wait it starts), so a stop refused here (a
        throttle, or an execution the emulator has not finished starting) must not make the cancel an error.
        """
        try:
            self._runner().stop(execution_arn, cause=f"cancelled by key {cancelled_by}")
        except Exception:
            logger.warning(
                "the cancelled session's execution was not stopped; its next step ends it",
                exc_info=True,
                extra={"event": "execution_not_stopped"},
            )

    def _close_open_tasks(self, session_id: str, agent_id: str, now: str) -> None:
        # Twice: an agent may lease a task between this read and its skip; the second pass ends that lease.
        for _ in range(2):
            _, tasks = self._store.session_with_tasks(session_id)
            self._close(session_id, agent_id, tasks, now)

    def _close(self, session_id: str, agent_id: str, tasks: Sequence[TaskRecord], now: str) -> None:
        for task in tasks:
            if task.status is TaskStatus.LEASED:
                # The agent's slot comes back with the lease; the cancel is not the agent's failure.
                if self._health().skip_lease(agent_id, task.ref):
                    self._store.skip_task(session_id, task.index, TaskStatus.SKIPPED, now)  # stamps its end
                    self._wake(agent_id)
            elif task.status is not None and task.status.open:
                self._store.skip_task(session_id, task.index, task.status, now)
            elif task.status is not TaskStatus.SKIPPED:
                continue
            if task.task_token is not None:
                # End the runner's wait now: it records nothing more (the session is cancelled) and finishes.
                self._runner().fail(task.task_token, SESSION_CANCELLED_ERROR, "the session was cancelled")

    def _resolve(self, request: TriggerRequest, triggered_by: str) -> tuple[WorkflowTemplate, int]:
        if request.template is not None:
            check_template(request.template, prefix="template.")
            try:
                created = self._workflows.create(request.template, created_by=triggered_by).created
            except ValidationFailed as refused:  # its runner would be too large: named where the body has it
                problems = [replace(problem, field=f"template.{problem.field}") for problem in refused.details]
                raise ValidationFailed(refused.message, problems) from refused
            return request.template, created.version
        assert request.workflow_id is not None  # the model allows only one of the two
        stored = self._workflows.get(request.workflow_id, request.version)
        return WorkflowTemplate.model_validate(stored.template), stored.version


def refuse_undeclared(agent: AgentRecord, template: WorkflowTemplate, field: Callable[[int], str]) -> None:
    """A 400 naming each task whose action the agent does not declare, unless it declares none (then it takes any)."""
    if not agent.capabilities:
        return
    problems = [
        FieldProblem(
            field(index),
            f"agent {agent.agent_id} does not declare {task.action!r} among its capabilities "
            f"({', '.join(agent.capabilities)})",
            type="capability_undeclared",
        )
        for index, task in enumerate(template.tasks)
        if task.action not in agent.capabilities
    ]
    if problems:
        raise ValidationFailed(f"agent {agent.agent_id} cannot run every task of this workflow", problems)


def refuse_references(task: AdHocTask) -> None:
    """An ad-hoc task runs alone, with no session input: a reference in its input would have nothing to read."""
    problems = [
        FieldProblem(
            f"{found.where}.$from",
            "an ad-hoc task runs alone, without a session input or tasks before it: it has nothing to reference",
            type="nothing_to_reference",
        )
        for found in input_problems(task.input, "input")
    ]
    if problems:
        raise ValidationFailed("an ad-hoc task's input holds no references", problems)


def _owned(session: SessionRecord | None, agent_id: str, session_id: str) -> SessionRecord:
    """The session if it is this agent's; another agent's session is answered as missing."""
    if session is None or session.agent_id != agent_id:
        raise NotFound(f"agent {agent_id} has no session {session_id}")
    return session


def _json(model: Problem) -> str:
    return canonical_json(model.model_dump(mode="json"))


def session_summary(session: SessionRecord) -> SessionSummary:
    return SessionSummary(
        session_id=session.session_id,
        agent_id=session.agent_id,
        workflow_id=session.workflow_id,
        version=session.version,
        status=session.status,
        priority=session.priority,
        created_at=session.created_at,
        started_at=session.started_at,
        ended_at=session.ended_at,
        error=session.error,
    )


def session_view(session: SessionRecord, task_records: list[TaskRecord]) -> SessionView:
    summary = session_summary(session)
    by_index = {task.index: task for task in task_records}
    tasks = [
        _task_view(session.session_id, index, template, by_index.get(index), summary.status.ended)
        for index, template in enumerate(session.tasks)
    ]
    return SessionView(**summary.model_dump(), input=session.input, tasks=tasks)


def _task_view(session_id: str, index: int, template: TemplateTask, task: TaskRecord | None, ended: bool) -> TaskView:
    task = task or TaskRecord(session_id=session_id, index=index)
    status = task.status or (TaskStatus.SKIPPED if ended else TaskStatus.PENDING)
    return TaskView(
        task_id=task_id(session_id, index),
        id=template.id,
        action=template.action,
        status=status,
        attempts=task.attempts,
        priority=task.priority,
        input=task.input,
        started_at=task.started_at,
        ended_at=task.ended_at,
        duration_ms=task.duration_ms,
        scheduled_for=task.scheduled_for,
        output=task.output,
        error=task.error,
        fallback_only=template.fallback_only,
        fallback_for=sorted(task.fallback_for),
        history=task.history,
    )


def refuse_oversized(runner_input: dict[str, Any]) -> None:
    """A 413 naming Step Functions' limit when the session's input and its tasks' inputs would not fit in the runner's
    execution input. The template and trigger limits keep a new session within it; a version stored before they
    existed may not be, and is refused here rather than left as a session whose runner never starts."""
    size = len(execution_input(runner_input).encode())
    if size > EXECUTION_INPUT_LIMIT_BYTES:
        message = (
            f"the session's input and its tasks' inputs are {size} bytes together, over the "
            f"{EXECUTION_INPUT_LIMIT_BYTES} bytes a session runner's input may take of Step Functions' 256 KiB"
        )
        raise PayloadTooLarge(message, [FieldProblem("input", message, type="too_large")])
