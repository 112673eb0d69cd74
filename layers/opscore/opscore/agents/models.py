"""API contracts of agents: registration, state reports, the agent view and its state history."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, Field, field_validator

from opscore.core.contracts import (
    Integer,
    JsonObject,
    Line,
    NotNull,
    Prose,
    RequestModel,
    ResponseModel,
    canonical_json,
)

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


# RFC 3339 date-time: pydantic alone would also take Unix times and other ISO 8601 spellings.
RFC3339_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)


MAX_METADATA_BYTES = 8 * 1024


MAX_DETAILS_BYTES = 8 * 1024


AgentId = Annotated[str, Field(pattern=AGENT_ID_PATTERN, description="Agent identifier chosen by the agent's owner.")]


Capability = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]


class AgentState(StrEnum):
    INITIALIZING = "initializing"
    IDLE = "idle"
    BUSY = "busy"
    PAUSED = "paused"
    ERROR = "error"
    OFFLINE = "offline"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be an agent's endpoint, or None when it can. Raises ValueError when urlsplit cannot read it
    (e.g. an unclosed IPv6 bracket)."""
    if not _printable(url):
        return "endpoint must not contain spaces or control characters"
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return "endpoint must not carry credentials; webhook deliveries are signed instead"
    return _scheme_problem(parts.scheme, parts.hostname or "")


def _printable(url: str) -> bool:
    # Spaces and invisible characters would make the URL read differently in logs than the one that is called.
    return not any(character.isspace() or not character.isprintable() for character in url)


def _scheme_problem(scheme: str, host: str) -> str | None:
    """https to any host; plain http only to a loopback one, where the task and its signature cross no network."""
    if not host or scheme not in ("https", "http"):
        return "endpoint must be an absolute https URL"
    if scheme == "http" and not _is_loopback(host):
        return "endpoint must use https; plain http is allowed only for loopback hosts"
    return None


class AgentError(RequestModel):
    type: Line = Field(min_length=1, max_length=128, description="Error class, e.g. TimeoutError.")
    message: Prose = Field(default="", max_length=2048)


