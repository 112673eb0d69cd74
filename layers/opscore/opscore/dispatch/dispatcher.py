"""Agent-aware dispatch: hand an agent the most urgent task in its queue, when it can take one.

A lease is one transaction over the agent and the task: the agent must not be paused, in error or offline and must
be below its `max_concurrency`, and the task must still be queued for that attempt. So two agents, or two concurrent
pulls of one agent, never get the same task, and an agent never holds more than it may.

Poll agents lease with `next_task`; for agents whose channel pushes (webhook), `serve` leases and delivers until
the queue is empty or the agent is full. A quarantined agent is handed nothing (its pull is refused with since when
and why) but, once half-open, one probe task. The lease lasts the task's `heartbeat_seconds` (else its
`timeout_seconds`); each heartbeat renews it, and a lease that runs out fails the attempt (see opscore.dispatch.health).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from opscore.agents.records import PROBE_GRACE_SECONDS, AgentRecord, probe_key
from opscore.agents.registry import quarantine_view
from opscore.agents.store import AgentStore
from opscore.aws.pages import decode_page_token, encode_page_token
from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.errors import Conflict, NotFound, Throttled
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import Backoff, attempts
from opscore.dispatch.delivery import Delivery, Target, channel
from opscore.dispatch.errors import AgentQuarantined, AttemptRequired, ResultConflict, TaskNotOpen
from opscore.dispatch.health import AgentHealth
from opscore.dispatch.models import LeasedTask, QueuedTask, QueuePage, TaskHeartbeat, TaskResult
from opscore.dispatch.queue import LeaseOutcome, Probe, TaskQueue
from opscore.dispatch.results import TaskResults, locate_task
from opscore.sessions.attempts import route_of, timeout_problem
from opscore.sessions.errors import DELIVERY_FAILED_ERROR, TIMEOUT_ERROR
from opscore.sessions.records import TaskRecord, TaskRef
from opscore.sessions.store import SessionStore

# Queue entries looked at per lease: the index is eventually consistent, so the first may already be taken.
CANDIDATES = 10
# Rounds of "read the queue, try its head" before answering that nothing is ready.
LEASE_ROUNDS = 3
# A queue page starts after an entry's place in the index: a rank or a lease expiry, then the task id.
QUEUE_POSITION = re.compile(r"[0-9TZ:.-]{13,32}#[0-9a-f]{32}-[0-9]{3}")
# Pause after a lease met another one on the same agent (a round whose candidates were all taken reads again at once).
LEASE_BACKOFF = Backoff(0.005, 0.02)
# Tries to report a synchronous result while the table is busy.
REPORT_ATTEMPTS = 3
REPORT_BACKOFF = Backoff(0.05, 0.2)
# How long one serve may keep starting deliveries when its caller sets no budget.
SERVE_BUDGET_SECONDS = 30.0
# Retry-After of a half-open agent's refused pull: its probe is out, or nothing is queued to probe with.
HALF_OPEN_RETRY_SECONDS = 5
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
        """Lease the agent's most urgent queued task; None when nothing is ready (or it may take nothing now).

        A quarantined agent is refused (AgentQuarantined, since when and why) unless it is half-open and this lease
        is its probe."""
        agent = self._agent(agent_id)
        self._health.heard_from(agent_id, agent.offline_after_seconds)
        if not agent.quarantined:
            leased = self._lease_next(agent) if agent.may_take_work else None
            return leased[0] if leased is not None else None
        now = self._now()
        leased = self._lease_next(agent, probe=True) if agent.may_probe(format_timestamp(now)) else None
        if leased is None:
            raise quarantined_error(agent, now)
        return leased[0]

    def _lease_next(
        self, agent: AgentRecord, fresh: TaskRecord | None = None, *, probe: bool = False
    ) -> tuple[LeasedTask, TaskRef] | None:
        """Lease the head of the agent's queue (as its probe, for a half-open agent). `fresh` is a task just queued,
        read by its key: the index may not show it yet (it is eventually consistent), so it joins the candidates in
        its place."""
        throttled: Throttled | None = None
        for round_ in attempts(LEASE_ROUNDS):
            candidates = _with_fresh(self._queue.queued(agent.agent_id, CANDIDATES), fresh)
            if not candidates:
                return None
            try:
                outcome, leased = self._lease_first(agent, candidates, probe)
            except Throttled as error:
                # Another lease of this agent committed at the same moment (or the table throttled): pause, then read
                # the queue again.
                throttled = error
                time.sleep(LEASE_BACKOFF.pause(round_ + 1))
                continue
            throttled = None
            if outcome != "taken":
                return leased
            fresh = None  # every candidate was taken meanwhile, the fresh one too: read the queue again
        if throttled is not None:
            # Not "nothing is ready": the queue may hold work this agent should come back for at once.
            raise throttled
        return None

    def _lease_first(
        self, agent: AgentRecord, candidates: list[TaskRecord], probe: bool
    ) -> tuple[LeaseOutcome, tuple[LeasedTask, TaskRef] | None]:
        """Lease the first candidate still queued; "taken" when every one was taken, "agent_unavailable" when the
        agent may take nothing now."""
        for candidate in candidates:
            # Read first (the index may be behind): a task still queued for this attempt, and in time.
            task = self._sessions.get_task(candidate.session_id, candidate.index)
            if task is None or not task.queued_for(candidate.ref):
                continue
            now = self._now()
            if task.past_deadline(format_timestamp(now)):
                # The runner timed it out: record it, so it leaves the queue now rather than block its head.
                self._health.end_queued(task, error=TIMEOUT_ERROR, problem=timeout_problem(route_of(task)))
                continue
            expires_at = lease_expiry(task, now)
            outcome = self._queue.lease(
                agent.agent_id,
                candidate.ref,
                format_timestamp(now),
                expires_at,
                agent.offline_after_seconds,
                probe=probe_lease(task, expires_at) if probe else None,
            )
            if outcome == "agent_unavailable":
                return outcome, None
            if outcome == "leased":
                return outcome, (self._leased(agent.agent_id, task, now, expires_at, probe), candidate.ref)
        return "taken", None

    def _leased(self, agent_id: str, task: TaskRecord, now: datetime, expires_at: str, probe: bool) -> LeasedTask:
        ref = task.ref
        route = route_of(task)
        logger.info(
            "task leased as the quarantined agent's probe" if probe else "task leased",
            extra={
                "event": "task_leased",
                "agent_id": agent_id,
                "session_id": ref.session_id,
                "task_id": ref.task_id,
                "attempt": task.attempts,
                "old": "queued",
                "new": "leased",
                "lease_expires_at": expires_at,
                "probe": probe,
            },
        )
        metrics.add_metric(name="TasksLeased", unit=MetricUnit.Count, value=1)
        if task.enqueued_at is not None:
            waited = now - datetime.fromisoformat(task.enqueued_at)
            metrics.add_metric(
                name="TimeToDispatch", unit=MetricUnit.Milliseconds, value=max(0, waited.total_seconds() * 1000)
            )
        return LeasedTask(
            task_id=ref.task_id,
            session_id=ref.session_id,
            action=task.action,
            input=task.input or {},
            session_input=task.session_input,
            priority=task.priority or 0,
            attempt=task.attempts or 1,
            lease_expires_at=expires_at,
            heartbeat_seconds=route.heartbeat_seconds,
            timeout_seconds=route.timeout_seconds,
            attempt_deadline=task.attempt_deadline,
            probe=probe,
        )

    # ------------------------------------------------------------------ push
    def enqueued(self, agent_id: str, task: TaskRef, budget_seconds: float = SERVE_BUDGET_SECONDS) -> int:
        """A task was just queued for the agent: fail it over at once if the agent's breaker is open (and not yet
        half-open), else serve."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return 0
        fresh = self._sessions.get_task(task.session_id, task.index)
        if fresh is not None and not fresh.queued_for(task):
            fresh = None
        if agent.quarantined and not agent.half_open(format_timestamp(self._now())):
            self._health.fail_queued(agent, fresh)
            return 0
        return self.serve(agent_id, agent, budget_seconds, fresh)

    def serve(
        self,
        agent_id: str,
        agent: AgentRecord | None = None,
        budget_seconds: float = SERVE_BUDGET_SECONDS,
        fresh: TaskRecord | None = None,
    ) -> int:
        """Push queued tasks to an agent whose channel pushes, while it can take them; returns how many.

        No new delivery starts after `budget_seconds` (one delivery may take a few tries of a few seconds each), so
        the function serving the queue ends well inside its own timeout; what is left is served on the next wake.
        """
        deadline = time.monotonic() + budget_seconds
        agent = agent or self._agents.get(agent_id)
        if agent is None:
            return 0
        delivery = channel(agent.delivery)
        if not delivery.pushes:
            return 0
        target = Target(agent_id, agent.endpoint, agent.webhook_secret)
        pushed = 0
        probe = agent.quarantined  # a quarantined agent is pushed nothing but its probe, once half-open
        while pushed < MAX_PUSHES_PER_SERVE and self._may_push(agent, probe, pushed) and time.monotonic() < deadline:
            leased = self._leased_for_push(agent, fresh, probe)
            if leased is None:
                break
            task, ref = leased
            fresh = None
            pushed += 1
            try:
                handed = delivery.deliver(target, task)
            except Exception as error:
                logger.exception(
                    "delivery channel failed",
                    extra={"event": "delivery_failed", "agent_id": agent_id, "task_id": task.task_id},
                )
                handed = Delivery("failed", reason=f"the delivery failed: {type(error).__name__}")
            # The lease itself re-checks the agent (capacity, state, quarantine): a stale `agent` is only a pre-check.
            self._handed_over(agent_id, agent, task, ref, handed)
        return pushed

    def _leased_for_push(
        self, agent: AgentRecord, fresh: TaskRecord | None, probe: bool
    ) -> tuple[LeasedTask, TaskRef] | None:
        """The next task to push, leased; None when there is none, or the table kept throttling the lease (what is
        left is pushed at the agent's next wake, or by the sweep's serve)."""
        try:
            return self._lease_next(agent, fresh, probe=probe)
        except Throttled:
            logger.warning(
                "serving stopped: the table kept throttling the lease",
                extra={"event": "serve_throttled", "agent_id": agent.agent_id},
            )
            return None

    def _may_push(self, agent: AgentRecord, probe: bool, pushed: int) -> bool:
        """The agent (as read when the serve began) may take another task: one probe at most while quarantined."""
        if probe:
            return pushed == 0 and agent.may_probe(format_timestamp(self._now()))
        return agent.may_take_work

    def _handed_over(
        self, agent_id: str, agent: AgentRecord, task: LeasedTask, ref: TaskRef, delivery: Delivery
    ) -> None:
        logger.info(
            "task delivered" if delivery.outcome != "failed" else "task delivery failed",
            extra={
                "event": "task_delivered" if delivery.outcome != "failed" else "delivery_failed",
                "agent_id": agent_id,
                "task_id": task.task_id,
                "delivery": delivery.outcome,
                "reason": delivery.reason or None,
            },
        )
        metrics.add_metric(name=f"Deliveries{delivery.outcome.title()}", unit=MetricUnit.Count, value=1)
        if delivery.outcome == "failed":
            self._health.end_lease(agent_id, ref, error=DELIVERY_FAILED_ERROR, cause=delivery.reason)
            return
        self._health.heard_from(agent_id, agent.offline_after_seconds)  # it answered: it is alive
        if delivery.outcome == "completed" and delivery.result is not None:
            self._take_result(agent_id, task, delivery.result.model_copy(update={"attempt": task.attempt}))

    def _take_result(self, agent_id: str, task: LeasedTask, result: TaskResult) -> None:
        """Report a synchronous result as the agent would; a busy table is tried again rather than losing it."""
        for _ in attempts(REPORT_ATTEMPTS, REPORT_BACKOFF):
            try:
                self._results.report(agent_id, task.task_id, result)
                return
            except (TaskNotOpen, ResultConflict, AttemptRequired) as error:  # the attempt ended meanwhile
                logger.warning(
                    "synchronous result not taken",
                    extra={
                        "event": "webhook_result_refused",
                        "agent_id": agent_id,
                        "task_id": task.task_id,
                        "error_type": error.code,
                    },
                )
                return
            except (Throttled, Conflict):
                continue  # the table is busy: pause, then try again
        # The lease stays; it expires and the attempt is retried (the agent may do the work twice).
        logger.error(
            "synchronous result lost to contention",
            extra={"event": "webhook_result_lost", "agent_id": agent_id, "task_id": task.task_id},
        )

    # ------------------------------------------------------------------ heartbeats and the queue view
    def heartbeat(self, agent_id: str, task_id: str) -> TaskHeartbeat:
        """Renew the agent's lease on the task.

        The lease is the attempt's liveness: Step Functions keeps only the attempt's overall timeout (its heartbeat
        clock would also run while the task waits in the queue, where no agent can heartbeat it).
        """
        session_id, index = locate_task(agent_id, task_id)
        task = self._sessions.get_task(session_id, index)
        if task is None or task.agent_id != agent_id:
            raise NotFound(f"agent {agent_id} has no task {task_id}")
        self._health.heard_from(agent_id, task.agent_offline_after)
        now = self._now()
        expires_at = lease_expiry(task, now)
        if not self._queue.extend(task.ref, format_timestamp(now), expires_at):
            status = task.status.value if task.status is not None else None
            raise TaskNotOpen(f"task {task_id} is {status} and holds no live lease: it is not waiting for a heartbeat")
        return TaskHeartbeat(task_id=task_id, attempt=task.attempts, lease_expires_at=expires_at)

    def queue(self, agent_id: str, status: str, limit: int, next_token: str | None) -> QueuePage:
        """One page of the agent's queued (dispatch order) or leased (soonest expiry first) tasks."""
        self._agent(agent_id)
        after = None
        if next_token is not None and QUEUE_POSITION.fullmatch(next_token):
            after = next_token  # a token issued before page tokens had one codec (a bare position) still pages
        elif next_token is not None:
            after = decode_page_token(
                next_token, lambda key: set(key) == {"after"} and QUEUE_POSITION.fullmatch(key["after"]) is not None
            )["after"]
        read = self._queue.queued if status == "queued" else self._queue.leased
        tasks = read(agent_id, limit + 1, after)
        page = tasks[:limit]
        token = encode_page_token({"after": page[-1].queue_position}) if len(tasks) > limit else None
        return QueuePage(items=[_queued_task(task, status) for task in page], next_token=token)

    def _agent(self, agent_id: str) -> AgentRecord:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return agent


