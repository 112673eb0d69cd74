"""Typed settings read from the function's environment once, validated on first use."""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str = Field(min_length=3, description="The single Ops-Core table (TABLE_NAME).")
    history_retention_days: int = Field(default=30, ge=1, le=3650, description="TTL of state history entries.")
    state_machine_arn: str | None = Field(default=None, description="The session runner (STATE_MACHINE_ARN).")
    idempotency_table: str | None = Field(default=None, description="Powertools idempotency (IDEMPOTENCY_TABLE).")
    dispatch_function_arn: str | None = Field(
        default=None, description="Invoked to serve an agent's queue (DISPATCH_FUNCTION_ARN)."
    )
    max_clock_skew_seconds: int = Field(
        default=300, ge=0, le=86_400, description="How far in the future a reported timestamp may be."
    )

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {
            "table_name": env.get("TABLE_NAME"),
            "history_retention_days": env.get("HISTORY_RETENTION_DAYS"),
            "max_clock_skew_seconds": env.get("MAX_CLOCK_SKEW_SECONDS"),
            "state_machine_arn": env.get("STATE_MACHINE_ARN"),
            "idempotency_table": env.get("IDEMPOTENCY_TABLE"),
            "dispatch_function_arn": env.get("DISPATCH_FUNCTION_ARN"),
        }
        # Unset variables take the model's defaults; TABLE_NAME has none, so a missing one fails loudly here.
        return cls.model_validate({key: value for key, value in values.items() if value is not None})


@cache
def settings() -> Settings:
    return Settings.from_environ()
