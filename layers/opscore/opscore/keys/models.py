"""API contracts of keys and the principal a key stands for."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, Field, field_validator, model_validator

from opscore.agents.models import AgentId
from opscore.core.contracts import NotNull, RequestModel, ResponseModel

# RFC 3339 date-time with its offset: pydantic alone would also take Unix times and other ISO 8601 spellings.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
EARLIEST_EXPIRY = datetime(1970, 1, 1, tzinfo=UTC)
MAX_YEAR = 9998  # a year later, offsets could carry a stored UTC time past datetime.max


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"


def rfc3339(value: Any, field: str) -> datetime:
    """`value` as an aware moment, when it is an RFC 3339 date-time with its offset; a ValueError naming `field`."""
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError(f"{field} must be an RFC 3339 date-time with its offset, e.g. 2026-12-31T00:00:00Z")
    try:
        moment = datetime.fromisoformat(value.upper())
        # In UTC as well: 9999-12-31T23:59:59-01:00 is past datetime.max there, and is stored in UTC.
        in_range = moment >= EARLIEST_EXPIRY and moment.astimezone(UTC).year <= MAX_YEAR
    except (OverflowError, ValueError):
        in_range = False
    if not in_range:
        raise ValueError(f"{field} must be a real date-time between 1970 and 9998")
    return moment


class KeyRequest(RequestModel):
    """POST /keys: `{"agent_id": ...}` for an agent key, `{"role": "admin"}` for an admin key; either may expire."""

    role: Annotated[Role | None, NotNull] = None
    agent_id: Annotated[AgentId | None, NotNull] = None
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (RFC 3339 with its offset; in the future)."
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expires_at(cls, value: Any) -> datetime | None:
        return None if value is None else rfc3339(value, "expires_at")

    @model_validator(mode="after")
    def _role_matches_agent(self) -> KeyRequest:
        if self.role is Role.ADMIN and self.agent_id is not None:
            raise ValueError("an admin key belongs to no agent: send either role=admin or agent_id")
        if self.role is not Role.ADMIN and self.agent_id is None:
            raise ValueError("send agent_id for an agent key, or role=admin for an admin key")
        return self

    @property
    def effective_role(self) -> Role:
        return Role.ADMIN if self.agent_id is None else Role.AGENT


class RotateRequest(RequestModel):
    """POST /keys/{keyId}/rotate: a new key for the same principal; the old one keeps working until it is revoked,
    expires, or reaches `old_key_expires_at` (which never extends an expiry the old key already has)."""

    expires_at: AwareDatetime | None = Field(default=None, description="When the new key stops working.")
    old_key_expires_at: AwareDatetime | None = Field(
        default=None, description="When the old key stops working (its grace period's end); in the future."
    )

    @field_validator("expires_at", "old_key_expires_at", mode="before")
    @classmethod
    def _moments(cls, value: Any, info: Any) -> datetime | None:
        return None if value is None else rfc3339(value, info.field_name)


class ApiKey(ResponseModel):
    key_id: str
    role: Role
    agent_id: str | None


class CreatedKey(ApiKey):
    api_key: str = Field(description="Shown once; only its SHA-256 is stored.")
    expires_at: str | None = None
    rotated_from: str | None = Field(default=None, description="The key this one replaces (rotation).")


class KeyInfo(ResponseModel):
    """A key as GET /keys lists it: never the key, never its hash."""

    key_id: str
    role: Role
    agent_id: str | None
    created_at: str | None
    created_by: str | None
    expires_at: str | None
    last_used_on: str | None = Field(description="The UTC day (YYYY-MM-DD) the key last authenticated.")
    revoked_at: str | None
    rotated_from: str | None


class KeyPage(ResponseModel):
    items: list[KeyInfo]
    next_token: str | None = Field(
        default=None, exclude_if=lambda token: token is None, description="Present when more keys follow."
    )


class Principal(ResponseModel):
    """Who is calling, as resolved by the authorizer from X-API-Key."""

    key_id: str
    role: Role
    agent_id: str | None = None

    def may_act_for(self, agent_id: str) -> bool:
        return self.role is Role.ADMIN or self.agent_id == agent_id
