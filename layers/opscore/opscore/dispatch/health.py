"""Agent health: how leases end when the agent does not answer, and what Ops-Core does about agents that fail.

The rules:
- a lease that runs out (no heartbeat or result in time) fails its attempt with OpsCore.LeaseExpired, so the
  template's retry and fallback apply; the agent's slot comes back. A lease never outlasts its attempt's deadline: one
  that reaches it is the runner's own timeout (States.Timeout), which the runner saw first;
- a queued attempt whose deadline passed is recorded as the runner's timeout and leaves the queue;
- an agent silent (no state report, heartbeat, result or pull) for longer than its `offline_after_seconds` is marked
  `offline`, and every lease it holds fails its attempt with OpsCore.AgentOffline;
- `quarantine_after` failed attempts in a row (failed results, expired leases, timeouts, failed deliveries) put the
  agent in `error` (quarantined). While it is quarantined, its queued tasks (and tasks queued later) fail at once
  with OpsCore.AgentQuarantined, which skips their retries and goes to their fallback; fallback tasks themselves
  wait in the queue, so a session can still finish once the agent recovers. A state report of `idle` (from the
  agent or an admin) lifts the quarantine.
Each transition is logged and counted. `sweep` runs on a schedule and finds each kind of deadline (a queued
attempt's, a lease's, an agent's silence) with one Query each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from opscore.agents.models import AgentState
from opscore.agents.records import silent_from
from opscore.agents.registry import Registry
from opscore.agents.store import AgentStore
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.errors import Throttled
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import Backoff, attempts
from opscore.dispatch.queue import Counted, TaskQueue
from opscore.sessions.attempts import AttemptEnd, count, failed, opscore_problem, route_of, timeout_problem
from opscore.sessions.errors import AGENT_OFFLINE_ERROR, AGENT_QUARANTINED_ERROR, LEASE_EXPIRED_ERROR, TIMEOUT_ERROR
from opscore.sessions.models import Problem, TaskStatus
from opscore.sessions.records import TaskRecord, TaskRef
from opscore.sessions.store import SessionStore

# Deadlines handled per sweep and kind; what is left waits for the next run (a minute later in AWS).
SWEEP_LIMIT = 100
# Tries to fail an attempt's wait while Step Functions throttles.
RUNNER_ATTEMPTS = 3
RUNNER_BACKOFF = Backoff(0.05, 0.2)
# Queued tasks failed per quarantine, in pages of this size.
QUEUE_PAGE = 100


@dataclass
class SweepReport:
    attempts_timed_out: int = 0  # queued attempts the runner timed out, recorded here (they leave the queue)
    leases_expired: int = 0
    agents_offline: int = 0
    agents_freed: set[str] = field(default_factory=set)  # agents with a slot given back: worth serving


class AgentHealth:
    def __init__(  # noqa: PLR0917 - health joins the agent, queue and session records with the runner
        self,
        agents: AgentStore,
        queue: TaskQueue,
        sessions: SessionStore,
        registry: Registry,
        runner: RunnerControl,
        now: Callable[[], datetime],
    ) -> None:
        self._agents = agents
        self._queue = queue
        self._sessions = sessions
        self._registry = registry
        self._runner = runner
        self._now = now

    def heard_from(self, agent_id: str, offline_after: int | None) -> None:
        """A heartbeat, a result or a pull: the agent is alive, its silence deadline moves on."""
        now = self._now()
        self._agents.touch(agent_id, format_timestamp(now), silent_from(now, offline_after))

    # ------------------------------------------------------------------ leases
    def end_lease(
        self,
        agent_id: str,
        ref: TaskRef,
        *,
        error: str,
        cause: str = "",
        counted: Counted = "failure",
        expired_only: bool = False,
        problem: Problem | None = None,
        final: bool = False,
        tell: bool = True,
    ) -> bool:
        """End a lease without a result: the attempt fails with `error`, recorded as the runner will act on it.

        The runner is told (unless `tell` is off: a timeout, which the runner saw first). False when the attempt held
        no lease any more (it ended some other way first).
        """
        task = self._sessions.get_task(ref.session_id, ref.index)
        if task is None or not task.leased_for(ref):
            return False
        now = self._now()
        if error == LEASE_EXPIRED_ERROR and task.past_deadline(format_timestamp(now)):
            # The lease ran out at the attempt's deadline: the runner timed the attempt out (and heard of it first).
            error, problem, tell = TIMEOUT_ERROR, timeout_problem(route_of(task)), False
        ended = failed(task, problem or opscore_problem(error, cause), error, now, final=final)
        if not self._queue.release(
            agent_id, ref, ended=ended, counted=counted, now=format_timestamp(now), expired_only=expired_only
        ):
            return False
        count(ended)
        if tell and task.task_token is not None:
            self._tell_runner(task.task_token, error, cause)
        self._lease_ended(agent_id, ref, ended, error, counted)
        return True

    def _lease_ended(self, agent_id: str, ref: TaskRef, ended: AttemptEnd, error: str, counted: Counted) -> None:
        """Log and count a lease ended without a result; a failure may quarantine its agent."""
        logger.info(
            "lease ended without a result",
            extra={
                "agent_id": agent_id,
                "session_id": ref.session_id,
                "task_id": ref.task_id,
                "old_status": "leased",
                "new_status": ended.outcome.status,
                "error_type": error,
            },
        )
        metrics.add_metric(name="LeasesEnded", unit=MetricUnit.Count, value=1)
        if counted == "failure":
            self.after_failure(agent_id)

    def skip_lease(self, agent_id: str, ref: TaskRef) -> bool:
        """A cancel ends the lease: the task is skipped, the agent's slot comes back, and nothing is counted."""
        now = format_timestamp(self._now())
        return self._queue.release(agent_id, ref, ended=None, status=TaskStatus.SKIPPED, counted=None, now=now)

    def end_queued(self, task: TaskRecord, *, error: str, problem: Problem, final: bool = False) -> bool:
        """End a queued attempt without a lease (a quarantine, a timeout), as `task` (the caller's read of it) shows
        it: off the queue, recorded as it ended. False when it was no longer queued for that attempt."""
        if task.status is not TaskStatus.QUEUED:
            return False
        now = self._now()
        ended = failed(task, problem, error, now, final=final)
        if not self._queue.withdraw(task.ref, ended, format_timestamp(now)):
            return False
        count(ended)
        return True

    def _tell_runner(self, token: str, error: str, cause: str) -> None:
        """Fail the attempt's wait, trying again while Step Functions throttles: the lease is already gone, so
        nothing else would end the wait before the attempt's own timeout."""
        for attempt in attempts(RUNNER_ATTEMPTS, RUNNER_BACKOFF):
            try:
                self._runner.fail(token, error, cause)
                return
            except Throttled:
                if attempt == RUNNER_ATTEMPTS - 1:
                    raise

    # ------------------------------------------------------------------ quarantine
    def after_failure(self, agent_id: str) -> None:
        """An attempt of the agent failed: quarantine it once its streak reaches `quarantine_after`."""
        agent = self._agents.get(agent_id)
        if agent is not None and agent.due_for_quarantine:
            self.quarantine(agent_id, agent.failure_streak)

    def quarantine(self, agent_id: str, streak: int | None) -> bool:
        """Put the agent in error (if it is still due: set_by_opscore reads it again under its version guard)."""
        entry = self._registry.set_by_opscore(
            agent_id,
            AgentState.ERROR,
            {"reason": "quarantined", "consecutive_failures": streak},
            when=lambda agent: agent.due_for_quarantine,
            quarantine="set",
        )
        if entry is None:
            return False
        logger.warning(
            "agent quarantined",
            extra={"agent_id": agent_id, "old_state": entry.previous_state, "new_state": "error", "failures": streak},
        )
        metrics.add_metric(name="AgentsQuarantined", unit=MetricUnit.Count, value=1)
        self.fail_queued(agent_id)
        return True

    def fail_queued(self, agent_id: str, fresh: TaskRecord | None = None) -> None:
        """Fail the quarantined agent's queued tasks over to their fallbacks (fallback runs stay queued).

        `fresh` is a task just queued, read by its key: the index may not show it yet.
        """
        if fresh is not None:
            self._fail_over(agent_id, fresh.ref)
        for entry in self._all(self._queue.queued, agent_id):
            self._fail_over(agent_id, entry.ref)

    @staticmethod
    def _all(read: Callable[[str, int, str | None], list[TaskRecord]], agent_id: str) -> Iterator[TaskRecord]:
        """Every entry of one of the agent's queue indexes, a page at a time."""
        after: str | None = None
        while True:
            page = read(agent_id, QUEUE_PAGE, after)
            yield from page
            if len(page) < QUEUE_PAGE:
                return
            after = page[-1].queue_position

    def _fail_over(self, agent_id: str, ref: TaskRef) -> None:
        task = self._sessions.get_task(ref.session_id, ref.index)
        if task is None or task.queued_as_fallback or not task.queued_for(ref):
            return
        cause = f"agent {agent_id} was quarantined while the task waited in its queue"
        problem = opscore_problem(AGENT_QUARANTINED_ERROR, cause)
        if self.end_queued(task, error=AGENT_QUARANTINED_ERROR, problem=problem) and task.task_token is not None:
            self._tell_runner(task.task_token, AGENT_QUARANTINED_ERROR, cause)
            logger.info(
                "queued task failed over: agent quarantined",
                extra={
                    "agent_id": agent_id,
                    "session_id": ref.session_id,
                    "task_id": ref.task_id,
                    "old_status": "queued",
                    "new_status": "failed",
                    "error_type": AGENT_QUARANTINED_ERROR,
                },
            )
            metrics.add_metric(name="TasksFailedOver", unit=MetricUnit.Count, value=1)

    # ------------------------------------------------------------------ the sweep
    def sweep(self) -> SweepReport:
        report = SweepReport()
        now = format_timestamp(self._now())
        for entry in self._queue.expired_attempts(now, SWEEP_LIMIT):
            try:
                task = self._sessions.get_task(entry.session_id, entry.index)
                timed_out = (
                    task is not None
                    and task.queued_for(entry.ref)
                    and self.end_queued(task, error=TIMEOUT_ERROR, problem=timeout_problem(route_of(task)))
                )
            except Exception:
                logger.exception("timeout not recorded; the next sweep tries again", extra={"task_id": entry.task_id})
                continue
            report.attempts_timed_out += timed_out
        for lease in self._queue.expired_leases(now, SWEEP_LIMIT):
            try:
                ended = self.end_lease(
                    lease.agent_id,
                    lease.ref,
                    error=LEASE_EXPIRED_ERROR,
                    cause=f"no heartbeat or result within the {lease.lease_seconds} s lease",
                    expired_only=True,
                )
            except Exception:
                logger.exception("lease not ended; the next sweep tries again", extra={"task_id": lease.task_id})
                continue
            if ended:
                report.leases_expired += 1
                report.agents_freed.add(lease.agent_id)
        for agent_id in self._agents.silent_agents(now, SWEEP_LIMIT):
            try:
                marked = self.mark_offline(agent_id)
            except Exception:
                logger.exception("agent not marked offline; the next sweep tries again", extra={"agent_id": agent_id})
                continue
            report.agents_offline += marked
        return report

    def mark_offline(self, agent_id: str) -> bool:
        """Mark a silent agent offline and end the leases it holds; False when it spoke meanwhile."""
        now = format_timestamp(self._now())
        agent = self._agents.get(agent_id)
        if agent is None:
            return False
        if agent.state is AgentState.OFFLINE:
            self._agents.clear_silence(agent_id, now)  # offline already: nothing to mark, and nothing to look at again
            return False
        entry = self._registry.set_by_opscore(
            agent_id,
            AgentState.OFFLINE,
            {"reason": "silent", "offline_after_seconds": agent.offline_after_seconds},
            when=lambda agent: agent.silent_before(now),
            silent_before=now,  # a pull or heartbeat between the read and the write keeps it online
        )
        if entry is None:
            return False
        logger.warning(
            "agent marked offline",
            extra={"agent_id": agent_id, "old_state": entry.previous_state, "new_state": "offline"},
        )
        metrics.add_metric(name="AgentsMarkedOffline", unit=MetricUnit.Count, value=1)
        for leased in self._all(self._queue.leased, agent_id):
            self.end_lease(
                agent_id,
                leased.ref,
                error=AGENT_OFFLINE_ERROR,
                cause=f"agent {agent_id} went offline holding the lease",
                counted=None,
            )
        return True
