"""GET /agent/{agentId}/stats: what an agent did over a window that ends now, read within fixed bounds.

What one request reads, however busy the agent (the cost table is in docs/performance.md):
- the agent item (GetItem) and its queue's priorities (a Query of the AgentTasks index);
- its tallies of the window (opscore.agents.tallies): the minutes of the partial hours at either end and the whole
  hours between, at most ~2 x 60 + 24 small items in at most three Queries; the attempts' counts are exact from the
  start of the window's first minute, their timings' percentiles within tallies.RELATIVE_ERROR;
- the time in each state as a difference of the cumulative totals that every state write keeps: at the window's end
  from the agent item, at its start from the first state change after it (one Query, Limit 1; none when the state has
  not changed since the window began).
History written before the totals were kept has none: the time in each state is then counted from the changes in the
window, newest first, at most MAX_HISTORY of them (one Query); reaching that bound is said in the answer (`sampled`),
and the figures then cover the newest part of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from opscore.agents.models import AgentState, AgentStats, Percentiles, TaskCounts
from opscore.agents.records import AgentRecord
from opscore.agents.registry import Registry
from opscore.agents.stats import seconds_between, state_seconds, utilisation
from opscore.agents.tallies import TallyStore, histogram_percentile
from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.observability import logger

MAX_HISTORY = 500


class AgentAnalytics:
    def __init__(self, registry: Registry, tallies: TallyStore, now: Callable[[], datetime]) -> None:
        self._registry = registry
        self._tallies = tallies
        self._now = now

    def stats(self, agent_id: str, window: str, seconds: int) -> AgentStats:
        record = self._registry.require(agent_id)
        until = self._now()
        since = until - timedelta(seconds=seconds)
        spent, sampled = self._state_seconds(record, since, until)
        counted = self._tallies.window(agent_id, since, until)
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
            queue_wait_ms=_percentiles(counted.queue_wait),
            run_time_ms=_percentiles(counted.run_time),
            queue=self._registry.queue_counts(record),
            sampled=sampled,
        )
        logger.info(
            "agent stats read",
            extra={
                "event": "agent_stats_read",
                "agent_id": agent_id,
                "window_seconds": seconds,
                "attempts": counted.succeeded + counted.failed + counted.timed_out,
                "sampled": stats.sampled,
            },
        )
        return stats

    def _state_seconds(self, record: AgentRecord, since: datetime, until: datetime) -> tuple[dict[str, float], bool]:
        """Time in each state: the difference of the cumulative totals at the window's ends, or, where history was
        written before the totals were kept, counted from its changes in the window (and whether that hit its
        bound)."""
        at_end = self._registry.state_totals_at(record, until)
        at_start = self._registry.state_totals_at(record, since) if at_end is not None else None
        if at_end is not None and at_start is not None:
            return seconds_between(at_start, at_end), False
        return self._counted_from_history(record, since, until)

    def _counted_from_history(
        self, record: AgentRecord, since: datetime, until: datetime
    ) -> tuple[dict[str, float], bool]:
        """The history inside the window (newest first, bounded) and the state before it."""
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


def _percentiles(histogram: Mapping[int, int]) -> Percentiles:
    def rounded(fraction: float) -> float | None:
        value = histogram_percentile(histogram, fraction)
        return None if value is None else round(value, 1)

    return Percentiles(count=sum(histogram.values()), p50=rounded(0.5), p95=rounded(0.95))


def _moment(stamp: str) -> datetime:
    moment = parse_timestamp(stamp)
    assert moment is not None, stamp
    return moment
