"""Agent health: how leases end when the agent does not answer, and what Ops-Core does about agents that fail.

The rules:
- a lease that runs out (no heartbeat or result in time) fails its attempt with OpsCore.LeaseExpired, so the
  template's retry and fallback apply; the agent's slot comes back. A lease never outlasts its attempt's deadline: one
  that reaches it is the runner's own timeout (States.Timeout), which the runner saw first;
- a queued attempt whose deadline passed is recorded as the runner's timeout and leaves the queue;
- an agent silent (no state report, heartbeat, result or pull) for longer than its `offline_after_seconds` is marked
  `offline`, and every lease it holds fails its attempt with OpsCore.AgentOffline;
- the quarantine is a circuit breaker over the agent's own failures. Counted: an expired lease, a failed delivery,
  a leased attempt that ran into the runner's timeout, and a failed result whose error says `"fault": "agent"`. Not
  counted: a failed result of the task's own (`"fault": "task"`, the default: its retries absorb it), a queued
  attempt that timed out, the agent going offline, a cancel, a quarantine's fail-over, Ops-Core's own errors.
  `quarantine_after` counted failures within `quarantine_window_seconds` open it: the agent goes to `error`,
  quarantined, and its queued tasks (and tasks queued while it stays open) fail at once with
  OpsCore.AgentQuarantined, which skips their retries and goes to their fallback; fallback tasks wait in the queue.
  A success does not erase failures in the window. No state report lifts it. After `quarantine_cooldown_seconds` it
  is half-open: queued tasks wait, and the agent may lease one probe; the probe's success closes the breaker
  (failures cleared, the agent idle), its failure (any failed attempt) opens it again from now, and a probe that
  ends without deciding (a cancel, the agent offline) lets another be leased. An admin may lift it at any time.
Each transition is logged and counted. `sweep` runs on a schedule and finds each kind of deadline (a queued
attempt's, a lease's, an agent's silence) with one Query each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from opscore.agents.models import AgentState
from opscore.agents.records import (
    AgentRecord,
    AttemptOutcome,
    BreakerMove,
    CountedFailure,
    breaker_move,
    probe_key,
    silent_from,
)
from opscore.agents.registry import OpsCoreChange, Registry
from opscore.agents.store import AgentStore
from opscore.aws.stepfunctions import RunnerControl
from opscore.core.clock import format_timestamp
from opscore.core.errors import Throttled
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import Backoff, attempts
from opscore.dispatch.queue import TaskQueue
from opscore.sessions.attempts import (
    AttemptEnd,
    failed,
    opscore_problem,
    recorded,
    retry_after_timeout,
    route_of,
    timeout_problem,
)
from opscore.sessions.errors import (
    AGENT_OFFLINE_ERROR,
    AGENT_QUARANTINED_ERROR,
    DELIVERY_FAILED_ERROR,
    LEASE_EXPIRED_ERROR,
    TIMEOUT_ERROR,
)
from opscore.sessions.models import Problem, TaskStatus
from opscore.sessions.records import TaskRecord, TaskRef
from opscore.sessions.store import SessionStore

# Deadlines handled per sweep and kind; what is left waits for the next run (a minute later in AWS).
SWEEP_LIMIT = 100
# Tries to fail an attempt's wait while Step Functions throttles.
RUNNER_ATTEMPTS = 3
RUNNER_BACKOFF = Backoff(0.05, 0.2)
# Withdrawing a queued attempt, when its transaction meets another on the agent's tallies.
WITHDRAW_ATTEMPTS = 5
WITHDRAW_BACKOFF = Backoff(0.01, 0.05, exponential=True)
# Queued tasks failed per quarantine, in pages of this size.
QUEUE_PAGE = 100
# How a lease ends without a result that is the agent's own fault: counted toward its quarantine. (A leased attempt
# that reaches the runner's timeout was held to its deadline by the agent.)
AGENT_FAULTS = frozenset({LEASE_EXPIRED_ERROR, DELIVERY_FAILED_ERROR, TIMEOUT_ERROR})


@dataclass
class SweepReport:
    attempts_timed_out: int = 0  # queued attempts the runner timed out, recorded here (they leave the queue)
    leases_expired: int = 0
    agents_offline: int = 0
    agents_freed: set[str] = field(default_factory=set)  # agents with a slot given back: worth serving


def _problem(error: str, cause: str, problem: Problem | None) -> Problem:
    return problem if problem is not None else opscore_problem(error, cause)


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
        expired_only: bool = False,
        problem: Problem | None = None,
        final: bool = False,
        tell: bool = True,
    ) -> bool:
        """End a lease without a result: the attempt fails with `error`, recorded as the runner will act on it.

        The runner is told (unless `tell` is off: a timeout, which the runner saw first). The failure counts toward
        the agent's quarantine when it is the agent's fault (AGENT_FAULTS). False when the attempt held no lease any
        more (it ended some other way first).
        """
        task = self._sessions.get_task(ref.session_id, ref.index)
        if task is None or not task.leased_for(ref):
            return False
        now = self._now()
        stamp = format_timestamp(now)
        if error == LEASE_EXPIRED_ERROR and task.past_deadline(stamp):
            # The lease ran out at the attempt's deadline: the runner timed the attempt out (and heard of it first).
            error, problem, tell = TIMEOUT_ERROR, timeout_problem(route_of(task)), False
        shown = _problem(error, cause, problem)
        ended = failed(task, shown, error, now, final=final)
        counted = CountedFailure(stamp, error) if error in AGENT_FAULTS else None
        if not self._queue.release(agent_id, ref, ended=ended, counted=counted, now=stamp, expired_only=expired_only):
            return False
        recorded(task, ended)
        self._lease_ended(agent_id, task, ended, shown)
        # The breaker moves before the runner is told: the lease is gone, so nothing would move it after a throttle.
        self.attempt_ended(agent_id, task, "counted" if counted else "released", error)
        if tell and task.task_token is not None:
            self._tell_runner_or_leave_it(task, task.task_token, ended, error, cause)
        return True

    def _tell_runner_or_leave_it(self, task: TaskRecord, token: str, ended: AttemptEnd, error: str, cause: str) -> None:
        """Fail the attempt's wait, if Step Functions lets us now.

        Deliberately broad: the lease is ended and recorded, so nothing retries this later; the runner's own timeout
        (the task's timeout_seconds) ends its wait instead, and its retry or fallback goes on from the record. An
        error here would have the sweep count the lease as not ended, and an agent gone offline keep its other
        leases."""
        try:
            self._tell_runner(token, error, cause)
        except Exception:
            logger.warning(
                "runner not told of the lease's end; its timeout ends the wait",
                extra={"event": "runner_not_told", "task_id": task.task_id, "error_type": error},
                exc_info=True,
            )
            if ended.outcome.status is TaskStatus.RETRYING:
                self._retry_at_the_runners_timeout(task)

    def _retry_at_the_runners_timeout(self, task: TaskRecord) -> None:
        """The runner, never told, retries after its own timeout, not when the record said: the task shows when,
        and the retry's dispatch counts the next attempt's deadline from then (see SessionRunner's scheduled_at),
        so that attempt keeps its whole timeout."""
        when = retry_after_timeout(task)
        if when is None:
            return
        try:
            self._sessions.reschedule(task.session_id, task.index, task.dispatch_seq, when)
        except Exception:
            logger.warning("retry not rescheduled", extra={"event": "reschedule_failed", "task_id": task.task_id})

    def _lease_ended(self, agent_id: str, task: TaskRecord, ended: AttemptEnd, problem: Problem) -> None:
        """Log and count a lease ended without a result."""
        logger.info(
            "lease expired" if problem.type == LEASE_EXPIRED_ERROR else "lease ended without a result",
            extra={
                "event": "lease_expired" if problem.type == LEASE_EXPIRED_ERROR else "lease_ended",
                "agent_id": agent_id,
                "session_id": task.session_id,
                "task_id": task.task_id,
                "old": "leased",
                "new": ended.outcome.status,
                "error_type": problem.type,
                "error_message": problem.message,
                "probe": task.probing,
            },
        )
        metrics.add_metric(name="LeasesEnded", unit=MetricUnit.Count, value=1)

    def skip_lease(self, agent_id: str, ref: TaskRef) -> bool:
        """A cancel ends the lease: the task is skipped, the agent's slot comes back, and nothing is counted (a
        probe's slot is freed without deciding)."""
        task = self._sessions.get_task(ref.session_id, ref.index)
        now = format_timestamp(self._now())
        if not self._queue.release(agent_id, ref, ended=None, status=TaskStatus.SKIPPED, counted=None, now=now):
            return False
        if task is not None and task.ref == ref:
            self.attempt_ended(agent_id, task, "released", "")
        return True

    def end_queued(self, task: TaskRecord, *, error: str, problem: Problem, final: bool = False) -> bool:
        """End a queued attempt without a lease (a quarantine, a timeout), as `task` (the caller's read of it) shows
        it: off the queue, recorded as it ended. False when it was no longer queued for that attempt."""
        if task.status is not TaskStatus.QUEUED:
            return False
        now = self._now()
        ended = failed(task, problem, error, now, final=final)
        for attempt in attempts(WITHDRAW_ATTEMPTS, WITHDRAW_BACKOFF):
            try:
                withdrawn = self._queue.withdraw(task.agent_id, task.ref, ended, format_timestamp(now))
                break
            except Throttled:
                # The withdrawal writes the agent's tallies, which the agent's other attempts' ends write too: a
                # transaction that met one of theirs is tried again (the same end: it is written once at most).
                if attempt == WITHDRAW_ATTEMPTS - 1:
                    raise
        if not withdrawn:
            return False
        recorded(task, ended)
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

    # ------------------------------------------------------------------ quarantine: the circuit breaker
    def attempt_ended(self, agent_id: str, task: TaskRecord, outcome: AttemptOutcome, error: str) -> None:
        """An attempt of the agent ended (its end, and a counted failure, already written): move its breaker.

        Only a counted failure or the end of a probe can move it, so nothing else reads the agent."""
        if outcome != "counted" and not task.probing:
            return
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        now = format_timestamp(self._now())
        if outcome == "counted":
            self._trim(agent, now)
        probe = probe_key(task.task_id, task.dispatch_seq) if task.probing else None
        move = breaker_move(agent, probe, outcome, now)
        if move == "open":
            self.quarantine(agent_id)
        elif move is not None and probe is not None:
            self._probe_decided(agent_id, task, probe, move, error)

    def _probe_decided(self, agent_id: str, task: TaskRecord, probe: str, move: BreakerMove, error: str) -> None:
        """The probe's end: close the breaker, open it again, or free the probe's slot."""
        if move == "reopen":
            self.reopen(agent_id, probe, error)
        elif move == "close":
            self._registry.lift_quarantine(agent_id, by="probe", when=lambda agent: agent.probe == probe)
        elif self._agents.free_probe(agent_id, probe):
            logger.info(
                "probe ended without deciding",
                extra={"event": "probe_released", "agent_id": agent_id, "task_id": task.task_id},
            )

    def _trim(self, agent: AgentRecord, now: str) -> None:
        """Keep the agent's failures bounded: the window's last quarantine_after. Best effort: a failure counted
        meanwhile moves the guard, and its own trim does the work."""
        kept = agent.trimmed_failures(now)
        if agent.failures_seq and kept != agent.failures:
            self._agents.trim_failures(agent.agent_id, agent.failures_seq, kept)

    def quarantine(self, agent_id: str) -> bool:
        """Open the agent's breaker: error, quarantined (if it is still due: decided again under the version guard)."""

        def decide(agent: AgentRecord) -> OpsCoreChange | None:
            now = format_timestamp(self._now())
            if not agent.due_for_quarantine(now):
                return None
            opening = agent.opening(now, "failures")
            details = {
                "reason": "quarantined",
                "failures": opening.failures,
                "window_seconds": agent.quarantine_window_seconds,
                "last_error_type": opening.last_error,
                "probe_after": opening.probe_after,
            }
            return OpsCoreChange(AgentState.ERROR, details, quarantine=opening)

        return self._opened(agent_id, decide, "agent quarantined")

    def reopen(self, agent_id: str, probe: str, error: str) -> bool:
        """The probe failed: the breaker opens again from now, with a new cool-down."""

        def decide(agent: AgentRecord) -> OpsCoreChange | None:
            if agent.probe != probe:
                return None
            opening = agent.opening(format_timestamp(self._now()), "probe_failed", error)
            details = {
                "reason": "quarantined",
                "probe_failed": probe.partition("#")[0],
                "last_error_type": error,
                "probe_after": opening.probe_after,
            }
            return OpsCoreChange(AgentState.ERROR, details, quarantine=opening)

        return self._opened(agent_id, decide, "agent quarantined again: its probe failed")

    def _opened(self, agent_id: str, decide: Callable[[AgentRecord], OpsCoreChange | None], what: str) -> bool:
        changed = self._registry.set_by_opscore(agent_id, decide)
        if changed is None:
            return False
        _, entry = changed
        agent = self._agents.get(agent_id)
        if agent is None or agent.quarantine is None:
            return False
        quarantine = agent.quarantine
        logger.warning(
            what,
            extra={
                "event": "agent_quarantined",
                "agent_id": agent_id,
                "old": entry.previous_state,
                "new": "error",
                "failures": quarantine.failures,
                "error_type": quarantine.last_error,
                "quarantined_since": quarantine.since,
                "probe_after": quarantine.probe_after,
            },
        )
        metrics.add_metric(name="AgentsQuarantined", unit=MetricUnit.Count, value=1)
        self.fail_queued(agent)
        return True

    def fail_queued(self, agent: AgentRecord, fresh: TaskRecord | None = None) -> None:
        """Fail the quarantined agent's queued tasks over to their fallbacks (fallback runs stay queued).

        `fresh` is a task just queued, read by its key: the index may not show it yet.
        """
        cause = agent.quarantine_message()
        refs = [fresh.ref] if fresh is not None else []
        for ref in [*refs, *(entry.ref for entry in self._all(self._queue.queued, agent.agent_id))]:
            self._fail_over(agent.agent_id, ref, cause)

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

    def _fail_over(self, agent_id: str, ref: TaskRef, cause: str) -> None:
        task = self._sessions.get_task(ref.session_id, ref.index)
        if task is None or task.queued_as_fallback or not task.queued_for(ref):
            return
        if not self._withdrawn(agent_id, task, cause) or task.task_token is None:
            return
        try:
            self._tell_runner(task.task_token, AGENT_QUARANTINED_ERROR, cause)
        except Throttled:
            # Recorded, but the runner kept throttling its answer: its own timeout ends the wait.
            logger.warning(
                "failed-over task's runner not told",
                extra={"event": "runner_not_told", "task_id": ref.task_id},
                exc_info=True,
            )
            return
        logger.info(
            "queued task failed over: agent quarantined",
            extra={
                "event": "task_failed_over",
                "agent_id": agent_id,
                "session_id": ref.session_id,
                "task_id": ref.task_id,
                "old": "queued",
                "new": "failed",
                "error_type": AGENT_QUARANTINED_ERROR,
            },
        )
        metrics.add_metric(name="TasksFailedOver", unit=MetricUnit.Count, value=1)

    def _withdrawn(self, agent_id: str, task: TaskRecord, cause: str) -> bool:
        """The quarantined agent's queued task, ended with the quarantine; False when it was not (it moved on, or the
        table kept conflicting: then it stays queued, for the agent's probe or the runner's timeout to end)."""
        problem = opscore_problem(AGENT_QUARANTINED_ERROR, cause)
        try:
            return self.end_queued(task, error=AGENT_QUARANTINED_ERROR, problem=problem)
        except Throttled:
            logger.warning(
                "queued task not failed over: the table kept conflicting",
                extra={"event": "failover_deferred", "agent_id": agent_id, "task_id": task.task_id},
                exc_info=True,
            )
            return False

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
                logger.exception(
                    "timeout not recorded; the next sweep tries again",
                    extra={"event": "sweep_error", "task_id": entry.task_id},
                )
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
                logger.exception(
                    "lease not ended; the next sweep tries again",
                    extra={"event": "sweep_error", "task_id": lease.task_id},
                )
                continue
            if ended:
                report.leases_expired += 1
                report.agents_freed.add(lease.agent_id)
        for agent_id in self._agents.silent_agents(now, SWEEP_LIMIT):
            try:
                marked = self.mark_offline(agent_id)
            except Exception:
                logger.exception(
                    "agent not marked offline; the next sweep tries again",
                    extra={"event": "sweep_error", "agent_id": agent_id},
                )
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
        offline = OpsCoreChange(
            AgentState.OFFLINE,
            {"reason": "silent", "offline_after_seconds": agent.offline_after_seconds},
            silent_before=now,  # a pull or heartbeat between the read and the write keeps it online
        )
        changed = self._registry.set_by_opscore(agent_id, lambda agent: offline if agent.silent_before(now) else None)
        if changed is None:
            return False
        _, entry = changed
        logger.warning(
            "agent marked offline",
            extra={"event": "agent_offline", "agent_id": agent_id, "old": entry.previous_state, "new": "offline"},
        )
        metrics.add_metric(name="AgentsMarkedOffline", unit=MetricUnit.Count, value=1)
        for leased in self._all(self._queue.leased, agent_id):
            self.end_lease(
                agent_id,
                leased.ref,
                error=AGENT_OFFLINE_ERROR,
                cause=f"agent {agent_id} went offline holding the lease",
            )
        return True
