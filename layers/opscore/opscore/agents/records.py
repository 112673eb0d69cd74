"""The agent as the rules see it: one typed record per agent item, and the rules derived from it, defined once.

The store builds an `AgentRecord` from each agent item it reads; everything else reads `record.quarantined`,
`record.may_take_work` and so on, never the item. `TAKES_NO_WORK` and `PROBES_NOT` are also the conditions a lease
writes (see opscore.dispatch.queue), so the pre-check here and the guard in the table cannot disagree.

The quarantine is a circuit breaker (the rule in full: opscore.dispatch.health). Its parts on the record: `failures`,
the agent's recent counted failures (oldest first, each `<timestamp> <error type>`); and, while it is open,
`quarantine` (since when and why, and when it half-opens) and `probe` (the one attempt leased while half-open).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from opscore.agents.models import AgentError, AgentState, CurrentState
from opscore.core.clock import format_timestamp, parse_timestamp

DEFAULT_OFFLINE_AFTER_SECONDS = 300
DEFAULT_QUARANTINE_AFTER = 3
DEFAULT_QUARANTINE_WINDOW_SECONDS = 600
DEFAULT_QUARANTINE_COOLDOWN_SECONDS = 300
# States in which an agent is handed nothing.
TAKES_NO_WORK = frozenset({AgentState.PAUSED, AgentState.ERROR, AgentState.OFFLINE})
# States in which a half-open agent is not handed its probe: the `error` the quarantine put it in does not stop one.
PROBES_NOT = frozenset({AgentState.PAUSED, AgentState.OFFLINE})
# A probe the agent item still names this long after its attempt's deadline is taken as ended (its lease ended
# somewhere that could not say so): the sweep ends a lease within a minute of its deadline.
PROBE_GRACE_SECONDS = 120
# What a breaker's opening says of itself: enough counted failures, or a failed probe.
QuarantineReason = Literal["failures", "probe_failed"]
# How an attempt of the agent ended, as the breaker sees it: a success; a failure counted against the agent (its own
# fault); a failure that is not (a task's own failure); or an end that decides nothing (a cancel, the agent offline).
AttemptOutcome = Literal["succeeded", "counted", "failed", "released"]
BreakerMove = Literal["open", "reopen", "close", "free_probe"]


class CountedFailure(NamedTuple):
    """A failure counted against the agent: when, and its error type (kept on the agent as `<at> <error>`)."""

    at: str
    error: str

    @property
    def entry(self) -> str:
        return f"{self.at} {self.error}"

    @classmethod
    def of(cls, entry: str) -> CountedFailure:
        at, _, error = entry.partition(" ")
        return cls(at, error)


class QuarantineRecord(NamedTuple):
    """An open breaker: since when, why, and when the agent half-opens (may lease one probe)."""

    since: str
    reason: QuarantineReason
    failures: int  # counted failures in the window when it (re)opened
    last_error: str  # the error type of the failure that (re)opened it
    probe_after: str
    window_seconds: int = DEFAULT_QUARANTINE_WINDOW_SECONDS  # the window the failures were counted over


def probe_key(task_id: str, sequence: int) -> str:
    """The probe as the agent item names it: the task and its dispatch (one attempt)."""
    return f"{task_id}#{sequence}"


def seconds_after(stamp: str, seconds: int) -> str:
    moment = parse_timestamp(stamp)
    assert moment is not None, stamp
    return format_timestamp(moment + timedelta(seconds=seconds))


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
    quarantine_window_seconds: int = DEFAULT_QUARANTINE_WINDOW_SECONDS
    quarantine_cooldown_seconds: int = DEFAULT_QUARANTINE_COOLDOWN_SECONDS
    registered_at: str = ""
    updated_at: str = ""
    last_seen_at: str | None = None
    current: CurrentState | None = None
    in_flight: int = 0
    # Counted failures, oldest first: at most quarantine_after once trimmed, and only those in the window count.
    failures: tuple[CountedFailure, ...] = ()
    failures_seq: int = 0  # moves with every change of `failures`: the guard of a trim
    quarantine: QuarantineRecord | None = None  # the open (or half-open) breaker
    probe: str | None = None  # the probe attempt (probe_key) leased while half-open
    probe_until: str | None = None  # when that probe counts as ended, whatever the agent item still says
    # The current state was set by Ops-Core (offline, quarantined, lifted), not reported by the agent: a quarantine's
    # own `error` lets a probe through, an `error` the agent reported does not.
    state_by_opscore: bool = False
    # When the agent counts as offline if nothing more is heard from it; None once it is marked offline.
    silent_at: str | None = None
    # Microseconds spent in each state up to the current state's timestamp (see opscore.agents.stats.totals_at);
    # None on an item whose state was written before the totals were kept.
    state_totals: dict[str, int] | None = None
    created: bool = False  # set by a registration that created the item

    @property
    def state(self) -> AgentState | None:
        return self.current.state if self.current is not None else None

    @property
    def state_version(self) -> int:
        return self.current.version if self.current is not None else 0

    @property
    def quarantined(self) -> bool:
        return self.quarantine is not None

    @property
    def may_take_work(self) -> bool:
        """A slot free, a state that takes work, not quarantined: what a lease also checks in its transaction."""
        return self.in_flight < self.max_concurrency and takes_work(self.state) and not self.quarantined

    def half_open(self, now: str) -> bool:
        """Quarantined, and its cool-down is over: it may lease one probe."""
        return self.quarantine is not None and self.quarantine.probe_after <= now

    def probe_out(self, now: str) -> bool:
        """A probe is leased and not yet decided (nor past its grace)."""
        return self.probe is not None and (self.probe_until is None or self.probe_until >= now)

    def may_probe(self, now: str) -> bool:
        """Half-open with no probe out, a slot free, not paused or offline, and not in an `error` it reported itself:
        what a probe's lease also checks."""
        own_error = self.state is AgentState.ERROR and not self.state_by_opscore
        free = self.in_flight < self.max_concurrency and self.state not in PROBES_NOT and not own_error
        return free and self.half_open(now) and not self.probe_out(now)

    def failures_within(self, now: str) -> tuple[CountedFailure, ...]:
        """The counted failures inside the window that ends at `now`, oldest first."""
        start = seconds_after(now, -self.quarantine_window_seconds)
        return tuple(failure for failure in self.failures if failure.at > start)

    def trimmed_failures(self, now: str) -> tuple[CountedFailure, ...]:
        """What is worth keeping of `failures`: the last quarantine_after of those in the window."""
        return self.failures_within(now)[-self.quarantine_after :]

    def due_for_quarantine(self, now: str) -> bool:
        """Closed, with quarantine_after counted failures inside the window."""
        return not self.quarantined and len(self.failures_within(now)) >= self.quarantine_after

    def opening(self, now: str, reason: QuarantineReason, error: str | None = None) -> QuarantineRecord:
        """The breaker (re)opened at `now`: it half-opens after the cool-down."""
        window = self.failures_within(now)
        last_error = error or (window[-1].error if window else "")
        return QuarantineRecord(
            since=now,
            reason=reason,
            failures=len(window),
            last_error=last_error,
            probe_after=seconds_after(now, self.quarantine_cooldown_seconds),
            window_seconds=self.quarantine_window_seconds,
        )

    def quarantine_message(self) -> str:
        """Why the agent is handed nothing: the sentence a failed-over task's error and a 409 carry."""
        quarantine = self.quarantine
        if quarantine is None:
            return f"agent {self.agent_id} is not quarantined"
        if quarantine.reason == "probe_failed":
            why = f"its probe task failed: {quarantine.last_error}"
        else:
            failures = f"{quarantine.failures} failure{'' if quarantine.failures == 1 else 's'}"
            why = f"{failures} in {quarantine.window_seconds} s: {quarantine.last_error}"
        return f"agent {self.agent_id} has been quarantined since {quarantine.since} ({why})"

    def __repr__(self) -> str:  # the webhook secret stays out of logs and tracebacks
        return f"AgentRecord(agent_id={self.agent_id!r}, state={self.state}, in_flight={self.in_flight})"

    def silent_before(self, moment: str) -> bool:
        """Overdue: its silence deadline passed before `moment`, and it is not marked offline yet."""
        overdue = self.silent_at is not None and self.silent_at < moment
        return overdue and self.state is not AgentState.OFFLINE

    def next_silence(self, now: datetime) -> str:
        return silent_from(now, self.offline_after_seconds)


def breaker_move(agent: AgentRecord, probe: str | None, outcome: AttemptOutcome, now: str) -> BreakerMove | None:
    """What an attempt's end does to the agent's breaker. `probe` is the attempt's probe_key when it was leased as
    the probe, and `agent` the record read after the attempt's end was written (its failure counted)."""
    if probe is not None and agent.probe == probe:
        if outcome == "succeeded":
            return "close"
        return "free_probe" if outcome == "released" else "reopen"
    if outcome == "counted" and agent.due_for_quarantine(now):
        return "open"
    return None


def agent_error(value: Any) -> AgentError | None:
    return AgentError.model_validate(value) if isinstance(value, dict) else None
