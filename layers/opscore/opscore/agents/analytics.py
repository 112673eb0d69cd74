"""GET /agent/{agentId}/stats: what an agent did over a window that ends now, read within fixed bounds.

What one request reads (the cost table is in docs/performance.md):
- the agent item (GetItem) and its queue's priorities (a Query of the AgentTasks index);
- its state history inside the window, newest first, at most MAX_HISTORY entries (one Query);
- its sessions that can have attempts ending in the window (one Query of AgentSessions), and the task items of at
  most MAX_SESSIONS of them (one Query of each session's partition).
Reaching a bound is said in the answer (`sampled`): the figures then cover the newest part of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from opscore.agents.models import AgentState, AgentStats, Percentiles, TaskCounts
from opscore.agents.records import AgentRecord
from opscore.agents.registry import Registry
from opscore.agents.stats import Attempt, milliseconds, percentile, state_seconds, tally, utilisation
from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.observability import logger
from opscore.sessions.models import TaskStatus
from opscore.sessions.records import TaskRecord
from opscore.sessions.store import SessionStore

MAX_SESSIONS = 50
MAX_HISTORY = 500
# The statuses a task item keeps after its latest attempt ended (a retrying task's attempt ended too).
_ENDED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.RETRYING})


class AgentAnalytics:
    def __init__(self, registry: Registry, sessions: SessionStore, now: Callable[[], datetime]) -> None:
        self._registry = registry
        self._sessions = sessions
        self._now = now

    def stats(self, agent_id: str, window: str, seconds: int) -> AgentStats:
        record = self._registry.require(agent_id)
        until = self._now()
        since = until - timedelta(seconds=seconds)
        spent, history_cut = self._state_seconds(record, since, until)
        tasks, sessions_read, sessions_cut = self._sessions.recent_tasks(agent_id, since, until, MAX_SESSIONS)
        counted = tally((attempt for task in tasks for attempt in attempts_of(task)), since, until)
        stats = AgentStats(
            agent_id=agent_id,
            window=window,
            window_seconds=seconds,
            since=format_timestamp(since),
            until=format_timestamp(until),
            tasks=TaskCounts(
                succeeded=counted.succeeded,
                failed=counted.failed,
                timed_out=counted.timed_out,
                success_rate=counted.success_rate,
            ),
            failure_streak=len(record.failures_within(format_timestamp(until))),
            state_seconds={state.value: round(spent.get(state.value, 0.0), 3) for state in AgentState},
            utilisation=utilisation(spent, seconds),
            queue_wait_ms=_percentiles(counted.queue_wait_ms),
            run_time_ms=_percentiles(counted.run_ms),
            queue=self._registry.queue_counts(record),
            sessions_read=sessions_read,
            sampled=history_cut or sessions_cut,
        )
        logger.info(
            "agent stats read",
            extra={
                "event": "agent_stats_read",
                "agent_id": agent_id,
                "window_seconds": seconds,
                "sessions_read": sessions_read,
                "sampled": stats.sampled,
            },
        )
        return stats

    def _state_seconds(self, record: AgentRecord, since: datetime, until: datetime) -> tuple[dict[str, float], bool]:
        """Time in each state: the history inside the window (newest first, bounded) and the state before it."""
        entries, more = self._registry.history_window(record.agent_id, since, until, MAX_HISTORY)
        changes = [(_moment(entry.timestamp), entry.state.value) for entry in entries]
        if more:  # the oldest changes were not read: count from the oldest one read
            since = min(moment for moment, _ in changes)
            initial = None
        elif entries:
            oldest = entries[-1]
            initial = oldest.previous_state.value if oldest.previous_state else None
        else:
            initial = record.state.value if record.state else None
        return state_seconds(initial, changes, since, until), more


def attempts_of(task: TaskRecord) -> Iterator[Attempt]:
    """Each ended attempt of the task, with its queue wait and run time where its lease is known: from its own record
    (which keeps when it was queued and leased), else, for a record written before it did, the task's last lease for
    its latest attempt."""
    latest = task.attempts if task.status in _ENDED else None
    for record in task.history:
        ended = parse_timestamp(record.ended_at)
        if ended is None or record.status.value not in ("succeeded", "failed", "timed_out"):
            continue
        leased_at = record.leased_at or (task.leased_at if record.attempt == latest else None)
        wait, run = _timings(parse_timestamp(record.queued_at or record.started_at), parse_timestamp(leased_at), ended)
        yield Attempt(record.status.value, ended, wait, run)


def _timings(queued: datetime | None, leased: datetime | None, ended: datetime) -> tuple[float | None, float | None]:
    """The attempt's queue wait and run time, when its lease is known and in order."""
    if queued is None or leased is None or not queued <= leased <= ended:
        return None, None
    return milliseconds(queued, leased), milliseconds(leased, ended)


def _percentiles(values: list[float]) -> Percentiles:
    def rounded(fraction: float) -> float | None:
        value = percentile(values, fraction)
        return None if value is None else round(value, 1)

    return Percentiles(count=len(values), p50=rounded(0.5), p95=rounded(0.95))


def _moment(stamp: str) -> datetime:
    moment = parse_timestamp(stamp)
    assert moment is not None, stamp
    return moment
