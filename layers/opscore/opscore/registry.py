"""The agent registry: registration, current state, state history.

The state-update rule: an update is applied only when its timestamp is later than the stored one. A repeat of an
update that was already accepted (same timestamp, state, details and error) is answered with the version it got the
first time and changes nothing. Anything else that is not newer is refused as stale, so a late or reordered report
never overwrites a newer one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from opscore.errors import FieldProblem, NotFound, StaleState, ValidationFailed
from opscore.models import (
    Agent,
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
from opscore.store.dynamo import ConditionFailed, Item, get_s

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"


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
            expires_at=self._expires_at(now),
        )
        try:
            entry = self._store.apply_state(agent_id, write)
        except ConditionFailed as refused:
            entry = self._settle_refused(agent_id, write, refused.item)
            logger.info(
                "repeated state update answered with its first result",
                extra={"agent_id": agent_id, "state": entry.state.value, "version": entry.version},
            )
            metrics.add_metric(name="StateUpdatesRepeated", unit=MetricUnit.Count, value=1)
        else:
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
        return StateAccepted(agent_id=agent_id, state=entry.state, timestamp=entry.timestamp, version=entry.version)

    def _settle_refused(self, agent_id: str, write: StateWrite, stored: Item) -> StateHistoryEntry:
        """Decide what a refused update was: unknown agent, a repeat of an accepted one, or stale."""
        if not stored:
            raise NotFound(f"agent {agent_id} is not registered")
        earlier = self._store.get_history_entry(agent_id, write.timestamp)
        if earlier is not None and _same_report(earlier, write):
            return earlier
        if earlier is None and write.same_report_as(stored):
            # Accepted, but the history write after it never happened (the function stopped between the two
            # writes). Write it now, so every accepted update has exactly one history entry.
            repaired = self._entry_from_agent_item(agent_id, stored)
            self._store.put_history(agent_id, repaired, self._expires_at(_parse(repaired.recorded_at)))
            return repaired
        metrics.add_metric(name="StateUpdatesStale", unit=MetricUnit.Count, value=1)
        stored_timestamp = get_s(stored, "state_timestamp")
        logger.info(
            "stale state update refused",
            extra={"agent_id": agent_id, "timestamp": write.timestamp, "stored_timestamp": stored_timestamp},
        )
        raise StaleState(
            "a state update at the same or a later timestamp is already stored",
            [
                FieldProblem(
                    "timestamp",
                    f"must be later than the stored state's timestamp {stored_timestamp}",
                    type="stale",
                )
            ],
        )

    def _entry_from_agent_item(self, agent_id: str, item: Item) -> StateHistoryEntry:
        current = current_state_from_item(item)
        assert current is not None  # the caller matched the stored state against the update
        return StateHistoryEntry(
            state=current.state,
            previous_state=self._store.state_before(agent_id, current.timestamp),
            timestamp=current.timestamp,
            details=current.details,
            error=current.error,
            version=current.version,
            recorded_at=get_s(item, "state_recorded_at") or current.timestamp,
        )

    def history(self, agent_id: str, limit: int, next_token: str | None) -> HistoryPage:
        items, token = self._store.list_history(agent_id, limit, next_token)
        if not items and next_token is None and self._store.get_agent(agent_id) is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return HistoryPage(items=items, next_token=token)

    def _expires_at(self, recorded: datetime) -> int:
        return int((recorded + timedelta(days=self._settings.history_retention_days)).timestamp())


def _same_report(entry: StateHistoryEntry, write: StateWrite) -> bool:
    return (
        entry.state is write.state
        and canonical_json(entry.details) == write.details_json
        and canonical_json(entry.error.model_dump() if entry.error else None) == write.error_json
    )


def _parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp.replace("Z", "+0000"), TIMESTAMP_FORMAT)
