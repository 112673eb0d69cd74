"""Agent-aware dispatch: hand an agent the most urgent task in its queue, when it can take one.

A lease is one transaction over the agent and the task: the agent must not be paused, in error or offline and must
be below its `max_concurrency`, and the task must still be queued for that attempt. So two agents, or two concurrent
pulls of one agent, never get the same task, and an agent never holds more than it may.

Poll agents lease with `next_task`; for agents whose channel pushes (webhook), `serve` leases and delivers until
the queue is empty or the agent is full. The lease lasts the task's `heartbeat_seconds` (else its
`timeout_seconds`); each heartbeat renews it, and a lease that runs out fails the attempt (see opscore.agent_health).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from opscore.agents.store import DEFAULT_OFFLINE_AFTER_SECONDS, AgentStore
from opscore.aws.dynamodb import Item, get_n, get_s
from opscore.core.clock import format_timestamp
from opscore.core.errors import Conflict, FieldProblem, NotFound, Throttled, ValidationFailed
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.dispatch.delivery import Delivery, Target, channel
from opscore.dispatch.errors import AttemptRequired, ResultConflict, TaskNotOpen
from opscore.dispatch.health import AgentHealth, quarantined
from opscore.dispatch.models import LeasedTask, QueuedTask, QueuePage, TaskHeartbeat, TaskResult
from opscore.dispatch.queue import UNDISPATCHABLE_STATES, TaskQueue, TaskRef
from opscore.dispatch.results import TaskResults, locate_task
from opscore.sessions.errors import DELIVERY_FAILED_ERROR
from opscore.sessions.store import SessionStore, decode

# Queue entries looked at per lease: the index is eventually consistent, so the first may already be taken.
CANDIDATES = 10
# Rounds of "read the queue, try its head" before answering that nothing is ready.
LEASE_ROUNDS = 3
# A queue page token is the last entry's sort key: a rank or a lease expiry, then the task id.
QUEUE_TOKEN = re.compile(r"[0-9TZ:.-]{13,32}#[0-9a-f]{32}-[0-9]{3}")
# Tries to report a synchronous result while the table is busy.
REPORT_ATTEMPTS = 3
# How long one serve may keep starting deliveries when its caller sets no budget.
SERVE_BUDGET_SECONDS = 30.0
# At most this many tasks pushed per serve, whatever the agent's max_concurrency: one invocation stays short.
MAX_PUSHES_PER_SERVE = 25


class Dispatcher:
    def __init__(  # noqa: PLR0917 - the stores and services dispatch joins together
        self,
        queue: TaskQueue,
        agents: AgentStore,
        sessions: SessionStore,
        results: TaskResults,
        health: AgentHealth,
        now: Callable[[], datetime],
    ) -> None:
        self._queue = queue
        self._agents = agents
        self._sessions = sessions
        self._results = results
        self._health = health
        self._now = now

    # ------------------------------------------------------------------ pull
    def next_task(self, agent_id: str) -> LeasedTask | None:
        """Lease the agent's most urgent queued task; None when nothing is ready (or it may take nothing now)."""
        agent = self._agent(agent_id)
        self._health.heard_from(agent_id, get_n(agent, "offline_after_seconds"))
        leased = self._lease_next(agent_id, agent) if _dispatchable(agent) else None
        return leased[0] if leased is not None else None

    def _lease_next(self, agent_id: str, agent: Item, fresh: Item | None = None) -> tuple[LeasedTask, TaskRef] | None:
        """Lease the head of the agent's queue. `fresh` is a task item just queued, read by its key: the index may
        not show it yet (it is eventually consistent), so it joins the candidates in its place."""
        offline_after = get_n(agent, "offline_after_seconds") or DEFAULT_OFFLINE_AFTER_SECONDS
        for round_ in range(LEASE_ROUNDS):
            candidates = _with_fresh(self._queue.queued(agent_id, CANDIDATES), fresh)
            if not candidates:
                return None
            for candidate in candidates:
                ref = TaskRef.of(candidate)
                now = self._now()
                lease_seconds = get_n(candidate, "lease_seconds") or 300
                expires_at = format_timestamp(now + timedelta(seconds=lease_seconds))
                try:
                    outcome = self._queue.lease(agent_id, ref, format_timestamp(now), expires_at, offline_after)
                except Throttled:
                    # Another lease of this agent committed at the same moment: try again after a short pause.
                    time.sleep(random.uniform(0.005, 0.02) * (round_ + 1))  # noqa: S311 - jitter, not security
                    break
                if outcome == "agent_unavailable":
                    return None
                if outcome == "leased":
                    return self._leased(agent_id, ref, candidate, now, expires_at), ref
                if fresh is not None and ref == TaskRef.of(fresh):
                    fresh = None  # taken meanwhile: no longer worth adding
        return None

    def _leased(self, agent_id: str, ref: TaskRef, candidate: Item, now: datetime, expires_at: str) -> LeasedTask:
        item = self._sessions.get_task(ref.session_id, ref.index) or candidate
        enqueued_at = get_s(item, "enqueued_at")
        logger.info(
            "task leased",
            extra={
                "agent_id": agent_id,
                "session_id": ref.session_id,
                "task_id": ref.task_id,
                "old_status": "queued",
                "new_status": "leased",
                "lease_expires_at": expires_at,
            },
        )
        metrics.add_metric(name="TasksLeased", unit=MetricUnit.Count, value=1)
        if enqueued_at is not None:
            waited = now - datetime.fromisoformat(enqueued_at)
            metrics.add_metric(
                name="TimeToDispatch", unit=MetricUnit.Milliseconds, value=max(0, waited.total_seconds() * 1000)
            )
        return LeasedTask(
            task_id=ref.task_id,
            session_id=ref.session_id,
            action=get_s(item, "action") or "",
            input=decode(get_s(item, "input")) or {},
            session_input=decode(get_s(item, "session_input")) or {},
            priority=get_n(item, "priority") or 0,
            attempt=get_n(item, "attempts") or 1,
            lease_expires_at=expires_at,
        )

    # ------------------------------------------------------------------ push
    def enqueued(self, agent_id: str, task: TaskRef, budget_seconds: float = SERVE_BUDGET_SECONDS) -> int:
        """A task was just queued for the agent: fail it over at once if the agent is quarantined, else serve."""
        agent = self._agents.get_agent_item(agent_id)
        if agent is None:
            return 0
        fresh = self._sessions.get_task(task.session_id, task.index)
        if fresh is not None and (get_s(fresh, "status") != "queued" or TaskRef.of(fresh) != task):
            fresh = None
        if quarantined(agent):
            self._health.fail_queued(agent_id, fresh)
            return 0
        return self.serve(agent_id, agent, budget_seconds, fresh)

    def serve(
        self,
        agent_id: str,
        agent: Item | None = None,
        budget_seconds: float = SERVE_BUDGET_SECONDS,
        fresh: Item | None = None,
    ) -> int:
        """Push queued tasks to an agent whose channel pushes, while it can take them; returns how many.

        No new delivery starts after `budget_seconds` (one delivery may take a few tries of a few seconds each), so
        the function serving the queue ends well inside its own timeout; what is left is served on the next wake.
        """
        deadline = time.monotonic() + budget_seconds
        agent = agent or self._agents.get_agent_item(agent_id)
        if agent is None:
            return 0
        delivery = channel(get_s(agent, "delivery") or "poll")
        if not delivery.pushes:
            return 0
        target = Target(agent_id, get_s(agent, "endpoint"), get_s(agent, "webhook_secret"))
        pushed = 0
        while pushed < MAX_PUSHES_PER_SERVE and _dispatchable(agent) and time.monotonic() < deadline:
            leased = self._lease_next(agent_id, agent, fresh)
            if leased is None:
                break
            task, ref = leased
            fresh = None
            pushed += 1
            try:
                handed = delivery.deliver(target, task)
            except Exception as error:
                logger.exception("delivery channel failed", extra={"agent_id": agent_id, "task_id": task.task_id})
                handed = Delivery("failed", reason=f"the delivery failed: {type(error).__name__}")
            # The lease itself re-checks the agent (capacity, state, quarantine): a stale `agent` is only a pre-check.
            self._handed_over(agent_id, agent, task, ref, handed)
        return pushed

    def _handed_over(self, agent_id: str, agent: Item, task: LeasedTask, ref: TaskRef, delivery: Delivery) -> None:
        logger.info(
            "task delivered" if delivery.outcome != "failed" else "task delivery failed",
            extra={
                "agent_id": agent_id,
                "task_id": task.task_id,
                "delivery": delivery.outcome,
                "reason": delivery.reason or None,
            },
        )
        metrics.add_metric(name=f"Deliveries{delivery.outcome.title()}", unit=MetricUnit.Count, value=1)
        if delivery.outcome == "failed":
            self._health.end_lease(agent_id, ref, status="failed", error=DELIVERY_FAILED_ERROR, cause=delivery.reason)
            return
        self._health.heard_from(agent_id, get_n(agent, "offline_after_seconds"))  # it answered: it is alive
        if delivery.outcome == "completed" and delivery.result is not None:
            self._take_result(agent_id, task, delivery.result.model_copy(update={"attempt": task.attempt}))

    def _take_result(self, agent_id: str, task: LeasedTask, result: TaskResult) -> None:
        """Report a synchronous result as the agent would; a busy table is tried again rather than losing it."""
        for attempt in range(REPORT_ATTEMPTS):
            try:
                self._results.report(agent_id, task.task_id, result)
                return
            except (TaskNotOpen, ResultConflict, AttemptRequired) as error:  # the attempt ended meanwhile
                logger.warning(
                    "synchronous result not taken",
                    extra={"agent_id": agent_id, "task_id": task.task_id, "error_type": error.code},
                )
                return
            except (Throttled, Conflict):
                time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # noqa: S311 - jitter, not security
        # The lease stays; it expires and the attempt is retried (the agent may do the work twice).
        logger.error("synchronous result lost to contention", extra={"agent_id": agent_id, "task_id": task.task_id})

    # ------------------------------------------------------------------ heartbeats and the queue view
    def heartbeat(self, agent_id: str, task_id: str) -> TaskHeartbeat:
        """Renew the agent's lease on the task.

        The lease is the attempt's liveness: Step Functions keeps only the attempt's overall timeout (its heartbeat
        clock would also run while the task waits in the queue, where no agent can heartbeat it).
        """
        session_id, index = locate_task(agent_id, task_id)
        item = self._sessions.get_task(session_id, index)
        if item is None or get_s(item, "agent_id") != agent_id:
            raise NotFound(f"agent {agent_id} has no task {task_id}")
        self._health.heard_from(agent_id, get_n(item, "agent_offline_after"))
        now = self._now()
        expires_at = format_timestamp(now + timedelta(seconds=get_n(item, "lease_seconds") or 300))
        if not self._queue.extend(TaskRef.of(item), format_timestamp(now), expires_at):
            status = get_s(item, "status")
            raise TaskNotOpen(f"task {task_id} is {status} and holds no live lease: it is not waiting for a heartbeat")
        return TaskHeartbeat(task_id=task_id, attempt=get_n(item, "attempts") or 0, lease_expires_at=expires_at)

    def queue(self, agent_id: str, status: str, limit: int, next_token: str | None) -> QueuePage:
        """One page of the agent's queued (dispatch order) or leased (soonest expiry first) tasks."""
        self._agent(agent_id)
        if next_token is not None and not QUEUE_TOKEN.fullmatch(next_token):
            raise ValidationFailed(
                "next_token is not a token this listing returned",
                [FieldProblem("next_token", "not a valid page token", location="query")],
            )
        read = self._queue.queued if status == "queued" else self._queue.leased
        items = read(agent_id, limit + 1, next_token)
        page = items[:limit]
        token = get_s(page[-1], "agent_tasks_sk") if len(items) > limit else None
        return QueuePage(items=[_queued_task(item, status) for item in page], next_token=token)

    def _agent(self, agent_id: str) -> Item:
        agent = self._agents.get_agent_item(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return agent


def _with_fresh(candidates: list[Item], fresh: Item | None) -> list[Item]:
    if fresh is None or any(TaskRef.of(item) == TaskRef.of(fresh) for item in candidates):
        return candidates
    return sorted([*candidates, fresh], key=lambda item: get_s(item, "agent_tasks_sk") or "")


def _dispatchable(agent: Item) -> bool:
    in_flight = get_n(agent, "in_flight") or 0
    free = in_flight < (get_n(agent, "max_concurrency") or 1)
    return free and get_s(agent, "state") not in UNDISPATCHABLE_STATES and not quarantined(agent)


def _queued_task(item: Item, status: str) -> QueuedTask:
    ref = TaskRef.of(item)
    return QueuedTask(
        task_id=ref.task_id,
        session_id=ref.session_id,
        action=get_s(item, "action") or "",
        status="queued" if status == "queued" else "leased",
        priority=get_n(item, "priority") or 0,
        attempt=get_n(item, "attempts") or 1,
        enqueued_at=get_s(item, "enqueued_at") or "",
        lease_expires_at=get_s(item, "lease_expires_at"),
    )
