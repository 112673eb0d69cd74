"""The agent registry: registration, current state, state history.

The state-update rule: an update is applied only when its timestamp is later than the stored one. A repeat of an
update that was already accepted (same timestamp, state, details and error) is answered with the version it got the
first time and changes nothing. Anything else that is not newer is refused as stale, so a late or reordered report
never overwrites a newer one.

Applying one is read, decide, then write state and history in one transaction conditioned on the version that was
read: both or neither are stored, and a writer that lost a race reads again and decides again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

from opscore.agents.models import (
    Agent,
    AgentError,
    AgentState,
    CurrentState,
    HistoryPage,
    QueueCounts,
    Registration,
    RegistrationRequest,
    StateAccepted,
    StateHistoryEntry,
    StateReport,
)
from opscore.agents.store import AgentStore, StateWrite, agent_from_item, current_state_from_item, silent_from
from opscore.aws.dynamodb import ConditionFailed, Item, get_n
from opscore.core.clock import format_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Conflict, FieldProblem, NotFound, StaleState, ValidationFailed
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.settings import Settings
from opscore.dispatch.delivery import CHANNELS, channel
from opscore.dispatch.queue import TaskQueue

# Attempts to apply one update while other updates to the same agent keep winning the race; each attempt is a read
# and a transaction (after a short jittered pause), and only concurrent writers to one agent need a second one.
MAX_WRITE_ATTEMPTS = 5


class Registry:
    def __init__(self, store: AgentStore, queue: TaskQueue, settings: Settings, now: Callable[[], datetime]) -> None:
        self._store = store
        self._queue = queue
        self._settings = settings
        self._now = now

    def register(self, agent_id: str, request: RegistrationRequest) -> Registration:
        _check_delivery(request)
        now = self._now()
        item, created = self._store.upsert_registration(
            agent_id,
            request,
            format_timestamp(now),
            silent_at=silent_from(now, request.offline_after_seconds),
        )
        agent = self._agent(agent_id, item)
        logger.info(
            "agent registered" if created else "agent registration updated",
            extra={"agent_id": agent_id, "agent_version": request.version, "capabilities": request.capabilities},
        )
        metrics.add_metric(name="AgentsRegistered" if created else "AgentsReregistered", unit=MetricUnit.Count, value=1)
        return Registration(agent=agent, created=created)

    def get(self, agent_id: str) -> Agent:
        item = self._store.get_agent_item(agent_id)
        if item is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return self._agent(agent_id, item)

    def agent_item(self, agent_id: str) -> Item | None:
        """The agent's stored item (registration, state and dispatch counters), without the queue counts."""
        return self._store.get_agent_item(agent_id)

    def _agent(self, agent_id: str, item: Item) -> Agent:
        priorities = self._queue.queued_priorities(agent_id)
        counts = QueueCounts(
            queued=len(priorities),
            in_flight=get_n(item, "in_flight") or 0,
            queued_by_priority={str(value): priorities.count(value) for value in sorted(set(priorities), reverse=True)},
        )
        return agent_from_item(item, counts)

    def report_state(self, agent_id: str, report: StateReport) -> StateAccepted:
        now = self._now()
        if report.timestamp > now + timedelta(seconds=self._settings.max_clock_skew_seconds):
            raise ValidationFailed(
                "timestamp is in the future",
                [
                    FieldProblem(
                        "timestamp",
                        f"must not be more than {self._settings.max_clock_skew_seconds}s ahead of the server clock "
                        f"({format_timestamp(now)})",
                        type="future_timestamp",
                    )
                ],
            )
        for attempt in range(MAX_WRITE_ATTEMPTS):
            stored = self._store.get_agent_item(agent_id)
            if stored is None:
                raise NotFound(f"agent {agent_id} is not registered")
            # An idle report from the agent (or an admin) lifts a quarantine.
            lifts = report.state is AgentState.IDLE and bool(stored.get("quarantined", {}).get("BOOL"))
            write = StateWrite(
                state=report.state,
                timestamp=format_timestamp(report.timestamp),
                details_json=canonical_json(report.details),
                error_json=canonical_json(report.error.model_dump() if report.error else None),
                recorded_at=format_timestamp(now),
                expires_at=int((now + timedelta(days=self._settings.history_retention_days)).timestamp()),
                silent_at=_silent_at(stored, now),
                quarantine="lift" if lifts else "keep",
            )
            current = current_state_from_item(stored)
            if current is not None and current.timestamp >= write.timestamp:
                return self._repeat_or_stale(agent_id, write, current)
            entry = StateHistoryEntry(
                state=write.state,
                previous_state=current.state if current else None,
                timestamp=write.timestamp,
                details=report.details,
                error=report.error,
                version=(current.version if current else 0) + 1,
                recorded_at=write.recorded_at,
            )
            try:
                self._store.write_state(agent_id, entry.version - 1, write, entry)
            except ConditionFailed:
                # Another update was applied since the read (read again and decide again), or this very timestamp is
                # already in history although the state is older (a reset state): then it is a repeat or stale.
                if self._store.get_history_entry(agent_id, write.timestamp) is not None:
                    return self._repeat_or_stale(agent_id, write, current)
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not security
                continue
            self._record_change(agent_id, entry, report.error)
            if lifts:
                logger.info("agent quarantine lifted", extra={"agent_id": agent_id, "new_state": entry.state.value})
                metrics.add_metric(name="QuarantinesLifted", unit=MetricUnit.Count, value=1)
            return _accepted(agent_id, entry)
        metrics.add_metric(name="StateUpdateContention", unit=MetricUnit.Count, value=1)
        raise Conflict("the agent's state is changing too fast to apply this update now; send it again")

    def _repeat_or_stale(self, agent_id: str, write: StateWrite, current: CurrentState | None) -> StateAccepted:
        """An update not newer than the stored state: a repeat of an accepted one (200, its version), else stale."""
        earlier = self._store.get_history_entry(agent_id, write.timestamp)
        if earlier is None and current is not None and current.timestamp == write.timestamp:
            # The current state's history entry may have expired (TTL) while the state itself is still stored.
            earlier = StateHistoryEntry(
                state=current.state,
                previous_state=None,
                timestamp=current.timestamp,
                details=current.details,
                error=current.error,
                version=current.version,
                recorded_at=current.timestamp,
            )
        if earlier is not None and write.same_report_as(earlier):
            logger.info(
                "repeated state update answered with its first result",
                extra={"agent_id": agent_id, "state": earlier.state.value, "version": earlier.version},
            )
            metrics.add_metric(name="StateUpdatesRepeated", unit=MetricUnit.Count, value=1)
            return _accepted(agent_id, earlier)
        stored_timestamp = current.timestamp if current else None
        logger.info(
            "stale state update refused",
            extra={"agent_id": agent_id, "timestamp": write.timestamp, "stored_timestamp": stored_timestamp},
        )
        metrics.add_metric(name="StateUpdatesStale", unit=MetricUnit.Count, value=1)
        raise StaleState(
            "a state update at the same or a later timestamp is already stored",
            [
                FieldProblem(
                    "timestamp", f"must be later than the stored state's timestamp {stored_timestamp}", type="stale"
                )
            ],
        )

    def set_by_opscore(
        self,
        agent_id: str,
        state: AgentState,
        details: dict[str, Any],
        *,
        when: Callable[[Item], bool],
        quarantine: Literal["keep", "set"] = "keep",
        silent_before: str | None = None,
    ) -> StateHistoryEntry | None:
        """Ops-Core's own state change for an agent (offline, quarantined), made only while `when(agent item)` holds.

        It goes through the same version guard and history as an agent's report, stamped now (or just after the
        stored state, if the agent's clock ran ahead). None when the agent is gone or `when` no longer holds.
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            stored = self._store.get_agent_item(agent_id)
            if stored is None or not when(stored):
                return None
            current = current_state_from_item(stored)
            now = self._now()
            stamp = format_timestamp(now)
            if current is not None and current.timestamp >= stamp:
                stamp = format_timestamp(datetime.fromisoformat(current.timestamp) + timedelta(microseconds=1))
            write = StateWrite(
                state=state,
                timestamp=stamp,
                details_json=canonical_json(details),
                error_json=canonical_json(None),
                recorded_at=format_timestamp(now),
                expires_at=int((now + timedelta(days=self._settings.history_retention_days)).timestamp()),
                silent_at=None if state is AgentState.OFFLINE else _silent_at(stored, now),
                quarantine=quarantine,
                silent_before=silent_before,
            )
            entry = StateHistoryEntry(
                state=state,
                previous_state=current.state if current else None,
                timestamp=stamp,
                details=details,
                error=None,
                version=(current.version if current else 0) + 1,
                recorded_at=write.recorded_at,
            )
            try:
                self._store.write_state(agent_id, entry.version - 1, write, entry)
            except ConditionFailed:
                continue  # the agent reported (or was heard from) meanwhile: look again
            self._record_change(agent_id, entry, None)
            return entry
        return None

    def _record_change(self, agent_id: str, entry: StateHistoryEntry, error: AgentError | None) -> None:
        logger.info(
            "agent state changed",
            extra={
                "agent_id": agent_id,
                "old_state": entry.previous_state.value if entry.previous_state else None,
                "new_state": entry.state.value,
                "version": entry.version,
                "error_type": error.type if error else None,
            },
        )
        metrics.add_metric(name="StateChanges", unit=MetricUnit.Count, value=1)
        if error is not None:
            metrics.add_metric(name="AgentErrorsReported", unit=MetricUnit.Count, value=1)

    def history(self, agent_id: str, limit: int, next_token: str | None) -> HistoryPage:
        items, token = self._store.list_history(agent_id, limit, next_token)
        if not items and next_token is None and self._store.get_agent_item(agent_id) is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return HistoryPage(items=items, next_token=token)


def _accepted(agent_id: str, entry: StateHistoryEntry) -> StateAccepted:
    return StateAccepted(
        agent_id=agent_id,
        state=entry.state,
        previous_state=entry.previous_state,
        timestamp=entry.timestamp,
        version=entry.version,
    )


def _silent_at(agent: Item, now: datetime) -> str:
    """When the agent counts as offline if nothing more is heard from it."""
    return silent_from(now, get_n(agent, "offline_after_seconds"))


def _check_delivery(request: RegistrationRequest) -> None:
    try:
        problems = channel(request.delivery).check(request)
    except LookupError:
        problems = [FieldProblem("delivery", f"must be one of {', '.join(sorted(CHANNELS))}", type="unknown_channel")]
    if problems:
        raise ValidationFailed("the registration's delivery settings are not complete", problems)
