"""The agent as the rules see it: one typed record per agent item, and the rules derived from it, defined once.

The store builds an `AgentRecord` from each agent item it reads; everything else reads `record.quarantined`,
`record.may_take_work` and so on, never the item. `TAKES_NO_WORK` is also the condition a lease writes (see
opscore.dispatch.queue), so the pre-check here and the guard in the table cannot disagree.
"""

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from opscore.agents.models import AgentError, AgentState, CurrentState
from opscore.core.clock import format_timestamp

DEFAULT_OFFLINE_AFTER_SECONDS = 300
DEFAULT_QUARANTINE_AFTER = 3
# States in which an agent is handed nothing.
TAKES_NO_WORK = frozenset({AgentState.PAUSED, AgentState.ERROR, AgentState.OFFLINE})


def takes_work(state: AgentState | None) -> bool:
    """An agent with no state yet (registered, never reported) takes work; paused, error and offline do not."""
    return state not in TAKES_NO_WORK


def became_able_to_take_work(previous: AgentState | None, state: AgentState) -> bool:
    """Idle, or back from paused, error or offline into a state that takes work: its queue is worth serving now."""
    reopened = previous is not None and not takes_work(previous) and takes_work(state)
    return state is AgentState.IDLE or reopened


def silent_from(now: datetime, offline_after_seconds: int | None) -> str:
    """When an agent heard from at `now` counts as silent: after its offline_after_seconds, rounded up to the minute.

    The sweep runs once a minute, so the rounding changes nothing it decides; but it keeps the deadline (an index
    key) the same for every contact within a minute, and an unchanged index key costs no index write.
    """
    due = now + timedelta(seconds=offline_after_seconds or DEFAULT_OFFLINE_AFTER_SECONDS)
    rounded = due.replace(second=0, microsecond=0)
    return format_timestamp(rounded if rounded == due else rounded + timedelta(minutes=1))


class AgentRecord(NamedTuple):
    """An agent item: the registration, the current state with its version, and what dispatch keeps on it."""

    agent_id: str
    name: str
    agent_version: str | None = None
    capabilities: tuple[str, ...] = ()
    endpoint: str | None = None
    webhook_secret: str | None = None
    max_concurrency: int = 1
    metadata: dict[str, Any] = {}  # noqa: RUF012 - shared and never written: records are read-only
    delivery: str = "poll"
    offline_after_seconds: int = DEFAULT_OFFLINE_AFTER_SECONDS
    quarantine_after: int = DEFAULT_QUARANTINE_AFTER
    registered_at: str = ""
    updated_at: str = ""
    last_seen_at: str | None = None
    current: CurrentState | None = None
    in_flight: int = 0
    failure_streak: int = 0
    quarantined: bool = False
    # When the agent counts as offline if nothing more is heard from it; None once it is marked offline.
    silent_at: str | None = None
    created: bool = False  # set by a registration that created the item

    @property
    def state(self) -> AgentState | None:
        return self.current.state if self.current is not None else None

    @property
    def state_version(self) -> int:
        return self.current.version if self.current is not None else 0

    @property
    def may_take_work(self) -> bool:
        """A slot free, a state that takes work, not quarantined: what a lease also checks in its transaction."""
        return self.in_flight < self.max_concurrency and takes_work(self.state) and not self.quarantined

    def quarantine_lifted_by(self, state: AgentState) -> bool:
        """An idle report (from the agent or an admin) lifts a quarantine: the agent says it can work again."""
        return self.quarantined and state is AgentState.IDLE

    @property
    def due_for_quarantine(self) -> bool:
        return not self.quarantined and self.failure_streak >= self.quarantine_after

    def __repr__(self) -> str:  # the webhook secret stays out of logs and tracebacks
        return f"AgentRecord(agent_id={self.agent_id!r}, state={self.state}, in_flight={self.in_flight})"

    def silent_before(self, moment: str) -> bool:
        """Overdue: its silence deadline passed before `moment`, and it is not marked offline yet."""
        overdue = self.silent_at is not None and self.silent_at < moment
        return overdue and self.state is not AgentState.OFFLINE

    def next_silence(self, now: datetime) -> str:
        return silent_from(now, self.offline_after_seconds)


def agent_error(value: Any) -> AgentError | None:
    return AgentError.model_validate(value) if isinstance(value, dict) else None
