"""API contracts of keys and the principal a key stands for."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from opscore.agents.models import AgentId
from opscore.core.contracts import RequestModel, ResponseModel


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"


class KeyRequest(RequestModel):
    """POST /keys: `{"agent_id": ...}` for an agent key, `{"role": "admin"}` for an admin key."""

    role: Role | None = None
    agent_id: AgentId | None = None

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


class ApiKey(ResponseModel):
    key_id: str
    role: Role
    agent_id: str | None


class CreatedKey(ApiKey):
    api_key: str = Field(description="Shown once; only its SHA-256 is stored.")


class Principal(ResponseModel):
    """Who is calling, as resolved by the authorizer from X-API-Key."""

    key_id: str
    role: Role
    agent_id: str | None = None

    def may_act_for(self, agent_id: str) -> bool:
        return self.role is Role.ADMIN or self.agent_id == agent_id
