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

from opscore.errors import Conflict, FieldProblem, NotFound, StaleState, ValidationFailed
from opscore.models import (
    Agent,
    CurrentState,
    HistoryPage,
    Registration,
    RegistrationRequest,
    StateAccepted,
    StateHistoryEntry,
    StateReport,
    canonical_json,
    format_timestamp,
)
from opscore.observability import MetricUnit, logger, metrics
from opscore.settings import Settings
from opscore.store.agents import AgentStore, StateWrite, current_state_from_item
from opscore.store.dynamo import ConditionFailed

# Attempts to apply one update while other updates to the same agent keep winning the race; each attempt is a read
# and a transaction (after a short jittered pause), and only concurrent writers to one agent need a second one.
MAX_WRITE_ATTEMPTS = 5


class Registry:
    def __init__(self, store: AgentStore, settings: Settings, now: Callable[[], datetime]) -> None:
        self._store = store
        self._settings = settings
        self._now = now

    def register(self, agent_id: str, request: RegistrationRequest) -> Registration:
        agent, created = self._store.upsert_registration(agent_id, request, format_timestamp(self._now()))
        logger.info(
            "agent registered" if created else "agent registration updated",
            extra={"agent_id": agent_id, "agent_version": request.version, "capabilities": request.capabilities},
        )
        metrics.add_metric(name="AgentsRegistered" if created else "AgentsReregistered", unit=MetricUnit.Count, value=1)
        return Registration(agent=agent, created=created)

    def get(self, agent_id: str) -> Agent:
        agent = self._store.get_agent(agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return agent

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
        write = StateWrite(
            state=report.state,
            timestamp=format_timestamp(report.timestamp),
            details_json=canonical_json(report.details),
            error_json=canonical_json(report.error.model_dump() if report.error else None),
            recorded_at=format_timestamp(now),
            expires_at=int((now + timedelta(days=self._settings.history_retention_days)).timestamp()),
        )
        for attempt in range(MAX_WRITE_ATTEMPTS):
            stored = self._store.get_agent_item(agent_id)
            if stored is None:
                raise NotFound(f"agent {agent_id} is not registered")
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
            self._record_change(agent_id, entry, report)
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

    def _record_change(self, agent_id: str, entry: StateHistoryEntry, report: StateReport) -> None:
        logger.info(
            "agent state changed",
            extra={
                "agent_id": agent_id,
                "old_state": entry.previous_state.value if entry.previous_state else None,
                "new_state": entry.state.value,
                "version": entry.version,
                "error_type": report.error.type if report.error else None,
            },
        )
        metrics.add_metric(name="StateChanges", unit=MetricUnit.Count, value=1)
        if report.error is not None:
            metrics.add_metric(name="AgentErrorsReported", unit=MetricUnit.Count, value=1)

    def history(self, agent_id: str, limit: int, next_token: str | None) -> HistoryPage:
        items, token = self._store.list_history(agent_id, limit, next_token)
        if not items and next_token is None and self._store.get_agent(agent_id) is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return HistoryPage(items=items, next_token=token)


def _accepted(agent_id: str, entry: StateHistoryEntry) -> StateAccepted:
    return StateAccepted(agent_id=agent_id, state=entry.state, timestamp=entry.timestamp, version=entry.version)