def probe_lease(task: TaskRecord, expires_at: str) -> Probe:
    """The probe's mark on its agent: this attempt, taken as ended PROBE_GRACE_SECONDS after its deadline at the
    latest (the sweep ends its lease before then; the grace only heals an end that could not say so)."""
    until = parse_timestamp(task.attempt_deadline or expires_at)
    assert until is not None, expires_at
    return Probe(
        key=probe_key(task.task_id, task.dispatch_seq),
        until=format_timestamp(until + timedelta(seconds=PROBE_GRACE_SECONDS)),
    )


def quarantined_error(agent: AgentRecord, now: datetime) -> AgentQuarantined:
    """The 409 a quarantined agent's pull gets: since when and why, and Retry-After the seconds until it is half-open
    (HALF_OPEN_RETRY_SECONDS once it is: its probe is out, or nothing is queued to probe with)."""
    stamp = format_timestamp(now)
    view = quarantine_view(agent, stamp)
    assert view is not None
    until = parse_timestamp(view.probe_after) or now
    wait = math.ceil((until - now).total_seconds())
    retry_after = wait if wait > 0 else HALF_OPEN_RETRY_SECONDS
    more = (
        f"; it may lease one probe task from {view.probe_after}"
        if wait > 0
        else "; it is half-open, and no probe task is ready for it now (one is out, none is queued, or it is paused, "
        "offline or full)"
    )
    return AgentQuarantined(agent.quarantine_message() + more, view.model_dump(mode="json"), retry_after)


def lease_expiry(task: TaskRecord, now: datetime) -> str:
    """A lease lasts the task's lease_seconds, and never past the attempt's deadline (the runner stops waiting
    then: the agent's slot comes back at the deadline, by the sweep)."""
    expires_at = format_timestamp(now + timedelta(seconds=task.lease_seconds))
    if task.attempt_deadline is not None:
        return min(expires_at, task.attempt_deadline)
    return expires_at


def _with_fresh(candidates: list[TaskRecord], fresh: TaskRecord | None) -> list[TaskRecord]:
    if fresh is None or any(task.ref == fresh.ref for task in candidates):
        return candidates
    return sorted([*candidates, fresh], key=lambda task: task.queue_position)


def _queued_task(task: TaskRecord, status: str) -> QueuedTask:
    return QueuedTask(
        task_id=task.task_id,
        session_id=task.session_id,
        action=task.action,
        status="queued" if status == "queued" else "leased",
        priority=task.priority or 0,
        attempt=task.attempts or 1,
        enqueued_at=task.enqueued_at or "",
        lease_expires_at=task.lease_expires_at,
    )
