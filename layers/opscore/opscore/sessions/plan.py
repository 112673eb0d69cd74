"""A workflow template as its session runner sees it: the states a session passes through, and each task's route.

The template becomes a graph of task runs, generated once per template (opscore.sessions.definition writes it as
Amazon States Language):
- the main line is the tasks that are not `fallback_only`, in template order; the last one's success ends the session;
- a task that still fails after its retries hands over to its fallback, if it names one. The fallback runs in a state
  of its own for that task (a task may stand in for several), and when it completes the session goes on after the
  main-line task it stood in for; a fallback that fails hands over to its own fallback, if any;
- otherwise the session fails.

Each run carries a `TaskRoute`: what the dispatch function queues, and what Ops-Core needs to record the end of an
attempt without asking Step Functions (is there a retry left, and after how long; what runs next, and after what
delay). The retry arithmetic here is Step Functions' own, so the `retrying` status and `scheduled_for` that Ops-Core
records agree with the retry the state machine makes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from opscore.core.clock import format_timestamp
from opscore.sessions.models import TaskStatus
from opscore.sessions.writes import TaskMark
from opscore.workflows.templates import RetryPolicy, WorkflowTemplate

DEFAULT_PRIORITY = 5
# Step Functions' bounds on a retrier: it waits at least a second, and we cap any wait at a day.
MIN_RETRY_INTERVAL_SECONDS = 1
MAX_BACKOFF_SECONDS = 86_400
MAX_STATE_NAME = 80  # Step Functions' limit on a state's name


class RouteModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskPlace(RouteModel):
    """A task of the template: its place and its id."""

    index: int
    id: str


class Follower(TaskPlace):
    """A task that runs after another, and the delay before it is queued."""

    delay_seconds: int = 0


class TaskRoute(RouteModel):
    """One run of one task, as its state in the session runner dispatches it."""

    state: str
    index: int
    id: str
    action: str
    timeout_seconds: int
    heartbeat_seconds: int | None = None
    retry: RetryPolicy = RetryPolicy()
    # The task this run stands in for (set on fallback runs only).
    fallback_for: TaskPlace | None = None
    # What runs after a success (None: the session completes), and after a final failure (None: the session fails).
    then: Follower | None = None
    fallback: Follower | None = None
    # The session's first task: its dispatch moves the session from waiting to processing.
    begins: bool = False
    # The delay the run waits out before its first attempt is queued (left out of the JSON when there is none).
    delay_seconds: int = Field(default=0, exclude_if=lambda seconds: seconds == 0)
    # Stands in for a task dispatched before runners were generated per workflow (it kept no route).
    legacy: bool = Field(default=False, exclude=True)

    @property
    def lease_seconds(self) -> int:
        """The lease is renewed by heartbeats when the task asks for them, else it lasts the whole attempt."""
        return self.heartbeat_seconds or self.timeout_seconds


class TaskRun(NamedTuple):
    """A state of the session runner: the route it dispatches, its delay, and the states it leads to.

    A run with a delay is entered through its Wait state (`wait_state`); `next_state` and `fallback_state` name the
    state each way out enters, so a delay is never skipped.
    """

    route: TaskRoute
    delay_seconds: int
    wait_state: str | None
    next_state: str | None  # None: the session completes after it
    fallback_state: str | None  # None: the session fails after it

    @property
    def entry(self) -> str:
        return self.wait_state or self.route.state


def retry_wait(retry: RetryPolicy, run_attempt: int) -> int | None:
    """Seconds before the next attempt after attempt `run_attempt` of a run failed; None when no retry is left.

    As Step Functions computes it: IntervalSeconds * BackoffRate ** (retries made so far), capped by MaxDelaySeconds.
    """
    if run_attempt > retry.max_retries:
        return None
    return min(round(retry_interval(retry) * retry.backoff_rate ** (run_attempt - 1)), MAX_BACKOFF_SECONDS)


def retry_interval(retry: RetryPolicy) -> int:
    """The retrier's IntervalSeconds: Step Functions waits at least a second, so a backoff of 0 waits one."""
    return max(retry.backoff_seconds, MIN_RETRY_INTERVAL_SECONDS)


