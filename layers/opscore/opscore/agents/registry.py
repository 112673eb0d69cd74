"""The agent registry: registration, current state, state history.

The state-update rule: an update is applied only when its timestamp is later than the stored one. A repeat of an
update that was already accepted (same timestamp, state, details and error) is answered with the version it got the
first time and changes nothing. Anything else that is not newer is refused as stale, so a late or reordered report
never overwrites a newer one.

Applying one is read, decide, then write state and history in one transaction conditioned on the version that was
read: both or neither are stored, and a writer that lost a race reads again and decides again.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from opscore.agents.errors import NotQuarantined, StaleState
from opscore.agents.models import (
    Agent,
    AgentError,
    AgentList,
    AgentState,
    AgentSummary,
    CurrentState,
    HistoryPage,
    Quarantine,
    QueueCounts,
    Registration,
    RegistrationRequest,
    StateAccepted,
    StateHistoryEntry,
    StateReport,
)
from opscore.agents.records import AgentRecord, QuarantineRecord, silent_from
from opscore.agents.stats import totals_at
from opscore.agents.store import AgentStore, StateWrite
from opscore.aws.dynamodb import ConditionFailed
from opscore.core.clock import format_timestamp, parse_timestamp
from opscore.core.contracts import canonical_json
from opscore.core.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from opscore.core.observability import MetricUnit, logger, metrics
from opscore.core.retry import Backoff, attempts
from opscore.core.settings import Settings
from opscore.dispatch.delivery import CHANNELS, channel
from opscore.dispatch.queue import TaskQueue

# The widest window of state timestamps a history read may ask for (either end left open).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)

# Attempts to apply one update while other updates to the same agent keep winning the race; each attempt is a read
# and a transaction (after a short jittered pause), and only concurrent writers to one agent need a second one.
MAX_WRITE_ATTEMPTS = 5
# How many queue depths GET /agents reads at once: the page's Queries overlap, within boto3's default pool of 10.
QUEUE_READERS = 8
WRITE_BACKOFF = Backoff(0.01, 0.05)


class Registry:
    def __init__(self, store: AgentStore, queue: TaskQueue, settings: Settings, now: Callable[[], datetime]) -> None:
        self._store = store
        self._queue = queue
        self._settings = settings
        self._now = now

    def register(self, agent_id: str, request: RegistrationRequest) -> Registration:
        _check_delivery(request)
        now = self._now()
        record = self._store.upsert_registration(
            agent_id,
            request,
            format_timestamp(now),
            silent_at=silent_from(now, request.offline_after_seconds),
        )
        logger.info(
            "agent registered" if record.created else "agent registration updated",
            extra={
                "event": "agent_registered" if record.created else "registration_updated",
                "agent_id": agent_id,
                "agent_version": request.version,
                "capabilities": request.capabilities,
            },
        )
        metrics.add_metric(
            name="AgentsRegistered" if record.created else "AgentsReregistered", unit=MetricUnit.Count, value=1
        )
        return Registration(agent=self._view(record), created=record.created)

    def get(self, agent_id: str) -> Agent:
        return self._view(self.require(agent_id))

    def require(self, agent_id: str) -> AgentRecord:
        """The agent's record (registration, state and dispatch counters), without the queue counts; 404 if unknown."""
        record = self._store.get(agent_id)
        if record is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return record

    def _view(self, record: AgentRecord) -> Agent:
        return agent_view(record, self.queue_counts(record), format_timestamp(self._now()))

    def queue_counts(self, record: AgentRecord) -> QueueCounts:
        """The agent's queue by priority (a Query of its queue's priorities) and its tasks in flight."""
        priorities = self._queue.queued_priorities(record.agent_id)
        return QueueCounts(
            queued=len(priorities),
            in_flight=record.in_flight,
            queued_by_priority={str(value): priorities.count(value) for value in sorted(set(priorities), reverse=True)},
        )

    def list_agents(self, state: AgentState | None, limit: int, next_token: str | None) -> AgentList:
        """GET /agents: a page of agents in (state, id) order, each with its queue depth (one COUNT Query each, at
        most QUEUE_READERS at a time, so a page of 100 costs the latency of a few Queries rather than 100).

        The index is read eventually consistently and the agent items after it: an agent whose state changed in
        between shows its current state, and under `state` it is left out of the page."""
        records, token = self._store.list_page(state.value if state else None, limit, next_token)
        records = [record for record in records if state is None or record.state is state]
        now = format_timestamp(self._now())
        readers = ThreadPoolExecutor(max_workers=QUEUE_READERS)  # boto3 clients are thread-safe
        try:
            depths = list(readers.map(self._queue.queued_count, [record.agent_id for record in records]))
        finally:
            readers.shutdown(cancel_futures=True)  # after a failed read, the reads not begun are not made
        items = [agent_summary(record, depth, now) for record, depth in zip(records, depths, strict=True)]
        logger.info(
            "agents listed",
            extra={"event": "agents_listed", "state": state, "count": len(items), "more": token is not None},
        )
        return AgentList(items=items, next_token=token)

    def report_state(self, agent_id: str, report: StateReport) -> StateAccepted:
        now = self._now()
        _refuse_future(report.timestamp, now, self._settings.max_clock_skew_seconds)
        for _ in attempts(MAX_WRITE_ATTEMPTS, WRITE_BACKOFF):
            record = self.require(agent_id)
            # Only the report is stored: it never lifts a quarantine (an admin does, or a good probe).
            write, entry = self._change(
                record,
                now=now,
                state=report.state,
                timestamp=format_timestamp(report.timestamp),
                details=report.details,
                error=report.error,
            )
            if not _is_newer(write, record.current):
                return self._repeat_or_stale(agent_id, write, record.current)
            try:
                self._store.write_state(agent_id, record.state_version, write, entry)
            except ConditionFailed:
                # Another update was applied since the read (read again and decide again), or this very timestamp is
                # already in history although the state is older (a reset state): then it is a repeat or stale.
                if self._store.get_history_entry(agent_id, write.timestamp) is not None:
                    return self._repeat_or_stale(agent_id, write, record.current)
                continue
            self._record_change(agent_id, entry, report.error)
            if record.quarantined:
                logger.info(
                    "state report from a quarantined agent: the quarantine holds",
                    extra={"event": "state_while_quarantined", "agent_id": agent_id, "state": report.state.value},
                )
            return _accepted(agent_id, entry)
        metrics.add_metric(name="StateUpdateContention", unit=MetricUnit.Count, value=1)
        raise Conflict("the agent's state is changing too fast to apply this update now; send it again")

    def _change(
        self,
        record: AgentRecord,
        *,
        now: datetime,
        state: AgentState,
        timestamp: str,
        details: dict[str, Any] | None,
        error: AgentError | None,
        quarantine: QuarantineRecord | Literal["keep", "lift"] = "keep",
        silent_before: str | None = None,
        by_opscore: bool = False,
    ) -> tuple[StateWrite, StateHistoryEntry]:
        """The one way a state change is built, by an agent's report or by Ops-Core: the write and its history."""
        write = StateWrite(
            state=state,
            timestamp=timestamp,
            details_json=canonical_json(details),
            error_json=canonical_json(error.model_dump() if error else None),
            recorded_at=format_timestamp(now),
            expires_at=int((now + timedelta(days=self._settings.history_retention_days)).timestamp()),
            # Marking an agent offline (the one write made only while it is still silent) stops its silence clock;
            # anything else is contact and restarts it.
            silent_at=None if silent_before is not None else record.next_silence(now),
            quarantine=quarantine,
            silent_before=silent_before,
            by_opscore=by_opscore,
            state_totals=_totals_until(record, timestamp),
        )
        entry = StateHistoryEntry(
            state=state,
            previous_state=record.state,
            timestamp=timestamp,
            details=details,
            error=error,
            version=record.state_version + 1,
            recorded_at=write.recorded_at,
        )
        return write, entry

    def _repeat_or_stale(self, agent_id: str, write: StateWrite, current: CurrentState | None) -> StateAccepted:
        """An update not newer than the stored state: a repeat of an accepted one (200, its version), else stale."""
        earlier = self._store.get_history_entry(agent_id, write.timestamp) or _current_as_entry(current, write)
        if earlier is not None and write.same_report_as(earlier):
            logger.info(
                "repeated state update answered with its first result",
                extra={
                    "event": "state_repeated",
                    "agent_id": agent_id,
                    "state": earlier.state.value,
                    "version": earlier.version,
                },
            )
            metrics.add_metric(name="StateUpdatesRepeated", unit=MetricUnit.Count, value=1)
            return _accepted(agent_id, earlier)
        stored_timestamp = current.timestamp if current else None
        logger.info(
            "stale state update refused",
            extra={
                "event": "state_refused_stale",
                "agent_id": agent_id,
                "timestamp": write.timestamp,
                "stored_timestamp": stored_timestamp,
            },
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
        self, agent_id: str, decide: Callable[[AgentRecord], OpsCoreChange | None]
    ) -> tuple[AgentRecord, StateHistoryEntry] | None:
        """Ops-Core's own state change for an agent (offline, quarantined, lifted), as `decide(agent)` says.

        It goes through the same version guard and history as an agent's report, stamped now (or just after the
        stored state, if the agent's clock ran ahead), and `decide` sees the agent as it is read for each try: None
        from it (or an agent gone) changes nothing. A change's `silent_before` (marking it offline) also makes the
        write hold only while its silence deadline is earlier. Returns the record the change was decided on, and
        its history entry.
        """
        for _ in attempts(MAX_WRITE_ATTEMPTS):
            record = self._store.get(agent_id)
            change = decide(record) if record is not None else None
            if record is None or change is None:
                return None
            now = self._now()
            write, entry = self._change(
                record,
                now=now,
                state=change.state,
                timestamp=_stamp_after(record.current, now),
                details=change.details,
                error=None,
                quarantine=change.quarantine,
                silent_before=change.silent_before,
                by_opscore=True,
            )
            try:
                self._store.write_state(agent_id, record.state_version, write, entry)
            except ConditionFailed:
                continue  # the agent reported (or was heard from) meanwhile: look again
            self._record_change(agent_id, entry, None)
            return record, entry
        # Lost the race every time: not "decided no", which would let a caller answer as if nothing were due.
        raise Conflict(f"agent {agent_id}'s state is changing too fast to change it now; try again")

    def lift_quarantine(self, agent_id: str, by: str, when: Callable[[AgentRecord], bool] | None = None) -> bool:
        """Close the agent's breaker (while `when(agent)` holds, else while it is quarantined): its failures go, and
        an agent in `error` is `idle` again (any other state it reported stays). False when it was not quarantined."""

        def decide(agent: AgentRecord) -> OpsCoreChange | None:
            if not agent.quarantined or (when is not None and not when(agent)):
                return None
            state = AgentState.IDLE if agent.state in {AgentState.ERROR, None} else agent.state
            assert state is not None
            return OpsCoreChange(state, {"reason": "quarantine_lifted", "by": by}, quarantine="lift")

        changed = self.set_by_opscore(agent_id, decide)
        if changed is None:
            return False
        record, entry = changed
        quarantine = record.quarantine
        logger.info(
            "agent quarantine lifted",
            extra={
                "event": "quarantine_lifted",
                "agent_id": agent_id,
                "by": by,
                "old": entry.previous_state.value if entry.previous_state else None,
                "new": entry.state.value,
                "quarantined_since": quarantine.since if quarantine else None,
            },
        )
        metrics.add_metric(name="QuarantinesLifted", unit=MetricUnit.Count, value=1)
        return True

    def lift_by_admin(self, agent_id: str) -> Agent:
        """DELETE /agent/{agentId}/quarantine: 404 for an unknown agent, 409 not_quarantined when it is not."""
        if not self.lift_quarantine(agent_id, by="admin"):
            self.require(agent_id)
            raise NotQuarantined(f"agent {agent_id} is not quarantined")
        return self.get(agent_id)

    def _record_change(self, agent_id: str, entry: StateHistoryEntry, error: AgentError | None) -> None:
        logger.info(
            "agent state changed",
            extra={
                "event": "state_changed",
                "agent_id": agent_id,
                "old": entry.previous_state.value if entry.previous_state else None,
                "new": entry.state.value,
                "version": entry.version,
                "error_type": error.type if error else None,
            },
        )
        metrics.add_metric(name="StateChanges", unit=MetricUnit.Count, value=1)
        if error is not None:
            metrics.add_metric(name="AgentErrorsReported", unit=MetricUnit.Count, value=1)

    def history(
        self,
        agent_id: str,
        limit: int,
        next_token: str | None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> HistoryPage:
        """A page of the agent's state history, newest first; `since` and `until` (both included) bound the states'
        timestamps."""
        window = None
        if since is not None or until is not None:
            window = (format_timestamp(since or EARLIEST), format_timestamp(until or LATEST))
        items, token = self._store.list_history(agent_id, limit, next_token, window)
        if not items and next_token is None and self._store.get(agent_id) is None:
            raise NotFound(f"agent {agent_id} is not registered")
        return HistoryPage(items=items, next_token=token)

    def history_window(
        self, agent_id: str, since: datetime, until: datetime, limit: int
    ) -> tuple[list[StateHistoryEntry], bool]:
        """The agent's state changes between `since` and `until`, newest first: at most `limit`, and whether more
        (older) ones were left out."""
        window = (format_timestamp(since), format_timestamp(until))
        items, token = self._store.list_history(agent_id, limit, None, window)
        return items, token is not None

    def state_totals_at(self, record: AgentRecord, moment: datetime) -> dict[str, int] | None:
        """The agent's cumulative microseconds in each state at `moment` (see opscore.agents.stats.totals_at): from
        its item when `moment` is at or after its state's timestamp (no read), else from the first change after
        `moment` (one Query, Limit 1). None when the totals needed were written before they were kept."""
        current = record.current
        if current is None:
            return {}  # never reported: no time in any state yet
        stamp = format_timestamp(moment)
        since = parse_timestamp(current.timestamp)
        if current.timestamp <= stamp:
            if record.state_totals is None or since is None:
                return None
            return totals_at(record.state_totals, since, current.state.value, moment)
        later = self._store.first_change_after(record.agent_id, stamp)
        changed = parse_timestamp(later.timestamp) if later is not None else None
        if later is None or later.totals is None or changed is None:
            return None
        previous = later.previous_state.value if later.previous_state is not None else None
        return totals_at(later.totals, changed, previous, moment)


class OpsCoreChange(NamedTuple):
    """A state change Ops-Core makes for an agent: the state, the history entry's details, and its breaker."""

    state: AgentState
    details: dict[str, Any]
    quarantine: QuarantineRecord | Literal["keep", "lift"] = "keep"
    silent_before: str | None = None


def quarantine_view(record: AgentRecord, now: str) -> Quarantine | None:
    """The agent's open breaker as the API shows it; None while it is closed."""
    quarantine = record.quarantine
    if quarantine is None:
        return None
    return Quarantine(
        since=quarantine.since,
        reason=quarantine.reason,
        failures=quarantine.failures,
        window_seconds=quarantine.window_seconds,
        last_error_type=quarantine.last_error,
        probe_after=quarantine.probe_after,
        half_open=record.half_open(now),
        probe_task_id=record.probe.partition("#")[0] if record.probe_out(now) and record.probe else None,
    )


def agent_summary(record: AgentRecord, queued: int, now: str) -> AgentSummary:
    """What GET /agents shows of an agent."""
    current = record.current
    return AgentSummary(
        agent_id=record.agent_id,
        name=record.name,
        state=record.state,
        state_timestamp=current.timestamp if current is not None else None,
        last_seen_at=record.last_seen_at,
        quarantined=record.quarantined,
        failure_streak=len(record.failures_within(now)),
        queued=queued,
        in_flight=record.in_flight,
        max_concurrency=record.max_concurrency,
    )


def agent_view(record: AgentRecord, queue: QueueCounts, now: str) -> Agent:
    """What GET /agent/{agentId} shows of the record (never its webhook secret), as of `now`."""
    return Agent(
        agent_id=record.agent_id,
        name=record.name,
        version=record.agent_version,
        capabilities=list(record.capabilities),
        endpoint=record.endpoint,
        max_concurrency=record.max_concurrency,
        metadata=record.metadata,
        delivery=record.delivery,
        offline_after_seconds=record.offline_after_seconds,
        quarantine_after=record.quarantine_after,
        quarantine_window_seconds=record.quarantine_window_seconds,
        quarantine_cooldown_seconds=record.quarantine_cooldown_seconds,
        failure_streak=len(record.failures_within(now)),
        quarantined=record.quarantined,
        quarantine=quarantine_view(record, now),
        registered_at=record.registered_at,
        updated_at=record.updated_at,
        last_seen_at=record.last_seen_at,
        current_state=record.current,
        queue=queue,
    )


def _totals_until(record: AgentRecord, timestamp: str) -> dict[str, int]:
    """The totals a state write at `timestamp` keeps: the stored ones and the time since the stored state (an item
    written before totals were kept starts from nothing at its state, which keeps every later difference right)."""
    current = record.current
    since, until = (parse_timestamp(current.timestamp) if current else None), parse_timestamp(timestamp)
    if current is None or since is None or until is None:
        return dict(record.state_totals or {})
    return totals_at(record.state_totals or {}, since, current.state.value, until)


def _refuse_future(timestamp: datetime, now: datetime, skew_seconds: int) -> None:
    if timestamp > now + timedelta(seconds=skew_seconds):
        raise ValidationFailed(
            "timestamp is in the future",
            [
                FieldProblem(
                    "timestamp",
                    f"must not be more than {skew_seconds}s ahead of the server clock ({format_timestamp(now)})",
                    type="future_timestamp",
                )
            ],
        )


def _is_newer(write: StateWrite, current: CurrentState | None) -> bool:
    """Only an update later than the stored state is applied (string order is time order: see format_timestamp)."""
    return current is None or write.timestamp > current.timestamp


def _stamp_after(current: CurrentState | None, now: datetime) -> str:
    """Now, or just after the stored state if the agent's clock ran ahead of Ops-Core's."""
    stamp = format_timestamp(now)
    if current is not None and current.timestamp >= stamp:
        stamp = format_timestamp(datetime.fromisoformat(current.timestamp) + timedelta(microseconds=1))
    return stamp


def _current_as_entry(current: CurrentState | None, write: StateWrite) -> StateHistoryEntry | None:
    """The current state as a history entry, when the update has its timestamp: the state's own history entry may
    have expired (TTL) while the state itself is still stored."""
    if current is None or current.timestamp != write.timestamp:
        return None
    return StateHistoryEntry(
        state=current.state,
        previous_state=None,
        timestamp=current.timestamp,
        details=current.details,
        error=current.error,
        version=current.version,
        recorded_at=current.timestamp,
    )


def _accepted(agent_id: str, entry: StateHistoryEntry) -> StateAccepted:
    return StateAccepted(
        agent_id=agent_id,
        state=entry.state,
        previous_state=entry.previous_state,
        timestamp=entry.timestamp,
        version=entry.version,
    )


def _check_delivery(request: RegistrationRequest) -> None:
    try:
        problems = channel(request.delivery).check(request)
    except LookupError:
        problems = [FieldProblem("delivery", f"must be one of {', '.join(sorted(CHANNELS))}", type="unknown_channel")]
    if problems:
        raise ValidationFailed("the registration's delivery settings are not complete", problems)