class RegistrationRequest(RequestModel):
    """PUT /agent/{agentId}: the whole registration; fields left out return to their defaults."""

    name: Line = Field(min_length=1, max_length=128)
    version: Annotated[Line | None, NotNull] = Field(
        default=None, min_length=1, max_length=64, description="The agent's own version."
    )
    capabilities: list[Capability] = Field(default_factory=list, max_length=64)
    endpoint: Annotated[str | None, NotNull] = Field(
        default=None, max_length=2048, description="https URL; http only for loopback."
    )
    max_concurrency: Integer = Field(default=1, ge=1, le=1000, description="Tasks the agent may hold at once.")
    metadata: JsonObject = Field(default_factory=dict)
    delivery: str = Field(
        default="poll",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="How tasks reach the agent: poll (it leases them) or webhook (Ops-Core POSTs them).",
    )
    webhook_secret: Annotated[str | None, NotNull] = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="Signs webhook deliveries (HMAC-SHA256); required for webhook delivery, never returned.",
    )
    offline_after_seconds: Integer = Field(
        default=300, ge=10, le=86_400, description="Silence after which the agent is marked offline."
    )
    quarantine_after: Integer = Field(
        default=3,
        ge=1,
        le=100,
        description="Failures of the agent's own (see quarantine_window_seconds) that quarantine it: put it in error.",
    )
    quarantine_window_seconds: Integer = Field(
        default=600,
        ge=10,
        le=86_400,
        description="The window over which quarantine_after counts the agent's own failures.",
    )
    quarantine_cooldown_seconds: Integer = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Time from a quarantine's start until the agent may lease one probe task (half-open).",
    )

    @field_validator("capabilities")
    @classmethod
    def _unique_capabilities(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("capabilities must not repeat")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        problem = None if value is None else endpoint_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(canonical_json(value).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialise to at most {MAX_METADATA_BYTES} bytes")
        return value


class StateReport(RequestModel):
    """POST /agent/{agentId}/state: what the agent says it is doing, as of `timestamp`."""

    state: AgentState
    timestamp: AwareDatetime = Field(description="RFC 3339 with a timezone.")
    details: JsonObject | None = None
    error: AgentError | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> datetime:
        if not isinstance(value, str) or not RFC3339_PATTERN.match(value):
            raise ValueError("timestamp must be an RFC 3339 date-time with a timezone, e.g. 2026-11-24T10:00:00Z")
        try:
            moment = datetime.fromisoformat(value.upper())
            in_range = moment >= EARLIEST_TIMESTAMP
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
            in_range = False
        if not in_range:
            raise ValueError("timestamp must not be before 1970-01-01T00:00:00Z")
        return moment

    @field_validator("details")
    @classmethod
    def _details_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(canonical_json(value).encode()) > MAX_DETAILS_BYTES:
            raise ValueError(f"details must serialise to at most {MAX_DETAILS_BYTES} bytes")
        return value


class QueueCounts(ResponseModel):
    queued: int = Field(description="Tasks waiting in the agent's queue.")
    in_flight: int = Field(description="Tasks leased to the agent now.")
    queued_by_priority: dict[str, int] = Field(description="Queued tasks per priority (9 most urgent).")


class CurrentState(ResponseModel):
    state: AgentState
    timestamp: str
    details: dict[str, Any] | None
    error: AgentError | None
    version: int = Field(description="Counts accepted state updates; 1 for the first.")


class Quarantine(ResponseModel):
    """An open circuit breaker: why the agent is handed nothing, and when it may lease a probe task."""

    since: str = Field(description="When the quarantine began (or began again after a failed probe).")
    reason: Literal["failures", "probe_failed"] = Field(
        description="failures: quarantine_after failures of its own within the window; probe_failed: its probe failed."
    )
    failures: int = Field(description="The agent's own failures within the window when the quarantine (re)began.")
    window_seconds: int = Field(description="The window those failures were counted over.")
    last_error_type: str = Field(description="The error type of the failure that (re)began it.")
    probe_after: str = Field(description="When the cool-down ends: from then on the agent may lease one probe task.")
    half_open: bool = Field(description="The cool-down is over: the agent may lease (or holds) its probe.")
    probe_task_id: str | None = Field(description="The probe task it holds now, if any.")


class Agent(ResponseModel):
    agent_id: str
    name: str
    version: str | None
    capabilities: list[str]
    endpoint: str | None
    max_concurrency: int
    metadata: dict[str, Any]
    delivery: str
    offline_after_seconds: int
    quarantine_after: int
    quarantine_window_seconds: int
    quarantine_cooldown_seconds: int
    failure_streak: int = Field(
        description=(
            "The agent's own failures within the last quarantine_window_seconds, at most quarantine_after; a success "
            "does not reset it, a lifted quarantine does."
        )
    )
    quarantined: bool = Field(description="Put in error by Ops-Core: its circuit breaker is open (see quarantine).")
    quarantine: Quarantine | None = Field(description="null while the breaker is closed.")
    registered_at: str
    updated_at: str
    last_seen_at: str | None
    current_state: CurrentState | None = Field(description="null until the agent's first state report.")
    queue: QueueCounts


class Registration(ResponseModel):
    agent: Agent
    created: bool


class StateAccepted(ResponseModel):
    agent_id: str
    state: AgentState
    previous_state: AgentState | None
    timestamp: str
    version: int


class StateHistoryEntry(ResponseModel):
    state: AgentState
    previous_state: AgentState | None
    timestamp: str
    details: dict[str, Any] | None
    error: AgentError | None
    version: int
    recorded_at: str


class HistoryPage(ResponseModel):
    items: list[StateHistoryEntry]
    next_token: str | None = Field(
        default=None, exclude_if=lambda token: token is None, description="Present when more entries follow."
    )


class AgentSummary(ResponseModel):
    """One agent in GET /agents: who it is, what it is doing, and how much work it holds."""

    agent_id: str
    name: str
    state: AgentState | None = Field(description="The current state; null until the agent's first state report.")
    state_timestamp: str | None = Field(description="When the agent reported (or Ops-Core set) the current state.")
    last_seen_at: str | None = Field(description="The last contact: a registration, state report, heartbeat or pull.")
    quarantined: bool
    failure_streak: int = Field(description="As GET /agent/{agentId} shows it.")
    queued: int = Field(description="Tasks waiting in the agent's queue.")
    in_flight: int = Field(description="Tasks leased to the agent now.")
    max_concurrency: int


class AgentList(ResponseModel):
    items: list[AgentSummary]
    next_token: str | None = Field(
        default=None, exclude_if=lambda token: token is None, description="Present when more agents follow."
    )


class TaskCounts(ResponseModel):
    succeeded: int = Field(
        description="Task attempts that succeeded in the window (counted from the start of its first minute)."
    )
    failed: int = Field(description="Task attempts that failed in the window.")
    timed_out: int = Field(description="Task attempts that timed out in the window (lease, runner or agent offline).")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed + timed_out); null for none.")


class Percentiles(ResponseModel):
    count: int = Field(description="The attempts measured.")
    p50: float | None = Field(
        description="Milliseconds, nearest rank over a log-scale histogram (buckets 10% wide), reported as the "
        "bucket's geometric midpoint: within 5% of the measured value (0.5 ms below 1 ms); null when none was measured."
    )
    p95: float | None = Field(description="As p50.")


class AgentStats(ResponseModel):
    """GET /agent/{agentId}/stats: what the agent did over the window that ends now."""

    agent_id: str
    window: str = Field(description="The window asked for, e.g. 1h.")
    window_seconds: int
    since: str = Field(description="The window's start (UTC).")
    until: str = Field(description="The window's end: the time of the request (UTC).")
    tasks: TaskCounts
    failure_streak: int = Field(description="The agent's own recent failures, as GET /agent/{agentId} shows it.")
    state_seconds: dict[str, float] = Field(
        description="Seconds spent in each state within the window (every state named; time before its first report "
        "is counted nowhere)."
    )
    utilisation: float = Field(description="The share of the window spent busy, 0 to 1.")
    queue_wait_ms: Percentiles = Field(
        description="From being queued to being leased, of the attempts ended (those never leased are not timed)."
    )
    run_time_ms: Percentiles = Field(description="From being leased to ending, of the attempts ended.")
    queue: QueueCounts
    sampled: bool = Field(
        description="A bound was reached: state history written before cumulative state totals were kept was read "
        "in part, so state_seconds covers the newest part of the window. False on the exact path."
    )