def task_priorities(template: WorkflowTemplate, session_priority: int | None) -> list[int]:
    """Each task's queue priority: its own, else the trigger's, else DEFAULT_PRIORITY."""
    return [
        next(value for value in (task.priority, session_priority, DEFAULT_PRIORITY) if value is not None)
        for task in template.tasks
    ]


def first_mark(template: WorkflowTemplate, now: datetime) -> TaskMark | None:
    """The session's first task, when it waits out a delay before it is queued, shows as scheduled meanwhile."""
    index, task = next((index, task) for index, task in enumerate(template.tasks) if not task.fallback_only)
    if task.delay_seconds <= 0:
        return None
    when = format_timestamp(now + timedelta(seconds=task.delay_seconds))
    return TaskMark(index=index, template_id=task.id, status=TaskStatus.SCHEDULED, scheduled_for=when)


def task_runs(template: WorkflowTemplate) -> list[TaskRun]:
    """Every state the template's sessions can pass through: the main line in order, then each fallback run."""
    return _Graph(template).runs()


class _Graph:
    def __init__(self, template: WorkflowTemplate) -> None:
        self._tasks = template.tasks
        self._index_of = {task.id: index for index, task in reversed(list(enumerate(template.tasks)))}
        self._names: set[str] = set()
        self._main: list[TaskRun] = []
        self._fallbacks: list[TaskRun] = []

    def runs(self) -> list[TaskRun]:
        line = [index for index, task in enumerate(self._tasks) if not task.fallback_only]
        names = [self._name(self._tasks[index].id) for index in line]
        waits = [self._wait(names[position], index) for position, index in enumerate(line)]
        for position, index in enumerate(line):
            following = line[position + 1] if position + 1 < len(line) else None
            next_state = (waits[position + 1] or names[position + 1]) if following is not None else None
            self._main.append(
                self._run(
                    names[position],
                    waits[position],
                    index,
                    self._follower(following),
                    next_state,
                    fallback_for=None,
                    begins=position == 0,
                )
            )
        return self._main + self._fallbacks

    def _run(  # noqa: PLR0917 - one run's place in the graph
        self,
        name: str,
        wait: str | None,
        index: int,
        then: Follower | None,
        next_state: str | None,
        fallback_for: int | None,
        begins: bool,
    ) -> TaskRun:
        task = self._tasks[index]
        fallback_index = self._index_of[task.fallback] if task.fallback is not None else None
        fallback_state = None
        if fallback_index is not None:
            # The fallback goes on where this run would have: after the main-line task it (or its chain) replaces.
            fallback_name = self._name(f"{self._tasks[fallback_index].id} (fallback for {task.id})")
            fallback_wait = self._wait(fallback_name, fallback_index)
            fallback_state = fallback_wait or fallback_name
            self._fallbacks.append(
                self._run(fallback_name, fallback_wait, fallback_index, then, next_state, index, begins=False)
            )
        route = TaskRoute(
            state=name,
            index=index,
            id=task.id,
            action=task.action,
            timeout_seconds=task.timeout_seconds,
            heartbeat_seconds=task.heartbeat_seconds,
            retry=task.retry,
            fallback_for=TaskPlace(index=fallback_for, id=self._tasks[fallback_for].id)
            if fallback_for is not None
            else None,
            then=then,
            fallback=self._follower(fallback_index),
            begins=begins,
            delay_seconds=task.delay_seconds,
        )
        return TaskRun(route, task.delay_seconds, wait, next_state, fallback_state)

    def _wait(self, name: str, index: int) -> str | None:
        """The Wait state a delayed task is entered through."""
        return self._name(f"Wait before {name}") if self._tasks[index].delay_seconds > 0 else None

    def _follower(self, index: int | None) -> Follower | None:
        if index is None:
            return None
        task = self._tasks[index]
        return Follower(index=index, id=task.id, delay_seconds=task.delay_seconds)

    def _name(self, wanted: str) -> str:
        """A state name of its own, within Step Functions' 80 characters (a fallback may run in several places)."""
        name = wanted[:MAX_STATE_NAME]
        number = 2
        while name in self._names:
            suffix = f" #{number}"
            name = wanted[: MAX_STATE_NAME - len(suffix)] + suffix
            number += 1
        self._names.add(name)
        return name
